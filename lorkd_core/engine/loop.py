"""The training loop shared by every job: one phase = one model trained for N steps on mixed-region batches.

Per step: the (seed, step) batch (this rank's shard), one forward/backward through EKS, optional teacher
logits for distillation, AdamW with a warmup + cosine learning rate that is a function of the step, and a
progress report. The cancel token is checked between steps (all ranks agree on it); on cancel, and every
``checkpoint_every`` steps, rank 0 writes a checkpoint. Nothing depends on wall-clock state, so a resumed
run reproduces the uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorkd_core.engine.checkpoint import Checkpoint, save_checkpoint
from lorkd_core.engine.config import JobConfig
from lorkd_core.engine.data_loading import Batch, TrainingSet
from lorkd_core.engine.distributed import DistContext
from lorkd_core.engine.losses import RegionObjective
from lorkd_core.errors import JobCancelled
from lorkd_core.progress import CancelToken, Progress, ProgressCallback

GRAD_CLIP = 5.0
MIN_LR_FRACTION = 0.05


@dataclass
class Phase:
    """One model to train: ``model(x, region_index) -> {region: logits}``; ``teacher(x)`` for KD."""

    name: str
    model: nn.Module
    steps: int
    objective: RegionObjective
    teacher: nn.Module | None = None
    on_done: Callable[[Phase, dict[str, float], float], None] | None = None


@dataclass
class RunState:
    """Counters shared across the phases of one job (what the checkpoint's JSON carries)."""

    total_steps: int
    offset: int = 0  # global step of the current phase's step 0
    elapsed: float = 0.0  # training seconds over all sessions of this job
    last: dict[str, float] = field(default_factory=dict)


def lr_at(step: int, steps: int, base: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to ``MIN_LR_FRACTION`` of ``base``."""
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    span = max(1, steps - warmup)
    t = min(1.0, (step - warmup) / span)
    return base * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * t)))


class Runner:
    """Runs phases of one job with checkpoints in ``ckpt_dir`` and progress to ``progress``."""

    def __init__(self, job: str, cfg: JobConfig, data: TrainingSet, ctx: DistContext, ckpt_dir: Path,
                 state: RunState, progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                 extra_state: Callable[[], dict[str, Any]] | None = None) -> None:
        self.job = job
        self.cfg = cfg
        self.data = data
        self.ctx = ctx
        self.ckpt_dir = ckpt_dir
        self.state = state
        self.progress = progress
        self.cancel = cancel
        self.extra_state = extra_state or dict
        dev = ctx.device
        self.amp = bool(cfg.amp) and dev.type == "cuda"
        self.amp_dtype = torch.bfloat16 if cfg.amp_dtype == "bf16" else torch.float16

    # ------------------------------------------------------------------ one phase

    def run(self, phase: Phase, resume: Checkpoint | None = None) -> dict[str, float]:
        ctx, cfg = self.ctx, self.cfg
        model = phase.model.to(ctx.device)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        start = 0
        if resume is not None:
            model.load_state_dict(resume.model)
            if resume.optimizer is not None:
                opt.load_state_dict(resume.optimizer)
            if "scaler" in resume.state and scaler.is_enabled():
                scaler.load_state_dict(resume.state["scaler"])
            start = int(resume.state.get("phase_step", resume.step))
        if phase.teacher is not None:
            phase.teacher.to(ctx.device).eval()
        wrapped = ctx.wrap(model)
        slots = ctx.shard(cfg.batch_size)
        ema: dict[str, float] = {}
        rate = 0.0
        # The next batch is prepared on a worker thread while this step computes; batches are a pure
        # function of (seed, step), so this changes nothing but the time.
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lorkd-batch")
        fetch = lambda s: pool.submit(self.data.batch, s, cfg.batch_size, slots)  # noqa: E731
        pending = fetch(start) if start < phase.steps else None
        try:
            for step in range(start, phase.steps):
                if ctx.any_flag(self.cancel is not None and self.cancel.cancelled):
                    folder = self._checkpoint(phase, step, model, opt, scaler)
                    where = f"; checkpoint at step {self.state.offset + step} in {folder}" if folder else ""
                    raise JobCancelled(f"{self.job} was cancelled{where}")
                t0 = time.perf_counter()
                batch = pending.result()  # type: ignore[union-attr]
                pending = fetch(step + 1) if step + 1 < phase.steps else None
                metrics = self._step(phase, wrapped, params, opt, scaler, step, batch)
                dt = time.perf_counter() - t0
                self.state.elapsed += dt
                rate = cfg.batch_size / dt if rate == 0 else 0.8 * rate + 0.2 * cfg.batch_size / dt
                for k, v in metrics.items():
                    ema[k] = v if k not in ema else 0.9 * ema[k] + 0.1 * v
                self._report(phase, step, metrics, rate)
                done = step + 1
                if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < phase.steps:
                    self._checkpoint(phase, done, model, opt, scaler)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        self.state.last = ema
        return ema

    def _step(self, phase: Phase, wrapped: nn.Module, params: list[torch.nn.Parameter],
              opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, step: int, batch: Batch) -> dict[str, float]:
        ctx, cfg = self.ctx, self.cfg
        batch = batch.to(ctx.device)
        lr = lr_at(step, phase.steps, cfg.lr, cfg.warmup_steps)
        for group in opt.param_groups:
            group["lr"] = lr
        autocast = (torch.autocast(device_type=ctx.device.type, dtype=self.amp_dtype) if self.amp
                    else contextlib.nullcontext())
        with autocast:
            outputs = wrapped(batch.image, batch.region_index)
            teacher_logits = None
            if phase.teacher is not None and phase.objective.uses_teacher:
                with torch.no_grad():
                    teacher_logits = phase.teacher(batch.image).float()
        loss, parts = phase.objective(outputs, batch.target, batch.region_index, teacher_logits)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        scaler.step(opt)
        scaler.update()
        return self._reduce(parts, lr, phase.objective.lam)

    def _reduce(self, parts: dict, lr: float, lam: float) -> dict[str, float]:
        """Sample-weighted means over all ranks: loss, task, kd and each region's loss."""
        regions = self.data.regions
        vec = torch.zeros(3 + 2 * len(regions), dtype=torch.float64)
        for region, part in parts.items():
            n = part.count
            task, kd = float(part.task.detach()), float(part.kd.detach())
            vec[0] += n * (task + lam * kd)
            vec[1] += n * task
            vec[2] += n * kd
            i = regions.index(region)
            vec[3 + 2 * i] += n * (task + lam * kd)
            vec[4 + 2 * i] += n
        if self.ctx.distributed:
            vec = self.ctx.all_reduce_sum(vec.to(self.ctx.device)).cpu()
        n = float(vec[4::2].sum()) or 1.0
        out = {"loss": float(vec[0]) / n, "task": float(vec[1]) / n, "kd": float(vec[2]) / n, "lr": lr}
        for i, region in enumerate(regions):
            count = float(vec[4 + 2 * i])
            if count:
                out[f"region/{region}"] = float(vec[3 + 2 * i]) / count
        return out

    def _report(self, phase: Phase, step: int, metrics: dict[str, float], rate: float) -> None:
        if self.progress is None or not self.ctx.is_main:
            return
        done = self.state.offset + step + 1
        remaining = self.state.total_steps - done
        eta = remaining * self.cfg.batch_size / rate if rate > 0 else float("nan")
        metrics = {**metrics, "samples_per_s": rate, "eta_s": eta, "phase_step": float(step + 1),
                   "phase_steps": float(phase.steps)}
        self.progress(Progress(done, self.state.total_steps, phase.name, metrics))

    def _checkpoint(self, phase: Phase, step: int, model: nn.Module, opt: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler) -> Path | None:
        folder = None
        if self.ctx.is_main:
            state = {"job": self.job, "config": self.cfg.to_dict(), "phase_step": step,
                     "total_steps": self.state.total_steps, "elapsed_s": self.state.elapsed,
                     "regions": self.data.regions, **self.extra_state()}
            if scaler.is_enabled():
                state["scaler"] = scaler.state_dict()
            folder = save_checkpoint(self.ckpt_dir, step=self.state.offset + step, phase=phase.name, model=model,
                                     optimizer=opt, state=state)
        self.ctx.barrier()
        return folder
