"""Training jobs: the teacher (``train_foundation``), LoRKD decomposition (``decompose``) and ``adapt``.

Each job reads a manifest into an in-memory :class:`TrainingSet`, runs one or more phases through
:class:`lorkd_core.engine.loop.Runner`, and writes model folders (docs/contracts.md "Model folders"):

- ``train_foundation``: ``OUT/`` is the teacher folder (kind=teacher).
- ``decompose``: ``OUT/experts/`` (kind=experts), ``OUT/baseline/`` (kind=baseline, when ``cfg.baseline``),
  ``OUT/teacher/`` (a copy of the teacher, when ``cfg.copy_teacher``; else the card names its path).
- ``adapt``: ``OUT/experts/`` (kind=experts with the one region, ``version`` = parent's + 1).

Every job also writes ``OUT/config.json`` (the job config) at the start and ``OUT/job.json`` when done;
checkpoints live in ``OUT/checkpoint/`` until the job finishes. ``resume=True`` continues from the latest
checkpoint (or returns at once when ``job.json`` says the job is done).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorkd_core.atomic import write_json_atomic
from lorkd_core.data.manifest import read_manifest
from lorkd_core.engine.checkpoint import Checkpoint, latest_checkpoint, load_checkpoint
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
from lorkd_core.engine.loop import Phase, Runner, RunState
from lorkd_core.engine.losses import RegionObjective
from lorkd_core.engine.model_card import Architecture, ExpertsSpec, ModelCard
from lorkd_core.engine.model_io import expert_layer_ranks, load_model, save_model_folder
from lorkd_core.engine.networks import (
    RegionClassifier,
    RegionSegmenter,
    UnionHeads,
    build_network,
    check_patch,
    plain_architecture,
    region_architecture,
)
from lorkd_core.errors import ConfigError, ModelError
from lorkd_core.progress import CancelToken, Progress, ProgressCallback

CHECKPOINT_DIR = "checkpoint"
_RESUMABLE_CHANGES = {"device", "amp", "amp_dtype", "checkpoint_every", "out"}


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
    job = _Job("train-foundation", cfg, progress, cancel, resume, ctx)
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
    from lorkd_core.engine.teacher_import import import_teacher, load_teacher

    if not cfg.teacher:
        raise ConfigError("decompose needs a teacher (a model folder, MONAI bundle, TorchScript or safetensors file)")
    if cfg.task == "segmentation":
        check_patch(cfg.student, cfg.patch_size, "student network")
    job = _Job("decompose", cfg, progress, cancel, resume, ctx)
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
        card = _region_card("experts", cfg, arch, data, job.training_summary(data, "experts", losses, seconds),
                            job.card_extra())
        card.experts = ExpertsSpec(ranks=dict(ranks), alpha=cfg.alpha, region_order=list(data.regions),
                                   extra={"decoder_rank_factor": cfg.decoder_rank_factor,
                                          "layers": expert_layer_ranks(student.backbone),
                                          "train_backbone": cfg.train_backbone})
        card.training.update(teacher=teacher_ref, kd_regions=sorted(kd_ids), lam=cfg.lam, tau=cfg.tau)
        card.metrics["parameters"] = region_parameters(student)
        save_model_folder(out / "experts", student, card)

    def write_baseline(phase: Phase, losses: dict[str, float], seconds: float) -> None:
        card = _region_card("baseline", cfg, arch, data, job.training_summary(data, "baseline", losses, seconds),
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
        teacher_out = import_teacher(cfg.teacher, out / "teacher", spec=cfg.teacher_spec or None)
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


def _teacher_reference(cfg: DecomposeConfig, out: Path) -> str:
    if cfg.copy_teacher:
        return "../teacher"
    return str(Path(cfg.teacher).resolve())


def _region_card(kind: str, cfg: JobConfig, arch: dict[str, Any], data: TrainingSet, training: dict[str, Any],
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


# ====================================================================== adapt


def adapt(cfg: AdaptConfig, progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
          *, resume: bool = False, ctx: DistContext | None = None) -> TrainResult:
    """Fine-tune one region's experts (and head) of an experts model; writes ``OUT/experts`` (one region)."""
    from lorkd_core.experts import add_region_experts

    if not cfg.experts or not cfg.region:
        raise ConfigError("adapt needs 'experts' (an experts model folder) and 'region'")
    job = _Job("adapt", cfg.replace(regions=[cfg.region]), progress, cancel, resume, ctx)
    if job.finished is not None:
        return TrainResult(job.out, **{k: job.finished[k] for k in ("steps", "seconds", "losses")})
    parent, pcard = load_model(Path(cfg.experts) / "experts" if (Path(cfg.experts) / "experts").is_dir()
                               else cfg.experts)
    if pcard.kind != "experts" or cfg.region not in pcard.regions:
        raise ModelError(f"not an experts model with region '{cfg.region}'", pcard.path)
    data = job.load_data()
    region = cfg.region
    same_labels = data.labels[region] == pcard.labels.get(region)
    if not same_labels and not cfg.train_head:
        raise ConfigError("the dataset's labels differ from the expert's head: set train_head to true")
    arch = pcard.architecture.to_dict()
    torch.manual_seed(cfg.seed)
    model, spec, feats = make_student(cfg, data, {"name": arch["name"], "kwargs": arch["kwargs"]},
                                      arch.get("feature_channels"))
    layers = pcard.experts.extra["layers"]  # type: ignore[union-attr]
    add_region_experts(model.backbone, [region], lambda name, r: int(layers.get(name, {}).get(r, 0)),
                       targets=lambda name, m: any(v.get(region, 0) for k, v in layers.items() if k == name),
                       alpha=pcard.experts.alpha, train_backbone=False)  # type: ignore[union-attr]
    _transfer(parent.state_dict(), model, keep_head=same_labels, region=region)
    for name, p in model.named_parameters():
        p.requires_grad_(".experts." in name or (cfg.train_head and name.startswith(f"heads.{region}.")))
    teacher_model, kd_ids = None, {}
    if cfg.teacher and cfg.lam > 0:
        from lorkd_core.engine.teacher_import import load_teacher

        teacher = load_teacher(cfg.teacher, device=job.ctx.device)
        ids = teacher.class_ids([n for _, n in sorted(data.labels[region].items())])
        if ids is not None:
            teacher_model, kd_ids = teacher.model, {region: ids}
    objective = RegionObjective(cfg.task, data.regions, lam=cfg.lam, tau=cfg.tau, kd_ids=kd_ids)
    losses = job.run([Phase("adapt", model, cfg.steps, objective, teacher_model)])["adapt"]
    if job.ctx.is_main:
        heads = {region: len(data.labels[region]) + (cfg.task == "segmentation")}
        card = _region_card("experts", cfg, region_architecture(spec, feats, heads, cfg.task), data,
                            job.training_summary(data, "adapt", losses), job.card_extra())
        version = int(pcard.extra.get("version", 1)) + 1
        card.extra.update(version=version, parent=str(Path(pcard.folder or cfg.experts).resolve()))
        card.experts = ExpertsSpec(ranks={region: pcard.experts.ranks[region]}, alpha=pcard.experts.alpha,  # type: ignore[union-attr]
                                   region_order=[region],
                                   extra={"layers": expert_layer_ranks(model.backbone)})
        card.metrics["parameters"] = region_parameters(model)
        save_model_folder(job.out / "experts", model, card)
    return TrainResult(job.out, cfg.steps, job.finish(), losses)


def _transfer(source: dict[str, torch.Tensor], model: nn.Module, *, keep_head: bool, region: str) -> None:
    """Copy matching tensors into ``model``; a plain layer takes the ``base_layer`` weights of the source."""
    own = model.state_dict()
    picked = {}
    for key, value in own.items():
        if key.startswith("heads.") and not keep_head:
            continue
        candidates = [key]
        head, _, leaf = key.rpartition(".")
        candidates.append(f"{head}.base_layer.{leaf}" if head else f"base_layer.{leaf}")
        found = next((source[c] for c in candidates if c in source and source[c].shape == value.shape), None)
        if found is None:
            raise ModelError(f"the parent experts model has no tensor for '{key}'")
        picked[key] = found
    model.load_state_dict(picked, strict=False)


# ====================================================================== job plumbing


class _Job:
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
        if resume and done.is_file():
            info = json.loads(done.read_text(encoding="utf-8"))
            if info.get("status") == "done" and info.get("job") == name:
                self.finished = info
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
                                regions=cfg.regions,
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


def _phase_steps(cfg: JobConfig, phase: str) -> int:
    if phase == "baseline" and isinstance(cfg, DecomposeConfig) and cfg.baseline_steps is not None:
        return cfg.baseline_steps
    return cfg.steps


def _total_steps(cfg: JobConfig) -> int:
    if isinstance(cfg, DecomposeConfig) and cfg.baseline:
        return cfg.steps + _phase_steps(cfg, "baseline")
    return cfg.steps
