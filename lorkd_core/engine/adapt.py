"""Adapt one region's expert to a small dataset: a new expert version, the rest of the model frozen."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lorkd_core.engine.config import AdaptConfig
from lorkd_core.engine.distributed import DistContext
from lorkd_core.engine.job import Job
from lorkd_core.engine.loop import Phase
from lorkd_core.engine.losses import RegionObjective
from lorkd_core.engine.model_card import ExpertsSpec
from lorkd_core.engine.model_io import expert_layer_ranks, load_model, save_model_folder
from lorkd_core.engine.networks import region_architecture
from lorkd_core.engine.train import TrainResult, make_student, region_card, region_parameters
from lorkd_core.errors import ConfigError, ModelError
from lorkd_core.progress import CancelToken, ProgressCallback


def adapt(cfg: AdaptConfig, progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
          *, resume: bool = False, ctx: DistContext | None = None) -> TrainResult:
    """Fine-tune one region's experts (and head) of an experts model; writes ``OUT/experts`` (one region)."""
    from lorkd_core.experts import add_region_experts

    if not cfg.experts or not cfg.region:
        raise ConfigError("adapt needs 'experts' (an experts model folder) and 'region'")
    job = Job("adapt", cfg.replace(regions=[cfg.region]), progress, cancel, resume, ctx)
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
        card = region_card("experts", cfg, region_architecture(spec, feats, heads, cfg.task), data,
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
