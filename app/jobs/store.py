"""The persistent job list: one JSON file, written atomically (services.core.write_json_atomic). Qt-free.

A record keeps what the job panel shows after a restart: id, type, config, state, output folder,
a subsampled metrics history, the tail of the log and timestamps.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..services.core import write_json_atomic

STATES = ("queued", "running", "cancelled", "failed", "done", "interrupted")
ACTIVE = ("queued", "running")
RESUMABLE = ("cancelled", "failed", "interrupted")
MAX_HISTORY = 400  # points kept per job; older points are thinned to every other one
MAX_LOG = 300  # lines


@dataclass
class JobRecord:
    id: str
    type: str  # "decompose" | "adapt" (services.jobs.JOB_TYPES)
    config: dict[str, Any]
    out: str
    mode: str = "inprocess"  # inprocess | subprocess
    processes: int = 1
    state: str = "queued"
    step: int = 0
    total: int = 0
    phase: str = ""
    eta_s: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    stride: int = 1  # history keeps every stride-th step
    log: list[str] = field(default_factory=list)
    error: str = ""
    pid: int | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    evaluate: bool = False
    evaluation: str = ""  # markdown table once evaluated

    @property
    def name(self) -> str:
        return f"{self.type} · {Path(self.out).name}"

    @property
    def resumable(self) -> bool:
        return self.state in RESUMABLE

    def add_point(self, step: int, metrics: dict[str, float]) -> None:
        """Append a metrics point, thinning the history so it never exceeds MAX_HISTORY points."""
        if step % self.stride and step != self.total:
            return
        point = {"step": float(step)}
        point.update({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and v == v})
        if self.history and self.history[-1]["step"] >= step:
            # a resumed run repeats no steps, but a rerun after a failure may: drop the stale tail
            self.history = [p for p in self.history if p["step"] < step]
        self.history.append(point)
        if len(self.history) > MAX_HISTORY:
            self.stride *= 2
            self.history = [p for p in self.history if int(p["step"]) % self.stride == 0] + [self.history[-1]]

    def add_log(self, line: str) -> None:
        self.log.append(line.rstrip())
        if len(self.log) > MAX_LOG:
            del self.log[: len(self.log) - MAX_LOG]


class JobStore:
    """``path`` holds ``{"format": "lorkd-jobs/1", "jobs": [...]}``; unreadable files start an empty list."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.jobs: dict[str, JobRecord] = {}
        self._writer: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self.load()

    def load(self) -> None:
        self.jobs = {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        names = set(JobRecord.__dataclass_fields__)
        for raw in data.get("jobs", []) if isinstance(data, dict) else []:
            try:
                rec = JobRecord(**{k: v for k, v in raw.items() if k in names})
            except TypeError:
                continue
            self.jobs[rec.id] = rec

    def save(self, *, background: bool = False) -> None:
        """Write the list atomically. ``background``: serialise now, write (with its fsync, which can take
        a while on a busy disk) on a writer thread, so progress updates never stall the caller."""
        snapshot = {"format": "lorkd-jobs/1", "jobs": [asdict(r) for r in self.jobs.values()]}
        if not background:
            self.flush()
            write_json_atomic(self.path, snapshot)
            return
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lorkd-job-store")
        self._pending = self._writer.submit(write_json_atomic, self.path, snapshot)

    def flush(self) -> None:
        """Wait for a background write (so a later synchronous write is never overtaken)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def new(self, type_: str, config: dict[str, Any], out: str, **fields: Any) -> JobRecord:
        rec = JobRecord(id=time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6], type=type_, config=config,
                        out=out, **fields)
        self.jobs[rec.id] = rec
        self.save()
        return rec

    def get(self, job_id: str) -> JobRecord:
        return self.jobs[job_id]
