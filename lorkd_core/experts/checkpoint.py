"""Save and load an expert set: safetensors for the factors, a JSON card that describes them.

Key format (fixed, see docs/contracts.md): ``<layer path>.experts.<region>.A`` and ``... .B``.
Loading checks the card against the model (format, region order, layers, ranks, scales) and every tensor
against both, and raises :class:`~lorkd_core.errors.ModelError` naming the layer; nothing is dropped.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from lorkd_core.atomic import atomic_path, write_json_atomic
from lorkd_core.errors import ModelError
from lorkd_core.experts.routing import expert_layers, region_order

FORMAT = "lorkd-experts/1"
TENSOR_FILE = "experts.safetensors"
CARD_FILE = "experts.json"
_RESERVED = {"format", "region_order", "alpha", "layers", "tensors", "tensor_file"}


def expert_state_dict(model: nn.Module) -> OrderedDict[str, torch.Tensor]:
    """Only the expert factors, keyed ``<layer path>.experts.<region>.A|B`` (detached, not copied)."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for path, layer in expert_layers(model):
        for region, factors in layer.experts.items():
            out[f"{path}.experts.{region}.A"] = factors.A.detach()
            out[f"{path}.experts.{region}.B"] = factors.B.detach()
    return out


def expert_card(model: nn.Module) -> dict[str, Any]:
    """The card describing ``model``'s expert set (without the tensor list)."""
    order = region_order(model)
    layers = expert_layers(model)
    alphas = {layer.alpha for _, layer in layers}
    return {
        "format": FORMAT,
        "region_order": list(order),
        "alpha": alphas.pop() if len(alphas) == 1 else None,
        "layers": {
            path: {
                "type": type(layer.base_layer).__name__,
                "weight_shape": list(layer.backbone_weight.shape),
                "ranks": dict(layer.ranks),
                "scales": dict(layer.scales),
                "alpha": layer.alpha,
            }
            for path, layer in layers
        },
    }


def _paths(path: str | Path) -> tuple[Path, Path]:
    """A folder holds experts.safetensors + experts.json; ``X.safetensors`` pairs with ``X.json``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return path, path.with_suffix(".json")
    return path / TENSOR_FILE, path / CARD_FILE


def save_expert_set(model: nn.Module, path: str | Path, card_extra: dict[str, Any] | None = None) -> Path:
    """Write the expert factors (safetensors) and their card (JSON), each atomically; returns the card path.

    ``path``: a folder (``experts.safetensors`` + ``experts.json`` inside) or ``X.safetensors``
    (card ``X.json``). ``card_extra`` adds keys such as ``architecture`` (the base network's spec).
    """
    tensor_path, card_path = _paths(path)
    card = expert_card(model)
    extra = dict(card_extra or {})
    clash = _RESERVED & set(extra)
    if clash:
        raise ModelError(f"card_extra may not set {sorted(clash)}", card_path)
    state = {k: v.contiguous() for k, v in expert_state_dict(model).items()}
    card["tensor_file"] = tensor_path.name
    card["tensors"] = {
        k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")} for k, v in state.items()
    }
    card.update(extra)
    json.dumps(card)  # fail before writing anything if card_extra is not JSON-serialisable
    with atomic_path(tensor_path, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT})
    write_json_atomic(card_path, card)
    return card_path


def read_expert_card(path: str | Path) -> dict[str, Any]:
    """Read and sanity-check a card (folder, ``X.safetensors`` or the ``.json`` itself)."""
    path = Path(path)
    card_path = path if path.suffix == ".json" else _paths(path)[1]
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError("expert card not found", card_path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"expert card is not readable JSON ({exc})", card_path) from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        found = card.get("format") if isinstance(card, dict) else type(card).__name__
        raise ModelError(f"unsupported expert card format {found!r} (expected {FORMAT!r})", card_path)
    for key, kind in (("region_order", list), ("layers", dict), ("tensors", dict)):
        if not isinstance(card.get(key), kind):
            raise ModelError(f"expert card has no valid {key!r}", card_path)
    return card


def load_expert_set(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load factors saved by :func:`save_expert_set` into ``model``'s expert layers; returns the card.

    Raises ModelError naming the layer for a different region order, a missing or extra layer, different
    ranks, scales or shapes, and a tensor file that disagrees with its card. The model is only changed
    once everything has been checked.
    """
    path = Path(path)
    card_path = path if path.suffix == ".json" else _paths(path)[1]
    card = read_expert_card(card_path)
    tensor_path = card_path.parent / str(card.get("tensor_file", TENSOR_FILE))

    order = list(region_order(model))
    if list(card["region_order"]) != order:
        raise ModelError(
            f"expert set has region order {card['region_order']}, the model has {order}", card_path
        )

    layers = dict(expert_layers(model))
    merged = [n for n, layer in layers.items() if layer.merged_region is not None]
    if merged:
        raise ModelError(
            f"layer {merged[0]!r} has a region merged into its weight; unmerge before loading", card_path
        )
    card_layers = card["layers"]
    missing = [n for n in layers if n not in card_layers]
    extra = [n for n in card_layers if n not in layers]
    if missing:
        raise ModelError(
            f"layer {missing[0]!r} has experts in the model but not in the expert set", card_path
        )
    if extra:
        raise ModelError(
            f"layer {extra[0]!r} is in the expert set but has no experts in the model", card_path
        )
    for name, layer in layers.items():
        spec = card_layers[name]
        if not isinstance(spec, dict):
            raise ModelError(f"layer {name!r}: expert card entry is not an object", card_path)
        shape = list(layer.backbone_weight.shape)
        if list(spec.get("weight_shape", [])) != shape:
            raise ModelError(
                f"layer {name!r}: expert set is for weight shape {spec.get('weight_shape')}, the model has {shape}",
                card_path,
            )
        if dict(spec.get("ranks", {})) != layer.ranks:
            raise ModelError(
                f"layer {name!r}: expert set ranks {spec.get('ranks')} != model ranks {layer.ranks}",
                card_path,
            )
        scales = {t: float(s) for t, s in dict(spec.get("scales", {})).items()}
        if scales != layer.scales:
            raise ModelError(
                f"layer {name!r}: expert set scales {scales} != model scales {layer.scales}", card_path
            )

    try:
        tensors = load_file(str(tensor_path))
    except FileNotFoundError:
        raise ModelError("expert tensor file not found", tensor_path) from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"expert tensor file is not valid safetensors ({exc})", tensor_path) from None

    expected = expert_state_dict(model)
    listed = set(card["tensors"])
    for key in sorted(set(expected) | set(tensors) | listed):
        layer_name = key.split(".experts.")[0]
        if key not in expected:
            raise ModelError(f"layer {layer_name!r}: tensor {key!r} has no place in the model", tensor_path)
        if key not in tensors:
            raise ModelError(
                f"layer {layer_name!r}: tensor {key!r} is missing from the expert set", tensor_path
            )
        if key not in listed:
            raise ModelError(f"layer {layer_name!r}: tensor {key!r} is not listed in the card", card_path)
        got, want = tuple(tensors[key].shape), tuple(expected[key].shape)
        listed_spec = card["tensors"][key]
        listed_shape = listed_spec.get("shape") if isinstance(listed_spec, dict) else None
        if got != want or list(listed_shape or []) != list(want):
            raise ModelError(
                f"layer {layer_name!r}: tensor {key!r} has shape {got}, the model needs {want}", tensor_path
            )
        if not tensors[key].dtype.is_floating_point:
            raise ModelError(
                f"layer {layer_name!r}: tensor {key!r} has dtype {tensors[key].dtype}", tensor_path
            )

    with torch.no_grad():
        for key, value in tensors.items():
            expected[key].copy_(value)
    return card
