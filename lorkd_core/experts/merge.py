"""Turn region experts into plain weights: a standalone copy per region, or an in-place merge for speed."""

from __future__ import annotations

import copy

import torch
from torch import nn

from lorkd_core.errors import ModelError
from lorkd_core.experts.layers import ExpertLayer
from lorkd_core.experts.routing import expert_layers, region_order


def delta_weight(layer: ExpertLayer, region: str | int) -> torch.Tensor:
    """``dW_t = scale_t * B_t @ A_t`` in the base weight's shape (zeros for rank 0); differentiable."""
    return layer.delta_weight(region)


def _merged_weight(layer: ExpertLayer, region: str, *, safe: bool) -> torch.Tensor:
    with torch.no_grad():
        w = layer.backbone_weight + layer.delta_weight(region).to(layer.backbone_weight.dtype)
    if safe and not bool(torch.isfinite(w).all()):
        raise ModelError(
            f"layer {layer.layer_name!r}: merging region {region!r} gives NaN/Inf weights; refused"
        )
    return w


def _plain_copy(layer: ExpertLayer, region: str, *, safe: bool) -> nn.Module:
    plain = copy.deepcopy(layer.base_layer)
    with torch.no_grad():
        plain.weight.copy_(_merged_weight(layer, region, safe=safe))
    return plain


def merged_expert(model: nn.Module, region: str | int, *, safe: bool = True) -> nn.Module:
    """A deep copy of ``model`` where every expert layer is a plain layer of its base type with
    ``W0 + dW_region`` (``requires_grad`` as in the base). ``model`` itself is never modified."""
    order = region_order(model)
    name = region if isinstance(region, str) else order[int(region)]
    if isinstance(model, ExpertLayer):
        return _plain_copy(model, model.region_name(name), safe=safe)
    # Copy without the expert layers (their factors would be copied only to be dropped), then put a
    # plain merged layer where each one was; shared layers stay shared in the copy.
    plain: dict[int, nn.Module] = {}
    memo: dict[int, object] = {}
    for _, layer in expert_layers(model):
        layer.region_name(name)
        plain[id(layer)] = _plain_copy(layer, name, safe=safe)
        memo[id(layer)] = plain[id(layer)]
    out = copy.deepcopy(model, memo)
    leftovers = [n for n, m in out.named_modules() if isinstance(m, ExpertLayer)]
    if leftovers:  # pragma: no cover - deepcopy honours the memo for every reference
        raise ModelError(f"merged copy still holds expert layers: {leftovers[:3]}")
    return out


def merge(module: nn.Module, region: str | int, *, safe: bool = True) -> list[str]:
    """Add ``dW_region`` into the base weight of ``module`` (an expert layer or a model), in place.

    The layer remembers what is merged: merging the same region again does nothing, another region is
    unmerged first, so a delta is never added twice. While merged, the layer only runs routed to that
    region. ``safe`` refuses NaN/Inf results. Returns the names of the layers changed.
    """
    changed = []
    layers = [("", module)] if isinstance(module, ExpertLayer) else expert_layers(module)
    for path, layer in layers:
        name = layer.region_name(region)
        if layer.merged_region == name:
            continue
        if layer.merged_region is not None:
            unmerge(layer)
        w0 = layer.base_layer.weight
        merged = _merged_weight(layer, name, safe=safe)
        with torch.no_grad():
            layer._unmerged_weight = w0.detach().clone()
            w0.copy_(merged)
        layer.merged_region = name
        layer._merged_version = w0._version
        changed.append(path or layer.layer_name)
    return changed


def unmerge(module: nn.Module) -> list[str]:
    """Undo :func:`merge` on ``module`` (an expert layer or a model). Restores ``W0`` bit-exactly unless the
    merged weight was changed since (then the delta is subtracted). Returns the names of the layers changed."""
    changed = []
    layers = [("", module)] if isinstance(module, ExpertLayer) else expert_layers(module)
    for path, layer in layers:
        if layer.merged_region is None:
            continue
        w = layer.base_layer.weight
        with torch.no_grad():
            if w._version == layer._merged_version:
                w.copy_(layer._unmerged_weight)
            else:
                w.sub_(layer.delta_weight(layer.merged_region).to(w.dtype))
        layer._unmerged_weight = None
        layer.merged_region = None
        layer._merged_version = None
        changed.append(path or layer.layer_name)
    return changed
