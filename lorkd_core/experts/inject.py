"""Put region experts into any network: match target layers, wrap them in place, freeze what is asked.

Kept apart from the layer classes (peft's tuners_utils idea): the layers know how to compute, this module
knows which layers of a model get experts and with which ranks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Union, runtime_checkable

from torch import nn

from lorkd_core.errors import ConfigError
from lorkd_core.experts.layers import ExpertLayer, UnsupportedLayerError, expert_class_for, wrap_layer

Part = Literal["encoder", "decoder"]


@runtime_checkable
class RankSpec(Protocol):
    """Any callable ``(layer_name, region) -> rank``; an optional ``bind(model)`` is called first."""

    def __call__(self, layer_name: str, region: str) -> int: ...


Ranks = Union[int, Mapping[str, int], RankSpec, Callable[[str, str], int]]
LayerSelector = Union[None, str, re.Pattern, Sequence[str], Callable[[str, nn.Module], bool]]

# Leaf layer families we recognise; only the exact types in EXPERT_LAYER_TYPES are supported, the rest
# raise rather than being skipped, so nothing silently lacks an expert.
_CANDIDATE_TYPES = (nn.modules.conv._ConvNd, nn.Linear, nn.Bilinear)


# -- encoder / decoder ---------------------------------------------------------------------------------
_DECODER_TOKENS = {
    "upsamples",
    "output_block",
    "deep_supervision_heads",
    "heads",  # DynUNet
    "up_layers",
    "up_samples",
    "conv_final",  # SegResNet
    "final_conv",
    "final",
    "out",
    "output",
    "head",
    "seg_head",
    "decoder",  # BasicUNet / generic
}


def _unet_part(tokens: list[str]) -> Part:
    # monai UNet nests Sequential(down, SkipConnection(submodule=...), up): in each level, child 0 is the
    # encoder block, 1 the deeper levels (or the bottom block), 2 the decoder block. The last
    # "model.<i>" / "submodule.<i>" pair in the path decides.
    last = None
    for a, b in zip(tokens, tokens[1:]):
        if a in ("model", "submodule") and b.isdigit():
            last = b
    return "decoder" if last == "2" else "encoder"


def _generic_part(tokens: list[str], module: nn.Module | None) -> Part:
    if isinstance(module, (nn.ConvTranspose2d, nn.ConvTranspose3d, nn.ConvTranspose1d)):
        return "decoder"
    for tok in tokens:
        low = tok.lower()
        if low in _DECODER_TOKENS or low.startswith(("up", "decod")) or "supervision" in low:
            return "decoder"
    return "encoder"


def _known_net_rule(net: nn.Module) -> Callable[[list[str], nn.Module | None], Part] | None:
    try:
        from monai.networks import nets
    except ImportError:  # pragma: no cover - monai is a runtime dependency
        return None
    if isinstance(net, nets.UNet) and not isinstance(net, getattr(nets, "AttentionUnet", ())):
        return lambda tokens, module: _unet_part(tokens)
    if isinstance(net, (nets.DynUNet, nets.SegResNet, nets.BasicUNet)):
        return _generic_part
    return None


def layer_part(model: nn.Module | None, name: str) -> Part:
    """Classify a layer path as ``encoder`` or ``decoder``.

    Rule: inside a MONAI ``UNet``, the last ``model.<i>``/``submodule.<i>`` pair of the path decides
    (``2`` = up block = decoder; ``0`` down block and the bottom block = encoder). Elsewhere (``DynUNet``,
    ``SegResNet``, ``BasicUNet``, any other network) a transposed conv is decoder, and so is a layer whose
    path has a token starting with ``up``/``decod``, containing ``supervision``, or one of ``output_block``,
    ``conv_final``, ``final_conv``, ``final``, ``out``, ``output``, ``head``, ``heads``, ``seg_head``; the
    rest (``input_block``, ``downsamples``, ``bottleneck``, ``convInit``, ``down_layers``, a classifier's
    trunk) is encoder. Without a model, a path starting ``model.<digit>`` or containing ``submodule`` uses the
    UNet rule.
    """
    tokens = name.split(".")
    if model is None:
        if "submodule" in tokens or (len(tokens) > 1 and tokens[0] == "model" and tokens[1].isdigit()):
            return _unet_part(tokens)
        return _generic_part(tokens, None)
    module: nn.Module | None = model
    rule, rel = _known_net_rule(model), tokens
    for i, tok in enumerate(tokens):
        module = getattr(module, tok, None) if module is not None else None
        if module is None:
            break
        inner = _known_net_rule(module)
        if inner is not None and i + 1 < len(tokens):
            rule, rel = inner, tokens[i + 1 :]
    if isinstance(module, ExpertLayer):
        module = module.base_layer
    return (rule or _generic_part)(rel, module)


class EncoderDecoderRanks:
    """Rank spec: ``encoder`` rank per region in the encoder, ``decoder`` (default ``factor x encoder``)
    in the decoder, classified by :func:`layer_part`."""

    def __init__(
        self,
        encoder: int | Mapping[str, int],
        decoder: int | Mapping[str, int] | None = None,
        *,
        factor: int = 2,
    ) -> None:
        self.encoder = encoder
        self.decoder = decoder
        self.factor = factor
        self._parts: dict[str, Part] = {}
        self._model: nn.Module | None = None

    def bind(self, model: nn.Module) -> None:
        self._model = model
        self._parts = {}

    def part(self, layer_name: str) -> Part:
        if layer_name not in self._parts:
            self._parts[layer_name] = layer_part(self._model, layer_name)
        return self._parts[layer_name]

    @staticmethod
    def _lookup(spec: int | Mapping[str, int], region: str) -> int:
        if isinstance(spec, Mapping):
            if region not in spec:
                raise ConfigError(f"rank spec has no entry for region {region!r}")
            return int(spec[region])
        return int(spec)

    def __call__(self, layer_name: str, region: str) -> int:
        enc = self._lookup(self.encoder, region)
        if self.part(layer_name) == "encoder":
            return enc
        return enc * self.factor if self.decoder is None else self._lookup(self.decoder, region)

    def __repr__(self) -> str:
        return (
            f"EncoderDecoderRanks(encoder={self.encoder!r}, decoder={self.decoder!r}, factor={self.factor})"
        )


def encoder_decoder_ranks(
    encoder: int | Mapping[str, int], decoder: int | Mapping[str, int] | None = None, *, factor: int = 2
) -> EncoderDecoderRanks:
    """Encoder rank per region, decoder rank ``factor x`` that (2 by default) unless given."""
    return EncoderDecoderRanks(encoder, decoder, factor=factor)


# -- report ------------------------------------------------------------------------------------------
@dataclass
class ExpertLayerInfo:
    name: str
    kind: str
    weight_shape: tuple[int, ...]
    ranks: dict[str, int]
    params: int


@dataclass
class ExpertReport:
    """What :func:`add_region_experts` did."""

    regions: tuple[str, ...]
    alpha: float | None
    layers: list[ExpertLayerInfo] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (layer, why)
    backbone_params: int = 0
    expert_params: dict[str, int] = field(default_factory=dict)
    trainable_params: int = 0

    @property
    def wrapped(self) -> list[str]:
        return [info.name for info in self.layers]

    @property
    def total_expert_params(self) -> int:
        return sum(self.expert_params.values())

    def ranks(self) -> dict[str, dict[str, int]]:
        return {info.name: dict(info.ranks) for info in self.layers}

    def to_dict(self) -> dict[str, Any]:
        return {
            "regions": list(self.regions),
            "alpha": self.alpha,
            "layers": [
                {"name": i.name, "kind": i.kind, "weight_shape": list(i.weight_shape), "ranks": i.ranks}
                for i in self.layers
            ],
            "skipped": [list(s) for s in self.skipped],
            "backbone_params": self.backbone_params,
            "expert_params": dict(self.expert_params),
            "trainable_params": self.trainable_params,
        }

    def __str__(self) -> str:
        abbrev = [t[:8] for t in self.regions]
        name_w = max([len("layer")] + [len(i.name) for i in self.layers])
        kind_w = max([len("type")] + [len(i.kind) for i in self.layers])
        head = (
            f"{'layer':<{name_w}}  {'type':<{kind_w}}  " + " ".join(f"{a:>8}" for a in abbrev) + "    params"
        )
        lines = [head, "-" * len(head)]
        for i in self.layers:
            ranks = " ".join(f"{i.ranks[t]:>8}" for t in self.regions)
            lines.append(f"{i.name:<{name_w}}  {i.kind:<{kind_w}}  {ranks}  {i.params:>8}")
        lines.append("-" * len(head))
        per_region = " ".join(f"{self.expert_params.get(t, 0):>8}" for t in self.regions)
        lines.append(f"{'expert params':<{name_w + kind_w + 2}}  {per_region}  {self.total_expert_params:>8}")
        lines.append(
            f"{len(self.layers)} layers with experts, {len(self.skipped)} skipped; backbone "
            f"{self.backbone_params:,} params, experts {self.total_expert_params:,}, trainable "
            f"{self.trainable_params:,}"
        )
        for name, why in self.skipped:
            lines.append(f"skipped {name}: {why}")
        return "\n".join(lines)


# -- injection ---------------------------------------------------------------------------------------
def _selector(spec: LayerSelector, what: str, default: bool) -> Callable[[str, nn.Module], bool]:
    if spec is None:
        return lambda name, module: default
    if callable(spec) and not isinstance(spec, re.Pattern):
        return spec
    if isinstance(spec, re.Pattern):
        return lambda name, module: spec.search(name) is not None
    if isinstance(spec, str):
        pattern = re.compile(spec)
        return lambda name, module: pattern.search(name) is not None
    if isinstance(spec, Sequence):
        subs = [str(s) for s in spec]
        return lambda name, module: any(s in name for s in subs)
    raise ConfigError(f"{what} must be None, a regex, a list of name substrings or a predicate")


def _rank_fn(ranks: Ranks, regions: Sequence[str], model: nn.Module) -> Callable[[str, str], int]:
    if isinstance(ranks, bool):
        raise ConfigError("ranks must be an int, a dict region -> int or a callable (layer, region) -> int")
    if isinstance(ranks, int):
        return lambda name, region: ranks
    if isinstance(ranks, Mapping):
        missing = [t for t in regions if t not in ranks]
        extra = [t for t in ranks if t not in regions]
        if missing or extra:
            raise ConfigError(f"ranks must name every region exactly: missing {missing}, unknown {extra}")
        return lambda name, region: int(ranks[region])
    if callable(ranks):
        bind = getattr(ranks, "bind", None)
        if callable(bind):
            bind(model)
        return ranks
    raise ConfigError("ranks must be an int, a dict region -> int or a callable (layer, region) -> int")


def _check_regions(regions: Sequence[str]) -> tuple[str, ...]:
    if isinstance(regions, str) or not regions:
        raise ConfigError("regions must be a non-empty list of region names")
    out = tuple(regions)
    if len(set(out)) != len(out):
        raise ConfigError(f"regions must be unique, got {list(out)}")
    probe = nn.ModuleDict()
    for t in out:
        if not isinstance(t, str) or not t or "." in t or t in dir(probe):
            raise ConfigError(f"invalid region name {t!r}: use a non-empty name without dots")
    return out


def add_region_experts(
    model: nn.Module,
    regions: Sequence[str],
    ranks: Ranks,
    targets: LayerSelector = None,
    *,
    alpha: float | None = None,
    train_backbone: bool = True,
    exclude: LayerSelector = None,
) -> ExpertReport:
    """Wrap the targeted conv/linear layers of ``model`` in place with one expert per region.

    ``regions`` fixes the region order (region index ``i`` = ``regions[i]``). ``ranks``: an int for every
    layer and region, a dict region -> int, or a callable ``(layer_name, region) -> int`` such as
    :func:`encoder_decoder_ranks`; 0 means no expert there, and a layer whose ranks are all 0 is left
    plain. ``targets``/``exclude``: None (all), a regex, a list of name substrings, or a predicate
    ``(name, module) -> bool``; only conv/linear leaves are considered. ``alpha``: scale = alpha / rank
    (LoRA convention), or 1 when None. ``train_backbone=False`` freezes every non-expert parameter; experts
    are always trainable. Raises :class:`~lorkd_core.errors.ConfigError` (naming the layer) for a targeted
    layer that cannot carry experts, e.g. a grouped conv: exclude it explicitly.
    """
    order = _check_regions(regions)
    already = [name for name, m in model.named_modules() if isinstance(m, ExpertLayer)]
    if already:
        raise ConfigError(
            f"model already has region experts (e.g. layer {already[0]!r}); refusing to wrap twice"
        )
    rank_of = _rank_fn(ranks, order, model)
    want, skip = _selector(targets, "targets", True), _selector(exclude, "exclude", False)
    report = ExpertReport(regions=order, alpha=None if alpha is None else float(alpha))

    chosen: list[tuple[str, nn.Module, dict[str, int]]] = []
    for name, module in model.named_modules():
        if not name or not isinstance(module, _CANDIDATE_TYPES) or not want(name, module):
            continue
        if skip(name, module):
            report.skipped.append((name, "excluded"))
            continue
        cls = expert_class_for(module)
        if cls is None:
            raise UnsupportedLayerError(
                f"layer {name!r} ({type(module).__name__}) cannot carry region experts (supported: Conv2d, "
                "Conv3d, ConvTranspose2d, ConvTranspose3d, Linear); leave it out with exclude=[...]"
            )
        cls.check_supported(module, name)
        layer_ranks = {}
        for t in order:
            r = rank_of(name, t)
            if isinstance(r, bool) or not isinstance(r, int) or r < 0:
                raise ConfigError(f"layer {name!r}: rank for region {t!r} must be an int >= 0, got {r!r}")
            layer_ranks[t] = r
        if not any(layer_ranks.values()):
            report.skipped.append((name, "rank 0 for every region"))
            continue
        chosen.append((name, module, layer_ranks))

    wrappers: dict[int, ExpertLayer] = {}
    for name, module, layer_ranks in chosen:
        wrappers[id(module)] = wrap_layer(module, order, layer_ranks, alpha, name=name)
    # Swap every reference, not only the first path: a module reachable from two parents (DynUNet's
    # skip_layers share blocks with downsamples/upsamples) must see the same wrapper everywhere.
    for parent in list(model.modules()):
        if isinstance(parent, ExpertLayer):
            continue
        for child_name, child in list(parent._modules.items()):
            if child is not None and id(child) in wrappers:
                parent._modules[child_name] = wrappers[id(child)]

    expert_ids = set()
    for name, module, _ in chosen:
        w = wrappers[id(module)]
        params = sum(p.numel() for p in w.experts.parameters())
        expert_ids.update(id(p) for p in w.experts.parameters())
        report.layers.append(
            ExpertLayerInfo(name, type(module).__name__, tuple(module.weight.shape), dict(w.ranks), params)
        )
        for t, f in w.experts.items():
            report.expert_params[t] = report.expert_params.get(t, 0) + sum(p.numel() for p in f.parameters())
    for t in order:
        report.expert_params.setdefault(t, 0)
    for p in model.parameters():
        if id(p) in expert_ids:
            p.requires_grad_(True)
        else:
            report.backbone_params += p.numel()
            if not train_backbone:
                p.requires_grad_(False)
    report.trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return report
