"""JobManager: starts, watches, cancels and resumes training jobs, and keeps them in a JobStore.

Two job types (services.jobs.JOB_TYPES): ``decompose`` and ``adapt`` (a new version of one region's
expert). In-process jobs run on the app's torch worker thread (TorchWorker); subprocess jobs run the
CLI (``lorkd <type> --progress-json``, under torchrun for N processes) through :class:`ProcessRun`, which
asyncio watches on the UI thread. Both report through the same signals, so the job panel does not care
where a job runs. Qt only lives here and in the panel; the store and the engine are Qt-free.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QStandardPaths, Signal

from ..runtime_policy import JobSetupGuard
from ..services import jobs as job_service
from ..services.core import JobConfig, Progress
from ..services.worker import TaskHandle, TorchWorker
from .process import ProcessRun, pid_alive
from .store import ACTIVE, JobRecord, JobStore

STORE_ENV = "LORKD_JOBS_FILE"
CONFIG_NAME = ".studio-config.json"
CANCEL_NAME = ".studio-cancel"
SAVE_EVERY_S = 2.0
CURVE_KEYS = ("loss", "task", "kd")


def default_store_path() -> Path:
    """``$LORKD_JOBS_FILE``, else ``jobs.json`` in the user data directory (QStandardPaths)."""
    if os.environ.get(STORE_ENV):
        return Path(os.environ[STORE_ENV])
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppLocalDataLocation)
    return Path(base or Path.home() / ".lorkd-studio") / "jobs.json"


def inprocess_threads() -> int:
    """Torch threads for an in-process job: leave one core to the UI thread."""
    return max(1, (os.cpu_count() or 2) - 1)


class JobManager(QObject):
    job_added = Signal(str)
    job_changed = Signal(str)  # state, log or output changed
    job_progress = Signal(str, int, int, dict)  # id, step, total, metrics
    job_finished = Signal(str, str)  # id, final state (done | cancelled | failed | interrupted)
    evaluated = Signal(str, str)  # id, markdown table

    def __init__(self, worker: TorchWorker, store_path: str | Path | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.store = JobStore(store_path or default_store_path())
        self._tasks: dict[str, TaskHandle] = {}
        self._procs: dict[str, ProcessRun] = {}
        self._last_save = 0.0
        worker.task_started.connect(self._on_task_started)
        self._recover()

    # ---------------------------------------------------------------- queries

    @property
    def jobs(self) -> list[JobRecord]:
        return sorted(self.store.jobs.values(), key=lambda r: r.created)

    def get(self, job_id: str) -> JobRecord:
        return self.store.get(job_id)

    def is_live(self, job_id: str) -> bool:
        return job_id in self._tasks or job_id in self._procs

    def live_jobs(self) -> list[JobRecord]:
        """Jobs running or queued in this app (worker thread or subprocess)."""
        return [self.get(job_id) for job_id in [*self._tasks, *self._procs]]

    def flush(self) -> None:
        """Wait until the job list on disk is up to date (saves happen on a writer thread)."""
        self.store.flush()

    def process(self, job_id: str) -> ProcessRun | None:
        return self._procs.get(job_id)

    # ---------------------------------------------------------------- commands

    def start(self, cfg: JobConfig, *, mode: str = "inprocess", processes: int = 1,
              evaluate: bool = False) -> JobRecord:
        """Record and launch a job; its type follows the config (DecomposeConfig, AdaptConfig)."""
        job_type = job_service.job_type_of(cfg)
        if not cfg.out:
            raise ValueError("the job needs an output folder")
        if mode not in ("inprocess", "subprocess"):
            raise ValueError(f"unknown mode {mode!r}")
        rec = self.store.new(job_type, cfg.to_dict(), str(Path(cfg.out).resolve()), mode=mode,
                             processes=max(1, int(processes)) if mode == "subprocess" else 1, evaluate=evaluate)
        self.job_added.emit(rec.id)
        self._launch(rec, resume=False)
        return rec

    def resume(self, job_id: str) -> None:
        rec = self.get(job_id)
        if self.is_live(job_id) or not rec.resumable:
            return
        rec.error = ""
        rec.add_log("resuming from the last checkpoint")
        self._launch(rec, resume=True)

    def cancel(self, job_id: str) -> None:
        rec = self.get(job_id)
        if job_id in self._tasks:
            self._tasks[job_id].cancel()
        elif job_id in self._procs:
            self._procs[job_id].cancel()
        else:
            return
        rec.add_log("cancelling after the current step (a checkpoint will be written)")
        self.job_changed.emit(job_id)

    def shutdown(self, wait_ms: int = 3000) -> None:
        """On quit: ask every job to stop with a checkpoint; what is still running is recorded as such and
        shows up as interrupted (with Resume) at the next start."""
        for task in list(self._tasks.values()):
            task.cancel()
        runs = list(self._procs.values())
        for run in runs:
            run.cancel()
        deadline = time.monotonic() + wait_ms / 1000
        for run in runs:
            run.wait(max(0, int(1000 * (deadline - time.monotonic()))))
        self.store.save()

    # ---------------------------------------------------------------- launching

    def _launch(self, rec: JobRecord, *, resume: bool) -> None:
        cfg = job_service.config_from_dict(rec.type, rec.config)
        rec.state = "queued"
        rec.started = time.time()
        rec.finished = None
        rec.pid = None
        if rec.mode == "subprocess":
            self._launch_process(rec, cfg, resume)
        else:
            self._launch_task(rec, cfg, resume)
        self.store.save(background=True)
        self.job_changed.emit(rec.id)

    def _launch_task(self, rec: JobRecord, cfg: JobConfig, resume: bool) -> None:
        job_id, job_type = rec.id, rec.type
        threads = inprocess_threads()

        def work(ctx) -> dict[str, Any]:
            import torch

            with JobSetupGuard() as gc_guard:  # no full collections (UI pauses) while the job sets up

                def progress(p: Progress) -> None:
                    gc_guard.step(p.step)
                    ctx.progress(p)
                    time.sleep(0)  # let the UI thread take the GIL between steps

                old = torch.get_num_threads()
                torch.set_num_threads(threads)
                try:
                    return job_service.train(job_type, cfg, progress, ctx.cancel, resume=resume)
                finally:
                    torch.set_num_threads(old)

        handle = self.worker.submit(
            f"Training {rec.name}", work, key=f"job:{job_id}", throttle_s=0.02,
            on_progress=lambda p: self._on_report(job_id, p),
            on_result=lambda res: self._finish(job_id, "done", "", res),
            on_error=lambda exc: self._finish(job_id, "failed", f"{type(exc).__name__}: {exc}"),
            on_cancelled=lambda: self._finish(job_id, "cancelled", ""))
        self._tasks[job_id] = handle

    def _on_task_started(self, handle: TaskHandle) -> None:
        for job_id, h in self._tasks.items():
            if h is handle:
                self._set_running(job_id, os.getpid())

    def _launch_process(self, rec: JobRecord, cfg: JobConfig, resume: bool) -> None:
        out = Path(rec.out)
        out.mkdir(parents=True, exist_ok=True)
        config = cfg.save(out / CONFIG_NAME)
        cancel_file = out / CANCEL_NAME
        argv = job_service.command_line(rec.type, config, out, cancel_file, processes=rec.processes, resume=resume)
        run = ProcessRun(argv, cancel_file, threads=1 if rec.processes > 1 else inprocess_threads(), parent=self)
        job_id = rec.id
        run.started.connect(lambda pid: self._set_running(job_id, pid))
        run.event.connect(lambda ev: self._on_event(job_id, ev))
        run.log.connect(lambda line: self._log(job_id, line))
        run.ended.connect(lambda state, error: self._finish(job_id, state, error))
        self._procs[job_id] = run
        rec.add_log(" ".join(argv))
        run.start()

    def _set_running(self, job_id: str, pid: int | None) -> None:
        rec = self.get(job_id)
        if rec.state == "queued":
            rec.state = "running"
            rec.pid = pid
            self.store.save(background=True)
            self.job_changed.emit(job_id)

    # ---------------------------------------------------------------- reports

    def _on_report(self, job_id: str, p: Progress) -> None:
        self._set_running(job_id, os.getpid())
        if p.step == 0 and "data_fraction" in p.metrics:
            self._step(job_id, 0, p.total, p.message, {})
        else:
            self._step(job_id, p.step, p.total, p.message, dict(p.metrics))

    def _on_event(self, job_id: str, ev: dict[str, Any]) -> None:
        kind = ev.get("event")
        if kind == "step":
            metrics = {k: v for k, v in (ev.get("metrics") or {}).items() if isinstance(v, (int, float))}
            self._step(job_id, int(ev.get("step", 0)), int(ev.get("total", 0)), str(ev.get("phase", "")), metrics)
        elif kind == "loading":
            self.get(job_id).phase = str(ev.get("message", "loading data"))
            self.job_changed.emit(job_id)
        elif kind == "start":
            self._log(job_id, f"started: {ev.get('processes', 1)} process(es) on {ev.get('device', '?')}")
        elif kind in ("cancelled", "error"):
            self._log(job_id, f"{kind}: {ev.get('message', '')}")
        elif kind == "done":
            self._log(job_id, f"done in {ev.get('seconds', '?')} s of training")

    def _step(self, job_id: str, step: int, total: int, phase: str, metrics: dict[str, float]) -> None:
        rec = self.get(job_id)
        rec.step, rec.total, rec.phase = step, total, phase
        eta = metrics.get("eta_s")
        rec.eta_s = float(eta) if isinstance(eta, (int, float)) and math.isfinite(eta) else None
        if step > 0:
            point = {k: v for k, v in metrics.items() if k in CURVE_KEYS or k.startswith("region/")}
            rec.add_point(step, point)
        self.job_progress.emit(job_id, step, total, metrics)
        now = time.monotonic()
        if now - self._last_save >= SAVE_EVERY_S:
            self._last_save = now
            self.store.save(background=True)

    def _log(self, job_id: str, line: str) -> None:
        self.get(job_id).add_log(line)
        self.job_changed.emit(job_id)

    def _finish(self, job_id: str, state: str, error: str, result: Any = None) -> None:
        self._tasks.pop(job_id, None)
        run = self._procs.pop(job_id, None)
        if run is not None:
            run.deleteLater()
        rec = self.get(job_id)
        rec.state = state
        rec.error = error
        rec.finished = time.time()
        rec.pid = None
        rec.eta_s = None
        rec.add_log(f"{state}" + (f": {error}" if error else ""))
        self.store.save(background=True)
        self.job_changed.emit(job_id)
        self.job_finished.emit(job_id, state)
        if state == "done" and rec.evaluate:
            self.evaluate(job_id)

    # ---------------------------------------------------------------- evaluation

    def evaluate(self, job_id: str) -> TaskHandle:
        """Experts vs teacher vs baseline on the job's data (its test split, else all cases), on the worker.
        Its progress shows as the job's phase ("evaluating 3/11: case brain_003") and in the job's log."""
        rec = self.get(job_id)
        data = str(rec.config.get("data", ""))

        def work(ctx) -> str:
            with JobSetupGuard() as gc_guard:

                def report(p: Progress) -> None:
                    gc_guard.step(p.step)
                    ctx.progress(p)

                return job_service.evaluate_output(rec.out, data, rec.name, report, ctx.cancel)

        def progress(p: Progress) -> None:
            text = f"evaluating {p.step}/{p.total}: {p.message}" if p.total else f"evaluating: {p.message}"
            if text != rec.phase:
                rec.phase = text
                self._log(job_id, text)

        def done(text: str) -> None:
            rec.evaluation = text
            rec.phase = "evaluated"
            rec.add_log("evaluation done (the Evaluation tab shows the table)")
            self.store.save(background=True)
            self.evaluated.emit(job_id, text)
            self.job_changed.emit(job_id)

        def failed(exc: BaseException) -> None:
            rec.phase = "evaluation failed"
            self._log(job_id, f"evaluation failed: {exc}")

        rec.phase = "evaluating"
        self._log(job_id, "evaluating the job's models (teacher, experts, baseline if trained) on the held-out cases")
        return self.worker.submit(f"Evaluating {rec.name}", work, on_result=done, on_error=failed,
                                  on_progress=progress)

    # ---------------------------------------------------------------- startup

    def _recover(self) -> None:
        """Jobs recorded as queued/running belong to an app or process that is gone: interrupted (or done,
        when the engine finished the job after the app went away)."""
        changed = False
        for rec in self.store.jobs.values():
            if rec.state not in ACTIVE:
                continue
            changed = True
            if job_service.finished_on_disk(rec.out):
                rec.state = "done"
                rec.add_log("the job finished while the app was away")
                continue
            if rec.mode == "subprocess" and rec.pid != os.getpid() and pid_alive(rec.pid):
                # an orphaned subprocess: ask it to stop with a checkpoint before Resume runs it again
                (Path(rec.out) / CANCEL_NAME).touch()
                rec.add_log(f"asked the orphaned process {rec.pid} to stop with a checkpoint")
            rec.state = "interrupted"
            rec.pid = None
            rec.add_log("interrupted: the app or its process stopped; Resume continues from the last checkpoint")
        if changed:
            self.store.save()

