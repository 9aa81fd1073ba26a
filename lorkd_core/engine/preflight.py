"""Check a job before it starts: problems a user can fix, and how much memory it will roughly need.

The memory estimate runs each network once on one zero patch and sums the outputs of its leaf modules
(what autograd keeps for the backward pass), scaled by the batch, plus weights, gradients and the two
AdamW moments. It is an estimate for warnings ("this needs ~6 GB, the machine has 4"), not a bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lorkd_core.engine.config import AdaptConfig, DecomposeConfig, FoundationConfig, JobConfig
from lorkd_core.errors import LorkdError


@dataclass
class Preflight:
    problems: list[str] = field(default_factory=list)
    cases: dict[str, int] = field(default_factory=dict)
    memory_bytes: int = 0
    parameters: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def preflight(cfg: JobConfig, *, world: int = 1) -> Preflight:
    """Problems (missing files, regions without cases, patch/network mismatch, ...) and a memory estimate."""
    out = Preflight()
    try:
        cfg.validate()
    except LorkdError as exc:
        out.problems.append(str(exc))
        return out
    if cfg.batch_size % world:
        out.problems.append(f"batch_size {cfg.batch_size} is not a multiple of the {world} processes")
    _check_data(cfg, out)
    if isinstance(cfg, DecomposeConfig) and cfg.teacher and not Path(cfg.teacher).exists():
        out.problems.append(f"teacher not found: {cfg.teacher}")
    if isinstance(cfg, AdaptConfig) and cfg.experts and not Path(cfg.experts).exists():
        out.problems.append(f"experts model not found: {cfg.experts}")
    try:
        _estimate(cfg, out)
    except LorkdError as exc:
        out.problems.append(str(exc))
    return out


def _check_data(cfg: JobConfig, out: Preflight) -> None:
    from lorkd_core.data.manifest import read_manifest

    try:
        items = read_manifest(cfg.data)
    except LorkdError as exc:
        out.problems.append(str(exc))
        return
    train = [it for it in items if it.split == "train"] or items
    for it in train:
        if cfg.regions is None or it.region in cfg.regions:
            out.cases[it.region] = out.cases.get(it.region, 0) + 1
    for region in cfg.regions or []:
        if region not in out.cases:
            out.problems.append(f"region '{region}' has no training cases in {cfg.data}")
    if cfg.task == "segmentation":
        unlabelled = sum(1 for it in train if it.label is None)
        if unlabelled == len(train) and train:
            out.problems.append("no training case has a label map (segmentation needs them)")
    missing = [str(it.image) for it in train if not Path(it.image).exists()]
    if missing:
        out.problems.append(f"{len(missing)} image(s) are missing, e.g. {missing[0]}")


def _estimate(cfg: JobConfig, out: Preflight) -> None:
    from lorkd_core.engine.networks import RegionSegmenter, build_network, check_patch

    seg = cfg.task == "segmentation"
    nets: dict[str, nn.Module] = {}
    if isinstance(cfg, FoundationConfig) and seg:
        check_patch(cfg.network, cfg.patch_size, "teacher network")
        nets["teacher"] = build_network(cfg.network, out_channels=50, spatial_dims=cfg.spatial_dims)
    elif isinstance(cfg, DecomposeConfig) and seg:
        check_patch(cfg.student, cfg.patch_size, "student network")
        backbone = build_network(cfg.student, out_channels=cfg.feature_channels, spatial_dims=cfg.spatial_dims)
        nets["student"] = RegionSegmenter(backbone, cfg.feature_channels, {"r": 10}, spatial_dims=cfg.spatial_dims)
    for name, net in nets.items():
        params = sum(p.numel() for p in net.parameters())
        out.parameters[name] = int(params)
        activations = _activation_numel(net, cfg)
        # weights + grads + 2 Adam moments (x4), activations kept for backward (x2 for their grads)
        out.memory_bytes += int(4 * (4 * params + 2 * activations * cfg.batch_size))


def _activation_numel(net: nn.Module, cfg: JobConfig) -> int:
    total = 0

    def hook(_m: nn.Module, _i: object, output: object) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel()

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    try:
        x = torch.zeros(1, 1, *cfg.patch_size)
        with torch.no_grad():
            net(x, torch.zeros(1, dtype=torch.long)) if hasattr(net, "heads") else net(x)
    finally:
        for h in handles:
            h.remove()
    return total
