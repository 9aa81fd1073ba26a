"""Standalone region experts: the merged backbone plus one region's head, as a plain network.

The exported folder is an ordinary model folder (kind "expert"): ``model.safetensors`` holds
``backbone.*`` (the MONAI network with ``W0 + dW_region`` merged in) and ``heads.<region>.*``, and the
card's architecture rebuilds it with :func:`lorkd_core.engine.networks.build_from_architecture`; no expert
layer classes are involved in loading or running it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from lorkd_core.engine.model_card import (
    Architecture,
    ModelCard,
    load_state_checked,
    read_card,
    region_labels,
    weights_path,
)
from lorkd_core.errors import ModelError
from lorkd_core.progress import CancelToken, ProgressCallback, report

# Card keys of the source that describe the whole set, not the exported region.
_SET_ONLY_EXTRA = ("weights_sha256", "display_name", "name")


@dataclass(frozen=True)
class ExportResult:
    path: Path
    card: ModelCard
    parameters: int
    file_bytes: int


def find_model_folder(models: str | Path, kinds: tuple[str, ...] = ("experts",)) -> Path:
    """The model folder of one of ``kinds`` in ``models``: the folder itself or a child (``experts/``...)."""
    models = Path(models)
    if (models / "card.json").is_file():
        card = read_card(models)
        if card.kind in kinds:
            return models
        raise ModelError(f"expected a model of kind {' or '.join(kinds)}, found kind '{card.kind}'", models / "card.json")
    for name in ("experts", *kinds):
        child = models / name
        if (child / "card.json").is_file() and read_card(child).kind in kinds:
            return child
    if not models.exists():
        raise ModelError("model folder does not exist", models)
    raise ModelError(f"no model of kind {' or '.join(kinds)} here (expected card.json or experts/card.json)", models)


def standalone_expert(model: nn.Module, card: ModelCard, region: str) -> tuple[nn.Module, Architecture]:
    """A plain region model (one head, merged weights, no expert layers) and the architecture rebuilding it.

    ``model`` is the loaded module of an experts / baseline / expert card (see ``model_io.load_model``).
    """
    from lorkd_core.engine.networks import build_from_architecture

    if card.kind == "teacher":
        raise ModelError("a teacher has no region heads to export; export from an experts model", card.path)
    if region not in card.regions:
        raise ModelError(f"the model has no region '{region}'; it has {', '.join(card.regions)}", card.path)
    arch = copy.deepcopy(card.architecture)
    if region not in arch.heads:
        raise ModelError(f"field 'architecture.heads' has no head for region '{region}'", card.path)
    arch.heads = {region: arch.heads[region]}
    if card.kind == "experts":
        from lorkd_core.experts import merged_expert

        merged = merged_expert(model, region)
    else:
        merged = model
    plain = build_from_architecture(arch.to_dict())
    prefix = "heads."
    state = {k: v for k, v in merged.state_dict().items()
             if not k.startswith(prefix) or k.startswith(f"{prefix}{region}.")}
    load_state_checked(plain, state, card.path or "model")
    plain.to(next(model.parameters()).device)
    return plain.eval(), arch


def export_card(source: ModelCard, region: str, arch: Architecture, parameters: int) -> ModelCard:
    """The kind-"expert" card of ``source``'s ``region``: labels, region metrics, training data summary."""
    training = copy.deepcopy(source.training)
    training["exported_from"] = {"kind": source.kind, "path": str(source.folder) if source.folder else None,
                                 "regions": list(source.regions)}
    if source.experts is not None:
        training["expert_rank"] = source.experts.ranks.get(region)
    extra = {k: copy.deepcopy(v) for k, v in source.extra.items() if k not in _SET_ONLY_EXTRA}
    extra["display_name"] = f"{region.replace('_', ' ').title()} expert"
    return ModelCard(kind="expert", task=source.task, architecture=arch, regions=[region],
                     labels={region: region_labels(source, region)}, training=training,
                     metrics=_region_metrics(source.metrics, region), parameters=parameters, extra=extra)


def export_expert(models: str | Path, region: str, out: str | Path, *, half: bool = False,
                  progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> ExportResult:
    """``lorkd export``: write the standalone expert of ``region`` from the experts model in ``models``."""
    import torch

    from lorkd_core.engine.model_card import save_model
    from lorkd_core.engine.model_io import load_model

    folder = find_model_folder(models, ("experts", "baseline", "expert"))
    report(progress, 0, 3, f"loading {folder}")
    model, card = load_model(folder)
    if cancel is not None:
        cancel.raise_if_cancelled("export")
    report(progress, 1, 3, f"merging the {region} expert")
    plain, arch = standalone_expert(model, card, region)
    parameters = int(sum(p.numel() for p in plain.parameters()))
    new = export_card(card, region, arch, parameters)
    state = plain.state_dict()
    if half:
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
        new.extra["weights_dtype"] = "float16"
    if cancel is not None:
        cancel.raise_if_cancelled("export")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "card.json").is_file():
        raise ModelError("output folder exists and is not a model folder; choose an empty folder", out)
    with torch.no_grad():
        save_model(out, state, new)
    report(progress, 3, 3, f"exported to {out}")
    return ExportResult(out, new, parameters, weights_path(new).stat().st_size)


def _region_metrics(metrics: dict[str, Any], region: str) -> dict[str, Any]:
    """Keep, for each metric, only the exported region's value (``{"dice": {"abdomen": 0.9}}``)."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, dict) and region in value:
            out[key] = {region: copy.deepcopy(value[region])}
    return out
