"""Plumbing shared by the training commands: config from file + flags, progress output, cancel, torchrun.

``--progress-json`` prints one JSON object per line on stdout (rank 0 only), for a GUI watching a
subprocess: ``{"event": "start", ...}``, ``{"event": "loading", "fraction", "message"}`` while the cases load,
``{"event": "step", "step", "total", "phase", "metrics"}`` after every training step,
then ``{"event": "done", ...}``, ``{"event": "cancelled", "message"}`` or ``{"event": "error", "message"}``.
Ctrl-C / SIGTERM, or creating the ``--cancel-file``, cancels between steps and leaves a checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from lorkd_core.engine.config import JobConfig
from lorkd_core.errors import ConfigError, JobCancelled
from lorkd_core.progress import CancelToken, Progress


class FileCancelToken(CancelToken):
    """Also cancelled when ``path`` exists (a GUI can cancel every torchrun rank by touching one file)."""

    def __init__(self, path: str | Path | None = None) -> None:
        super().__init__()
        self.path = None if path is None else Path(path)

    @property
    def cancelled(self) -> bool:
        if self.path is not None and self.path.exists():
            self.cancel()
        return super().cancelled


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="training manifest (JSONL)")
    p.add_argument("--out", help="output folder")
    p.add_argument("--config", help="job configuration JSON (flags given here override it)")
    p.add_argument("--task", choices=["segmentation", "classification"])
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--lr", type=float)
    p.add_argument("--patch-size", type=int, nargs="+", dest="patch_size", metavar="N")
    p.add_argument("--spacing", type=float, nargs="+", metavar="MM")
    p.add_argument("--seed", type=int)
    p.add_argument("--checkpoint-every", type=int, dest="checkpoint_every")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--no-amp", action="store_false", dest="amp", default=None, help="disable mixed precision on CUDA")
    p.add_argument("--regions", nargs="+", help="train only these regions")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint (config from OUT/config.json)")
    p.add_argument("--progress-json", action="store_true", dest="progress_json",
                   help="print progress as JSON lines on stdout")
    p.add_argument("--cancel-file", dest="cancel_file", help="cancel (with a checkpoint) when this file appears")


COMMON_FIELDS = ("data", "out", "task", "steps", "batch_size", "lr", "patch_size", "spacing", "seed",
                 "checkpoint_every", "device", "amp", "regions")


def build_config(cls: type[JobConfig], args: argparse.Namespace, fields: tuple[str, ...]) -> JobConfig:
    """``--config`` (or OUT/config.json on ``--resume``), then the flags that were given."""
    source = args.config
    if source is None and args.resume and args.out and (Path(args.out) / "config.json").is_file():
        source = Path(args.out) / "config.json"
    cfg = cls.load(source) if source else cls()
    changes: dict[str, Any] = {}
    for name in fields:
        value = getattr(args, name, None)
        if value is not None:
            changes[name] = list(value) if isinstance(value, (list, tuple)) and name in ("patch_size", "spacing") else value
    if "patch_size" in changes and len(changes["patch_size"]) == 1:
        changes["patch_size"] = changes["patch_size"] * cfg.spatial_dims
    if "spacing" in changes and len(changes["spacing"]) == 1:
        changes["spacing"] = changes["spacing"] * cfg.spatial_dims
    cfg = cfg.replace(**changes)
    for required in ("data", "out"):
        if not getattr(cfg, required):
            raise ConfigError(f"--{required} is required (or set '{required}' in the --config file)")
    return cfg


class ProgressPrinter:
    """Human-readable lines (every ``every`` steps) or JSON lines (every step)."""

    def __init__(self, json_lines: bool, stream: TextIO | None = None, every: int = 10) -> None:
        self.json_lines = json_lines
        self.stream = stream or sys.stdout
        self.every = every
        self.last_phase = ""

    def event(self, kind: str, **fields: Any) -> None:
        if self.json_lines:
            self._emit({"event": kind, "time": round(time.time(), 3), **fields})

    def __call__(self, p: Progress) -> None:
        loading = p.step == 0 and "data_fraction" in p.metrics
        if self.json_lines and loading:
            self._emit({"event": "loading", "fraction": _finite(p.metrics["data_fraction"]), "message": p.message})
            return
        if loading:
            return
        if self.json_lines:
            self._emit({"event": "step", "step": p.step, "total": p.total, "phase": p.message,
                        "metrics": {k: _finite(v) for k, v in p.metrics.items()}})
            return
        if p.step % self.every and p.step != p.total and p.message == self.last_phase:
            return
        self.last_phase = p.message
        m = p.metrics
        eta = m.get("eta_s", float("nan"))
        eta_text = "?" if not math.isfinite(eta) else f"{int(eta // 60)}m{int(eta % 60):02d}s"
        print(f"[{p.message}] step {p.step}/{p.total}  loss {m.get('loss', 0):.4f} (task {m.get('task', 0):.4f}, "
              f"kd {m.get('kd', 0):.4f})  {m.get('samples_per_s', 0):.1f} samples/s  ETA {eta_text}",
              file=self.stream, flush=True)

    def _emit(self, obj: dict[str, Any]) -> None:
        self.stream.write(json.dumps(obj, default=str) + "\n")
        self.stream.flush()


def _finite(v: float) -> float | None:
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


@contextmanager
def cancel_on_signals(token: CancelToken) -> Iterator[None]:
    """First Ctrl-C / SIGTERM cancels between steps (checkpoint written); a second Ctrl-C interrupts."""
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        if token.cancelled and signum == signal.SIGINT:
            raise KeyboardInterrupt
        token.cancel()
        print("cancelling after the current step (a checkpoint will be written)...", file=sys.stderr, flush=True)

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_job(args: argparse.Namespace, job: str, cfg: JobConfig,
            work: Callable[[Any, CancelToken, Any], dict[str, Any]]) -> int:
    """Run ``work(progress, cancel, ctx)`` with torchrun detection, signals and the progress protocol."""
    from lorkd_core.engine.distributed import init_from_env, shutdown

    ctx = init_from_env(cfg.device)
    printer = ProgressPrinter(args.progress_json, every=10)
    main = ctx.is_main
    token = FileCancelToken(args.cancel_file)
    if main:
        printer.event("start", job=job, out=str(Path(cfg.out).resolve()), processes=ctx.world,
                      device=str(ctx.device), resume=bool(args.resume), config=cfg.to_dict())
    try:
        with cancel_on_signals(token):
            summary = work(printer if main else None, token, ctx)
    except JobCancelled as exc:
        if main:
            printer.event("cancelled", message=str(exc), checkpoint=str(Path(cfg.out) / "checkpoint"))
        raise
    except Exception as exc:  # reported on the JSON channel too, then handled by the CLI as usual
        if main:
            printer.event("error", message=str(exc), type=type(exc).__name__)
        raise
    finally:
        shutdown(ctx)
    if main:
        printer.event("done", **summary)
        if not args.progress_json:
            print(json.dumps(summary, indent=2, default=str))
    return 0
