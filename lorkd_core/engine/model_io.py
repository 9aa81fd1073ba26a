"""Save trained models as model folders (card.json + model.safetensors) and rebuild them from a card.

An ``experts`` card stores, under ``experts``: ``ranks`` (the encoder rank per region), ``alpha``,
``region_order``, ``decoder_rank_factor`` and ``layers`` ({backbone layer path: {region: rank}}), which is
all :func:`attach_experts` needs to rebuild the exact expert layers before the weights are loaded.
Weights may be stored as float16 (bundled demo models); loading always casts back to the module's dtype.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorkd_core.engine.model_card import ModelCard, load_state_checked, load_weights, read_card, save_model
from lorkd_core.engine.networks import build_from_architecture
from lorkd_core.errors import ModelError

TORCHSCRIPT = "torchscript"


def expert_layer_ranks(backbone: nn.Module) -> dict[str, dict[str, int]]:
    """{layer path relative to ``backbone``: {region: rank}} for every expert layer."""
    from lorkd_core.experts import expert_layers

    return {name: dict(layer.ranks) for name, layer in expert_layers(backbone)}


def attach_experts(backbone: nn.Module, experts: Mapping[str, Any], *, train_backbone: bool = True) -> None:
    """Re-create the expert layers an ``experts`` card section describes (fresh factors, to be loaded)."""
    from lorkd_core.experts import add_region_experts

    layers = experts.get("layers")
    order = list(experts["region_order"])
    if not isinstance(layers, dict) or not layers:
        raise ModelError("the card's experts section has no 'layers' (per-layer ranks); cannot rebuild the experts")

    def rank(name: str, region: str) -> int:
        return int(layers.get(name, {}).get(region, 0))

    add_region_experts(backbone, order, rank, targets=lambda name, module: name in layers,
                       alpha=experts.get("alpha"), train_backbone=train_backbone)


def build_model(card: ModelCard) -> nn.Module:
    """The module a card describes, experts attached, weights not loaded."""
    arch = card.architecture.to_dict()
    if arch["name"] == TORCHSCRIPT:
        raise ModelError("a TorchScript teacher is loaded with load_model, not rebuilt", card.path)
    model = build_from_architecture(arch)
    if card.kind == "experts" and card.experts is not None:
        attach_experts(model.backbone, card.experts.to_dict())  # type: ignore[arg-type]
    return model


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Read a model folder into an eval-mode module on ``device`` (float32) plus its card."""
    card = read_card(folder)
    if card.architecture.name == TORCHSCRIPT:
        file = card.folder / str(card.architecture.extra.get("file", "model.torchscript"))  # type: ignore[operator]
        try:
            model = torch.jit.load(str(file), map_location="cpu")
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"cannot load the TorchScript teacher ({exc})", file) from exc
        return model.float().to(device).eval(), card
    model = build_model(card)
    load_state_checked(model, load_weights(card), card.folder / "model.safetensors")  # type: ignore[operator]
    return model.float().to(device).eval(), card


def save_model_folder(folder: str | Path, model: nn.Module, card: ModelCard, *,
                      dtype: torch.dtype | None = None) -> Path:
    """Write ``model``'s state dict (optionally cast, e.g. float16 for bundling) and the card, atomically."""
    state = model.state_dict()
    if dtype is not None:
        state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
    card.parameters = int(sum(p.numel() for p in model.parameters()))
    return save_model(folder, state, card)
