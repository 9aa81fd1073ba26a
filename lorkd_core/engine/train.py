"""Training jobs: the teacher (``train_foundation``), LoRKD decomposition (``decompose``) and ``adapt``.

Each job reads a manifest into an in-memory :class:`TrainingSet`, runs one or more phases through
:class:`lorkd_core.engine.loop.Runner`, and writes model folders (docs/contracts.md "Model folders"):

- ``train_foundation``: ``OUT/`` is the teacher folder (kind=teacher).
- ``decompose``: ``OUT/experts/`` (kind=experts), ``OUT/baseline/`` (kind=baseline, when ``cfg.baseline``),
  ``OUT/teacher/`` (a copy of the teacher, when ``cfg.copy_teacher``; else the card names its path).
- ``adapt`` (lorkd_core.engine.adapt): ``OUT/experts/`` (kind=experts, one region, ``version`` = parent's + 1).

Every job also writes ``OUT/config.json`` at the start and ``OUT/job.json`` when done; checkpoints live in
``OUT/checkpoint/`` until the job finishes (lorkd_core.engine.job). ``resume=True`` continues from the
latest checkpoint, or returns at once when ``job.json`` says the job is done.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorkd_core.engine.config import (
    AdaptConfig,
    DecomposeConfig,
    FoundationConfig,
    JobConfig,
    default_classifier_network,
    default_student_network,
    default_teacher_network,
)
from lorkd_core.engine.data_loading import TrainingSet
from lorkd_core.engine.distributed import DistContext
from lorkd_core.engine.job import Job
from lorkd_core.engine.loop import Phase
from lorkd_core.engine.losses import RegionObjective
from lorkd_core.engine.model_card import Architecture, ExpertsSpec, ModelCard
from lorkd_core.engine.model_io import expert_layer_ranks, save_model_folder
from lorkd_core.engine.networks import (
    RegionClassifier,
    RegionSegmenter,
    UnionHeads,
    build_network,
    check_patch,
    plain_architecture,
    region_architecture,
)
from lorkd_core.errors import ConfigError
from lorkd_core.progress import CancelToken, ProgressCallback


@dataclass
class TrainResult:
    """A finished teacher or adapt job."""

    out: Path
    steps: int
    seconds: float
    losses: dict[str, float] = field(default_factory=dict)


@dataclass
class DecomposeResult:
    """A finished decomposition: where its model folders are and what the training cost."""

    out: Path
    experts: Path
    baseline: Path | None
    teacher: Path | None
    steps: int
    seconds: float
    losses: dict[str, dict[str, float]] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)


# ====================================================================== teacher


def train_foundation(cfg: FoundationConfig, progress: ProgressCallback | None = None,
                     cancel: CancelToken | None = None, *, resume: bool = False,
                     ctx: DistContext | None = None) -> TrainResult:
    """Train the teacher on every region with the union label space (marginal loss per region)."""
    seg = cfg.task == "segmentation"
    spec = dict(cfg.network)
    if not seg and spec == default_teacher_network():
        spec = {"name": "lorkd.SmallCNN", "kwargs": {"channels": [16, 32, 64, 128]}}
    if seg:
        check_patch(spec, cfg.patch_size, "teacher network")
    job = Job("train-foundation", cfg, progress, cancel, resume, ctx)
    if job.finished is not None:
        return TrainResult(job.out, **{k: job.finished[k] for k in ("steps", "seconds", "losses")})
    data = job.load_data()
    union, class_ids = union_label_space(data)
    torch.manual_seed(cfg.seed)
    net = build_network(spec, out_channels=len(union), spatial_dims=cfg.spatial_dims)
    model = UnionHeads(net, class_ids, fold_background=seg)
    phase = Phase("teacher", model, cfg.steps, RegionObjective(cfg.task, data.regions))
    losses = job.run([phase])["teacher"]
    if job.ctx.is_main:
        per_region = {r: {cid: data.labels[r][i] for i, cid in zip(_class_keys(data, r), ids)}
                      for r, ids in class_ids.items()}
        from lorkd_core.engine.teacher_import import teacher_card

        arch = plain_architecture({"name": spec["name"],
                                   "kwargs": {**spec.get("kwargs", {}), "spatial_dims": cfg.spatial_dims}}, len(union))
        card = teacher_card(arch, union, task=cfg.task, per_region=per_region,
                            training=job.training_summary(data, "teacher", losses), extra=job.card_extra())
        save_model_folder(job.out, net, card)
    return TrainResult(job.out, cfg.steps, job.finish(), losses)


def union_label_space(data: TrainingSet) -> tuple[dict[int, str], dict[str, list[int]]]:
    """Union labels over the regions (segmentation: 0 = background; classification: class names) and,
    per region, the union channel of each of its classes in the region's order."""
    seg = data.task == "segmentation"
    names: list[str] = ["background"] if seg else []
    for region in data.regions:
        for _, name in sorted(data.labels[region].items()):
            if name not in names:
                names.append(name)
    ids = {r: [names.index(n) for _, n in sorted(data.labels[r].items())] for r in data.regions}
    return dict(enumerate(names)), ids


def _class_keys(data: TrainingSet, region: str) -> list[int]:
    return [k for k, _ in sorted(data.labels[region].items())]


# ====================================================================== decomposition


def decompose(cfg: DecomposeConfig, progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
              *, resume: bool = False, ctx: DistContext | None = None) -> DecomposeResult:
    """LoRKD: distil the teacher into a student backbone with region experts (and a no-expert baseline)."""
    from lorkd_core.engine.teacher_import import load_teacher

    if not cfg.teacher:
        raise ConfigError("decompose needs a teacher (a model folder, MONAI bundle, TorchScript or safetensors file)")
    if cfg.task == "segmentation":
        check_patch(cfg.student, cfg.patch_size, "student network")
    job = Job("decompose", cfg, progress, cancel, resume, ctx)
    if job.finished is not None:
        return _decompose_result(job.out, job.finished)
    data = job.load_data()
    teacher = load_teacher(cfg.teacher, spec=cfg.teacher_spec or None, device=job.ctx.device)
    if teacher.task != cfg.task:
        raise ConfigError(f"the teacher is a {teacher.task} model but the job's task is {cfg.task}")
    kd_ids = {}
    for r in data.regions:
        ids = teacher.class_ids([n for _, n in sorted(data.labels[r].items())])
        if ids is not None:
            kd_ids[r] = ids
    ranks = resolve_ranks(cfg, data.counts())

    torch.manual_seed(cfg.seed)
    student, spec, feats = make_student(cfg, data)
    report = add_experts(student, data.regions, ranks, cfg)
    torch.manual_seed(cfg.seed)
    baseline = make_student(cfg, data)[0] if cfg.baseline else None

    objective = RegionObjective(cfg.task, data.regions, lam=cfg.lam, tau=cfg.tau, kd_ids=kd_ids)
    heads = {r: len(data.labels[r]) + (cfg.task == "segmentation") for r in data.regions}
    arch = region_architecture(spec, feats, heads, cfg.task)
    out = job.out
    teacher_ref = _teacher_reference(cfg, out)

    def write_experts(phase: Phase, losses: dict[str, float], seconds: float) -> None:
        card = region_card("experts", cfg, arch, data, job.training_summary(data, "experts", losses, seconds),
                            job.card_extra())
        card.experts = ExpertsSpec(ranks=dict(ranks), alpha=cfg.alpha, region_order=list(data.regions),
                                   extra={"decoder_rank_factor": cfg.decoder_rank_factor,
                                          "layers": expert_layer_ranks(student.backbone),
                                          "train_backbone": cfg.train_backbone})
        card.training.update(teacher=teacher_ref, kd_regions=sorted(kd_ids), lam=cfg.lam, tau=cfg.tau)
        card.metrics["parameters"] = region_parameters(student)
        save_model_folder(out / "experts", student, card)

    def write_baseline(phase: Phase, losses: dict[str, float], seconds: float) -> None:
        card = region_card("baseline", cfg, arch, data, job.training_summary(data, "baseline", losses, seconds),
                            job.card_extra())
        card.training.update(teacher=teacher_ref, kd_regions=sorted(kd_ids), lam=cfg.lam, tau=cfg.tau)
        card.metrics["parameters"] = {r: _count(baseline) for r in data.regions}  # type: ignore[arg-type]
        save_model_folder(out / "baseline", baseline, card)  # type: ignore[arg-type]

    phases = [Phase("experts", student, cfg.steps, objective, teacher.model, write_experts)]
    if baseline is not None:
        steps = cfg.steps if cfg.baseline_steps is None else cfg.baseline_steps
        phases.append(Phase("baseline", baseline, steps, objective, teacher.model, write_baseline))
    job.expert_report = report.to_dict()
    losses = job.run(phases)
    teacher_out = None
    if job.ctx.is_main and cfg.copy_teacher:
        teacher_out = _install_teacher(cfg, out / "teacher")
    params = {"teacher": _count(teacher.model), "experts": region_parameters(student),
              "baseline": _count(baseline) if baseline is not None else None,
              "expert_layers": len(report.layers)}
    seconds = job.finish(extra={"losses": losses, "parameters": params,
                                "teacher": str(teacher_out) if teacher_out else teacher_ref})
    return DecomposeResult(out, out / "experts", out / "baseline" if baseline is not None else None,
                           teacher_out, sum(p.steps for p in phases), seconds, losses, params)


def resolve_ranks(cfg: DecomposeConfig, counts: dict[str, int]) -> dict[str, int]:
    """The encoder rank per region: uniform, per-region dict, or proportional to each region's cases."""
    regions = list(counts)
    if isinstance(cfg.ranks, dict):
        missing = [r for r in regions if r not in cfg.ranks]
        if missing:
            raise ConfigError(f"ranks has no entry for region(s) {missing}")
        return {r: int(cfg.ranks[r]) for r in regions}
    if cfg.ranks == "proportional":
        total = sum(counts.values())
        return {r: max(1, round(cfg.rank * len(regions) * counts[r] / total)) for r in regions}
    return {r: int(cfg.ranks) for r in regions}  # type: ignore[arg-type]


def make_student(cfg: DecomposeConfig | AdaptConfig, data: TrainingSet, spec: dict[str, Any] | None = None,
                 feature_channels: int | None = None) -> tuple[nn.Module, dict[str, Any], int]:
    """A region-head student without experts: (module, backbone spec, feature channels)."""
    seg = cfg.task == "segmentation"
    spec = dict(spec or getattr(cfg, "student", default_student_network()))
    if not seg and spec == default_student_network():
        spec = default_classifier_network()
    spec["kwargs"] = {**spec.get("kwargs", {}), "spatial_dims": cfg.spatial_dims}
    heads = {r: len(data.labels[r]) + seg for r in data.regions}
    if seg:
        check_patch(spec, cfg.patch_size, "student network")
        feats = int(feature_channels or getattr(cfg, "feature_channels", 16))
        backbone = build_network(spec, out_channels=feats)
        return RegionSegmenter(backbone, feats, heads, spatial_dims=cfg.spatial_dims), spec, feats
    backbone = build_network(spec)
    feats = int(getattr(backbone, "out_features", 0))
    if not feats:
        raise ConfigError(f"classification backbone {spec['name']} must expose out_features (use lorkd.SmallCNN)")
    return RegionClassifier(backbone, feats, heads), spec, feats


def add_experts(student: nn.Module, regions: list[str], ranks: dict[str, int], cfg: DecomposeConfig):
    """Experts on every conv/linear of the student's backbone; decoder ranks x ``decoder_rank_factor``."""
    from lorkd_core.experts import add_region_experts, encoder_decoder_ranks

    decoder = {r: (max(1, round(k * cfg.decoder_rank_factor)) if k else 0) for r, k in ranks.items()}
    return add_region_experts(student.backbone, regions, encoder_decoder_ranks(dict(ranks), decoder),
                              alpha=cfg.alpha, train_backbone=cfg.train_backbone)


def region_parameters(model: nn.Module) -> dict[str, int]:
    """Per region: the shared backbone + that region's expert factors + its head. (Merged for deployment,
    the expert has the backbone + head count; the factors are counted here to stay conservative.)"""
    from lorkd_core.experts import expert_layers

    experts: dict[str, int] = dict.fromkeys(model.regions, 0)  # type: ignore[union-attr]
    for _, layer in expert_layers(model):
        for region, factors in layer.experts.items():
            experts[region] += sum(p.numel() for p in factors.parameters())
    heads = {r: sum(p.numel() for p in h.parameters()) for r, h in model.heads.items()}  # type: ignore[union-attr]
    shared = _count(model) - sum(experts.values()) - sum(heads.values())
    return {r: int(shared + experts[r] + heads[r]) for r in model.regions}  # type: ignore[union-attr]


def _count(model: nn.Module | None) -> int:
    return 0 if model is None else int(sum(p.numel() for p in model.parameters()))


def _install_teacher(cfg: DecomposeConfig, target: Path) -> Path:
    """Copy (or import) the teacher into ``target`` as a whole: it is written to a hidden temp folder beside
    it and renamed into place, so a killed job never leaves a half-copied teacher (the stale temp folder is
    removed when the job runs again)."""
    from lorkd_core.engine.teacher_import import import_teacher

    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    aside = target.with_name(f".{target.name}.tmp-old-{os.getpid()}")
    for stale in (staging, aside):
        shutil.rmtree(stale, ignore_errors=True)
    import_teacher(cfg.teacher, staging, spec=cfg.teacher_spec or None)
    if target.exists():
        os.replace(target, aside)
    os.replace(staging, target)
    shutil.rmtree(aside, ignore_errors=True)
    return target


def _teacher_reference(cfg: DecomposeConfig, out: Path) -> str:
    if cfg.copy_teacher:
        return "../teacher"
    return str(Path(cfg.teacher).resolve())


def region_card(kind: str, cfg: JobConfig, arch: dict[str, Any], data: TrainingSet, training: dict[str, Any],
                 extra: dict[str, Any]) -> ModelCard:
    a = dict(arch)
    return ModelCard(kind=kind, task=cfg.task,
                     architecture=Architecture(a.pop("name"), a.pop("kwargs"), a.pop("heads"), a),
                     regions=list(data.regions), labels={r: dict(data.labels[r]) for r in data.regions},
                     training=training, extra=dict(extra))


def _decompose_result(out: Path, done: dict[str, Any]) -> DecomposeResult:
    baseline = out / "baseline"
    teacher = out / "teacher"
    return DecomposeResult(out, out / "experts", baseline if baseline.is_dir() else None,
                           teacher if teacher.is_dir() else None, int(done["steps"]), float(done["seconds"]),
                           done.get("losses", {}), done.get("parameters", {}))
