"""Task and distillation losses for region heads.

Distillation follows LoRKD: the student's region head sees only that region's classes, so the teacher's
union-label logits are restricted to them first; every teacher class outside the region is folded into
the background channel with logsumexp, which keeps the teacher's probabilities exact (the background
probability becomes the sum of the probabilities of all foreign classes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss


def restrict_teacher_logits(teacher_logits: torch.Tensor, class_ids_for_region: Sequence[int],
                            *, fold_background: bool = True) -> torch.Tensor:
    """Teacher logits (B, C, ...) -> logits over one region's classes.

    Segmentation (``fold_background=True``): ``class_ids_for_region`` are the teacher channels of the
    region's foreground labels in the region's order 1..n; the result has 1 + n channels, channel 0 being
    ``logsumexp`` over every other teacher channel (teacher background included), so that
    ``softmax(result)`` equals ``softmax(teacher_logits)`` with the foreign classes summed into background.

    Classification (``fold_background=False``): the result is just the selected channels, so its softmax is
    the teacher's distribution conditioned on the region's classes.
    """
    ids = [int(i) for i in class_ids_for_region]
    n_teacher = teacher_logits.shape[1]
    if any(i < 0 or i >= n_teacher for i in ids):
        raise ValueError(f"class ids {ids} out of range for a teacher with {n_teacher} channels")
    if len(set(ids)) != len(ids):
        raise ValueError(f"class ids {ids} repeat a channel")
    index = torch.tensor(ids, dtype=torch.long, device=teacher_logits.device)
    selected = teacher_logits.index_select(1, index)
    if not fold_background:
        return selected
    if 0 in ids:
        raise ValueError("teacher channel 0 (background) cannot be one of the region's foreground classes")
    keep = torch.ones(n_teacher, dtype=torch.bool, device=teacher_logits.device)
    keep[index] = False
    rest = teacher_logits[:, keep]
    background = torch.logsumexp(rest, dim=1, keepdim=True)
    return torch.cat([background, selected], dim=1)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """``tau^2 * KL(softmax(t/tau) || softmax(s/tau))``, summed over classes, averaged over samples and voxels."""
    s = F.log_softmax(student_logits.float() / tau, dim=1)
    t = F.log_softmax(teacher_logits.float() / tau, dim=1)
    kl = (t.exp() * (t - s)).sum(dim=1)
    return kl.mean() * (tau * tau)


class SegmentationTaskLoss:
    """Dice (foreground, batch-wise) + cross-entropy on integer label maps (B, 1, ...)."""

    def __init__(self) -> None:
        self._loss = DiceCELoss(include_background=False, to_onehot_y=True, softmax=True, batch=True,
                                smooth_nr=1e-5, smooth_dr=1e-5)

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] == 1:
            raise ValueError("a segmentation head needs background plus at least one class")
        return self._loss(logits.float(), target)


def classification_task_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy; ``target`` holds class indices (B,) or (B, 1)."""
    return F.cross_entropy(logits.float(), target.reshape(-1).long())


@dataclass
class RegionLoss:
    """Loss terms of one region's samples in a batch."""

    task: torch.Tensor
    kd: torch.Tensor
    count: int

    def total(self, lam: float) -> torch.Tensor:
        return self.task + lam * self.kd


def combine(losses: dict[str, RegionLoss], lam: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted by each region's share of the batch: (total, task, kd), each a scalar tensor."""
    n = sum(r.count for r in losses.values())
    if n == 0:
        raise ValueError("no samples in the batch")
    task = sum(r.task * (r.count / n) for r in losses.values())
    kd = sum(r.kd * (r.count / n) for r in losses.values())
    return task + lam * kd, task, kd  # type: ignore[return-value]


class RegionObjective:
    """Loss of a mixed-region batch: per region, task loss on its head plus ``lam`` x KD from the teacher.

    ``kd_ids[region]``: the teacher channels of the region's classes (see :func:`restrict_teacher_logits`);
    a region without an entry gets no distillation (the teacher does not know all its labels).
    """

    def __init__(self, task: str, regions: list[str], *, lam: float = 0.0, tau: float = 1.0,
                 kd_ids: dict[str, list[int]] | None = None) -> None:
        self.task = task
        self.regions = list(regions)
        self.lam = float(lam)
        self.tau = float(tau)
        self.kd_ids = dict(kd_ids or {})
        self._seg = SegmentationTaskLoss() if task == "segmentation" else None

    @property
    def uses_teacher(self) -> bool:
        return self.lam > 0 and bool(self.kd_ids)

    def __call__(self, outputs: dict[str, torch.Tensor], target: torch.Tensor, region_index: torch.Tensor,
                 teacher_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, RegionLoss]]:
        parts: dict[str, RegionLoss] = {}
        for i, region in enumerate(self.regions):
            if region not in outputs:
                continue
            mask = region_index == i
            logits = outputs[region]
            tgt = target[mask]
            task = self._seg(logits, tgt) if self._seg is not None else classification_task_loss(logits, tgt)
            kd = logits.new_zeros((), dtype=torch.float32)
            if teacher_logits is not None and self.lam > 0 and region in self.kd_ids:
                restricted = restrict_teacher_logits(teacher_logits[mask], self.kd_ids[region],
                                                     fold_background=self.task == "segmentation")
                kd = kd_loss(logits, restricted, self.tau)
            parts[region] = RegionLoss(task, kd, int(mask.sum()))
        total, _, _ = combine(parts, self.lam)
        return total, parts
