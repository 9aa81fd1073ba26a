"""Job plumbing shared by the training jobs: output folder, resume bookkeeping, data, phases, job.json.

``OUT/config.json`` (the job config) is written at the start, ``OUT/checkpoint/`` holds checkpoints until
the job finishes, and ``OUT/job.json`` (status "done", steps, seconds, losses) marks a finished job, so
``resume=True`` on a finished job returns at once.

Every file lands by rename (lorkd_core.atomic, checkpoint step folders), so a killed job leaves complete
outputs plus hidden ``.*.tmp-*`` leftovers; a job removes those from ``OUT`` and its subfolders when it
starts (the output folder belongs to one job at a time; other files there are left alone).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from lorkd_core.atomic import remove_stale_temps, write_json_atomic
from lorkd_core.data.manifest import read_manifest
from lorkd_core.engine.checkpoint import Checkpoint, latest_checkpoint, load_checkpoint
from lorkd_core.engine.config import DecomposeConfig, JobConfig
from lorkd_core.engine.data_loading import TrainingSet
from lorkd_core.engine.distributed import DistContext
from lorkd_core.engine.loop import Phase, Runner, RunState
from lorkd_core.errors import ConfigError
from lorkd_core.progress import CancelToken, Progress, ProgressCallback

CHECKPOINT_DIR = "checkpoint"
OUTPUT_FOLDERS = (CHECKPOINT_DIR, "experts", "baseline", "teacher")  # what the jobs write inside OUT
_RESUMABLE_CHANGES = {"device", "amp", "amp_dtype", "checkpoint_every", "out"}


class Job:
    """Output folder, resume bookkeeping and the runner of one job."""

    def __init__(self, name: str, cfg: JobConfig, progress: ProgressCallback | None, cancel: CancelToken | None,
                 resume: bool, ctx: DistContext | None) -> None:
        from lorkd_core.device import select_device

        if not cfg.out:
            raise ConfigError("the job has no output folder ('out')")
        if not cfg.data:
            raise ConfigError("the job has no training data ('data': a manifest)")
        self.name, self.cfg, self.progress, self.cancel = name, cfg, progress, cancel
        self.ctx = ctx or DistContext(device=select_device(cfg.device))
        self.out = Path(cfg.out)
        self.ckpt_dir = self.out / CHECKPOINT_DIR
        self.started = time.perf_counter()
        self.expert_report: dict[str, Any] | None = None
        self.phase_seconds: dict[str, float] = {}
        self.finished: dict[str, Any] | None = None
        self.resume_from: Checkpoint | None = None
        self.data: TrainingSet | None = None
        done = self.out / "job.json"
        if self.ctx.is_main:
            remove_leftovers(self.out)
        if resume and done.is_file():
            info = json.loads(done.read_text(encoding="utf-8"))
            if info.get("status") == "done" and info.get("job") == name:
                self.finished = info
                if self.ctx.is_main:  # killed while finish() removed them
                    shutil.rmtree(self.ckpt_dir, ignore_errors=True)
                return
        if resume:
            folder = latest_checkpoint(self.ckpt_dir)
            if folder is not None:
                self.resume_from = load_checkpoint(folder)
                self._check_resumable(self.resume_from)
        if self.ctx.is_main:
            if self.resume_from is None and self.ckpt_dir.exists():
                shutil.rmtree(self.ckpt_dir)
            if done.exists():
                done.unlink()
            cfg.save(self.out / "config.json")
        self.ctx.barrier()

    def _check_resumable(self, ckpt: Checkpoint) -> None:
        if ckpt.state.get("job") != self.name:
            raise ConfigError(f"the checkpoint in {self.ckpt_dir} belongs to a '{ckpt.state.get('job')}' job")
        saved, now = ckpt.state.get("config", {}), self.cfg.to_dict()
        for key in sorted(set(saved) | set(now)):
            if key not in _RESUMABLE_CHANGES and saved.get(key) != now.get(key):
                raise ConfigError(f"cannot resume: '{key}' differs from the checkpoint "
                                  f"({saved.get(key)!r} there, {now.get(key)!r} now)")

    def load_data(self) -> TrainingSet:
        cfg = self.cfg
        items = read_manifest(cfg.data)
        total = _total_steps(cfg)
        loading = None
        if self.progress is not None and self.ctx.is_main:
            def loading(p: Progress) -> None:  # step 0 of the job while the cases load
                self.progress(Progress(0, total, f"loading data: {p.message}",  # type: ignore[misc]
                                       {"data_fraction": p.fraction}))
        self.data = TrainingSet(items, task=cfg.task, patch_size=cfg.patch_size, spacing=cfg.spacing,
                                seed=cfg.seed, spatial_dims=cfg.spatial_dims, augment=cfg.augment,
                                regions=cfg.regions, crop_sampling=cfg.crop_sampling,
                                max_cases_per_region=cfg.cache_cases_per_region, progress=loading,
                                cancel=self.cancel)
        return self.data

    def run(self, phases: list[Phase]) -> dict[str, dict[str, float]]:
        """Run the phases (skipping those a resumed checkpoint has finished); returns their final losses."""
        ckpt = self.resume_from
        names = [p.name for p in phases]
        first = names.index(ckpt.phase) if ckpt is not None and ckpt.phase in names else 0
        state = RunState(total_steps=sum(p.steps for p in phases))
        if ckpt is not None:
            state.elapsed = float(ckpt.state.get("elapsed_s", 0.0))
            self.phase_seconds = dict(ckpt.state.get("phase_seconds", {}))
            self.expert_report = ckpt.state.get("expert_report", self.expert_report)
        runner = Runner(self.name, self.cfg, self.data, self.ctx, self.ckpt_dir, state,
                        self.progress, self.cancel, extra_state=self._extra_state)
        losses: dict[str, dict[str, float]] = dict(ckpt.state.get("losses", {})) if ckpt else {}
        for i, phase in enumerate(phases):
            state.offset = sum(p.steps for p in phases[:i])
            if i < first:
                continue
            before = state.elapsed
            losses[phase.name] = runner.run(phase, ckpt if i == first else None)
            self.phase_seconds[phase.name] = self.phase_seconds.get(phase.name, 0.0) + state.elapsed - before
            self._losses = losses
            if phase.on_done is not None and self.ctx.is_main:
                phase.on_done(phase, losses[phase.name], self.phase_seconds[phase.name])
            self.ctx.barrier()
        self.elapsed = state.elapsed
        return losses

    def _extra_state(self) -> dict[str, Any]:
        return {"phase_seconds": self.phase_seconds, "losses": getattr(self, "_losses", {}),
                "expert_report": self.expert_report}

    def training_summary(self, data: TrainingSet, phase: str, losses: dict[str, float],
                         seconds: float | None = None) -> dict[str, Any]:
        cfg = self.cfg
        return {"data": str(Path(cfg.data).resolve()), "cases": data.counts(), "steps": _phase_steps(cfg, phase),
                "seconds": round(float(seconds if seconds is not None else self.phase_seconds.get(phase, 0.0)), 1),
                "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed, "final_loss": losses,
                "device": str(self.ctx.device), "processes": self.ctx.world, "config": cfg.to_dict()}

    def card_extra(self) -> dict[str, Any]:
        """What inference needs to preprocess a scan exactly as in training."""
        cfg = self.cfg
        return {"preprocessing": {"spacing": list(cfg.spacing), "patch_size": list(cfg.patch_size),
                                  "spatial_dims": cfg.spatial_dims, "orientation": "LPS",
                                  "intensity": "CT: clip(HU, -1000, 1000) / 1000; MR: z-score"},
                "version": 1}

    def finish(self, extra: dict[str, Any] | None = None) -> float:
        """Write ``job.json``, drop the checkpoints; returns the training seconds."""
        seconds = round(float(getattr(self, "elapsed", 0.0)), 1)
        if self.ctx.is_main:
            info = {"job": self.name, "status": "done", "steps": _total_steps(self.cfg), "seconds": seconds,
                    "losses": getattr(self, "_losses", {}), "wall_seconds": round(time.perf_counter() - self.started, 1),
                    **(extra or {})}
            if self.name != "decompose":
                info["losses"] = next(iter(info["losses"].values()), {})
            write_json_atomic(self.out / "job.json", info)
            shutil.rmtree(self.ckpt_dir, ignore_errors=True)
        self.ctx.barrier()
        return seconds


def remove_leftovers(out: Path) -> None:
    """Remove the temp files and folders that killed writers left in ``out`` and the job's subfolders."""
    for folder in (out, *(out / name for name in OUTPUT_FOLDERS)):
        remove_stale_temps(folder)


def _phase_steps(cfg: JobConfig, phase: str) -> int:
    if phase == "baseline" and isinstance(cfg, DecomposeConfig) and cfg.baseline_steps is not None:
        return cfg.baseline_steps
    return cfg.steps


def _total_steps(cfg: JobConfig) -> int:
    if isinstance(cfg, DecomposeConfig) and cfg.baseline:
        return cfg.steps + _phase_steps(cfg, "baseline")
    return cfg.steps
