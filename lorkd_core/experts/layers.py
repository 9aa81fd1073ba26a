"""Expert layers: a base conv/linear layer plus one low-rank factor pair per region.

For region ``t`` with rank ``r_t``: ``A_t`` is ``(r_t, fan_in)`` (Kaiming-uniform), ``B_t`` is ``(out, r_t)``
(zeros) and ``dW_t = scale_t * B_t @ A_t`` reshaped to the base weight's shape. ``fan_in`` is
``in * prod(kernel)`` for convolutions and transposed convolutions alike, so for a transposed conv
(weight ``(in, out, *k)``) the ``(out, in, *k)`` delta is transposed back. A rank of 0 means "no expert
for this region here": no parameters and a zero delta.

Three ways to run, chosen by the routing set with :func:`lorkd_core.experts.routing.set_active_regions`:
``None`` (backbone only), one region for the whole batch (``W0 + dW_t`` built once, an ordinary call) or a
per-sample region index (EKS, a mixed batch). Every EKS implementation touches only the regions present in
the batch (``eks_impl``, per layer, else the process default):

- ``gather``: per-sample weights ``W0 + B_t A_t`` (the factors gathered per sample, one batched matmul),
  then one grouped conv (``groups = batch``) or a batched matmul.
- ``lowrank``: ``base(x)`` over the whole batch plus, per present region, ``B_t (A_t x_t)`` on that
  region's samples only, added back with ``index_add``. No full-size delta at all.
- ``lowrank_grouped``: ``base(x)`` plus ``B_b (A_b x_b)`` for every sample in one grouped conv (r outputs
  per sample) and one batched matmul.
- ``paper``: the paper's formulation, kept as a reference for tests and benchmarks: all ``T`` full-size
  deltas, a ``(B, T, |W|)`` one-hot product summed over ``T``, then the grouped conv.
- ``auto`` (default): convolutions use ``gather`` where activations dominate (high resolution) and
  ``lowrank_grouped`` where the weight dominates (deep, low resolution); linear layers use ``lowrank``.
  Measured on CPU (benchmarks/eks.py): PyTorch runs batch-1 or few-channel 3D convs (the ``A_t`` conv of
  ``lowrank``) on a slow native kernel instead of oneDNN, which makes ``lowrank`` 2-6x slower than
  ``gather`` per layer; per-sample weights cost O(batch x |W|) extra, which only matters in deep layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from lorkd_core.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from lorkd_core.experts.routing import Routing

EKS_IMPLS = ("auto", "gather", "lowrank", "lowrank_grouped", "paper")
_default_eks_impl = "auto"


class UnsupportedLayerError(ConfigError, TypeError):
    """A layer cannot carry region experts (grouped/depthwise conv, non-zero padding mode, other type)."""


def set_default_eks_impl(impl: str) -> str:
    """Set the process-wide EKS implementation; returns the previous one. Per-layer ``eks_impl`` wins."""
    global _default_eks_impl
    if impl not in EKS_IMPLS:
        raise ConfigError(f"unknown EKS implementation {impl!r}; choose one of {', '.join(EKS_IMPLS)}")
    previous, _default_eks_impl = _default_eks_impl, impl
    return previous


def get_default_eks_impl() -> str:
    return _default_eks_impl


class RegionFactors(nn.Module):
    """``A`` (r, fan_in) and ``B`` (out, r) for one region in one layer."""

    def __init__(self, rank: int, fan_in: int, out: int, *, device=None, dtype=None) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.empty(rank, fan_in, device=device, dtype=dtype))
        self.B = nn.Parameter(torch.zeros(out, rank, device=device, dtype=dtype))
        # Same init as LoRA: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) for A, zero B so dW starts at 0.
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    @property
    def rank(self) -> int:
        return self.A.shape[0]


class ExpertLayer(nn.Module):
    """Common part of the expert layers; subclasses only say how to apply a weight."""

    base_types: tuple[type[nn.Module], ...] = ()
    auto_impl = "gather"  # what eks_impl "auto" means for this layer type

    def __init__(
        self,
        base_layer: nn.Module,
        regions: Sequence[str],
        ranks: dict[str, int],
        alpha: float | None = None,
        *,
        name: str = "",
    ) -> None:
        super().__init__()
        self.check_supported(base_layer, name)
        self.base_layer = base_layer
        self.layer_name = name
        self.regions: tuple[str, ...] = tuple(regions)
        unknown = set(ranks) - set(self.regions)
        if unknown:
            raise ConfigError(f"layer {name!r}: ranks given for unknown regions {sorted(unknown)}")
        self.ranks: dict[str, int] = {t: int(ranks.get(t, 0)) for t in self.regions}
        self.alpha = None if alpha is None else float(alpha)
        self.scales: dict[str, float] = {
            t: (1.0 if self.alpha is None or r == 0 else self.alpha / r) for t, r in self.ranks.items()
        }
        weight = base_layer.weight
        self.experts = nn.ModuleDict()
        for t in self.regions:
            r = self.ranks[t]
            if r < 0:
                raise ConfigError(f"layer {name!r}: rank for region {t!r} must be >= 0, got {r}")
            if r:
                self.experts[t] = RegionFactors(
                    r, self.fan_in, self.out_features, device=weight.device, dtype=weight.dtype
                )
        self.eks_impl: str | None = None
        self._routing: Routing | None = None
        self.merged_region: str | None = None
        # W0 saved while a region is merged in place, so unmerge restores it bit-exactly; a buffer so
        # .to(device) moves it, not persistent so it never reaches a state dict.
        self.register_buffer("_unmerged_weight", None, persistent=False)
        self._merged_version: int | None = None

    # -- shape helpers -------------------------------------------------------------------------------
    @classmethod
    def check_supported(cls, layer: nn.Module, name: str = "") -> None:
        """Raise :class:`UnsupportedLayerError` naming the layer when it cannot carry experts."""
        label = f"layer {name!r} ({type(layer).__name__})" if name else type(layer).__name__
        if not isinstance(layer, cls.base_types) or type(layer) not in cls.base_types:
            raise UnsupportedLayerError(f"{label} is not supported by {cls.__name__}")
        if getattr(layer, "weight", None) is None or isinstance(
            layer.weight, nn.parameter.UninitializedParameter
        ):
            raise UnsupportedLayerError(
                f"{label} has no initialised weight (lazy layers must run once first)"
            )
        if getattr(layer, "groups", 1) != 1:
            raise UnsupportedLayerError(
                f"{label} has groups={layer.groups}: grouped/depthwise convolutions cannot carry region "
                "experts; leave it out with exclude=[...]"
            )
        if getattr(layer, "padding_mode", "zeros") != "zeros":
            raise UnsupportedLayerError(
                f"{label} has padding_mode={layer.padding_mode!r}: only 'zeros' is supported; leave it out "
                "with exclude=[...]"
            )

    @property
    def fan_in(self) -> int:
        raise NotImplementedError

    @property
    def out_features(self) -> int:
        raise NotImplementedError

    def __getattr__(self, name: str):
        # Code that reads conv.in_channels / conv.weight keeps working after wrapping.
        try:
            return super().__getattr__(name)
        except AttributeError:
            base = self.__dict__.get("_modules", {}).get("base_layer")
            if base is None or name.startswith("_"):
                raise
            return getattr(base, name)

    # -- weights -------------------------------------------------------------------------------------
    @property
    def backbone_weight(self) -> torch.Tensor:
        """``W0``: the base weight without any merged delta."""
        if self._unmerged_weight is not None:
            return self._unmerged_weight
        return self.base_layer.weight

    def _delta_matrix(self, region: str) -> torch.Tensor | None:
        factors = self.experts[region] if region in self.experts else None
        if factors is None:
            return None
        return (factors.B * self.scales[region]) @ factors.A

    def _matrix_to_weight(self, m: torch.Tensor) -> torch.Tensor:
        """(out, fan_in) or (n, out, fan_in) -> the base weight's layout (with a leading n if given)."""
        raise NotImplementedError

    def delta_weight(self, region: str | int) -> torch.Tensor:
        """``dW_t`` in the base weight's shape (zeros for rank 0); differentiable."""
        name = self.region_name(region)
        m = self._delta_matrix(name)
        if m is None:
            return torch.zeros_like(self.backbone_weight)
        return self._matrix_to_weight(m)

    def region_name(self, region: str | int) -> str:
        if isinstance(region, str):
            if region not in self.regions:
                raise ConfigError(f"unknown region {region!r}; this model has {list(self.regions)}")
            return region
        if not 0 <= int(region) < len(self.regions):
            raise ConfigError(f"region index {region} out of range 0..{len(self.regions) - 1}")
        return self.regions[int(region)]

    # -- forward -------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        routing = self._routing
        if self.merged_region is not None:
            active = None if routing is None else routing.single_region
            if active is None or self.regions[active] != self.merged_region:
                raise ModelError(
                    f"layer {self.layer_name!r} has region {self.merged_region!r} merged into its weight; "
                    f"route to that region or unmerge it first"
                )
            return self.base_layer(x)
        if routing is None or routing.kind == "none":
            return self.base_layer(x)
        if routing.kind == "single":
            return self._forward_single(x, self.regions[routing.region])
        if x.shape[0] != routing.batch:
            raise ModelError(
                f"layer {self.layer_name!r}: the region index has {routing.batch} entries but the batch "
                f"has {x.shape[0]} samples"
            )
        impl = self.eks_impl or _default_eks_impl
        if impl == "paper":
            return self._forward_paper(x, routing)
        present = [t for t in routing.present if self.regions[t] in self.experts]
        if not present:
            return self.base_layer(x)
        if len(routing.present) == 1:
            return self._forward_single(x, self.regions[routing.present[0]])
        if impl == "auto":
            impl = self._auto_impl(x, routing)
        if impl == "lowrank":
            return self._forward_lowrank(x, routing, present)
        if impl == "lowrank_grouped":
            return self._forward_lowrank_grouped(x, routing)
        return self._forward_gather(x, routing)

    def _auto_impl(self, x: torch.Tensor, routing: Routing) -> str:
        if self.auto_impl != "gather":
            return self.auto_impl
        # Per-sample weights cost O(batch x |W|) on top of the conv, the grouped low-rank path
        # O(batch x S_out x r x (fan_in + out)) at a poor efficiency (r output channels). Measured on CPU
        # (benchmarks/eks.py): the low-rank path wins once |W| > 0.15 x S_out x r x (fan_in + out), i.e. in
        # the deep, small-resolution layers of a UNet; the full-resolution layers prefer per-sample weights.
        r = max(self.ranks[self.regions[t]] for t in routing.present)
        size = self.out_features * self.fan_in
        return (
            "lowrank_grouped"
            if 20 * size > 3 * self._spatial_out(x) * r * (self.fan_in + self.out_features)
            else "gather"
        )

    def _spatial_out(self, x: torch.Tensor) -> int:
        return 1

    def _forward_single(self, x: torch.Tensor, region: str) -> torch.Tensor:
        m = self._delta_matrix(region)
        if m is None:
            return self.base_layer(x)
        return self._call(x, self.base_layer.weight + self._matrix_to_weight(m), self.base_layer.bias)

    def _per_sample_factors(self, routing: Routing) -> tuple[torch.Tensor, torch.Tensor]:
        """``A`` (batch, r, fan_in) and ``scale * B`` (batch, out, r) of each sample's region, padded to the
        largest rank present (zero rows/columns add nothing). Only present regions are touched, so absent
        ones get no gradient; the gather works on factors, never on full-size weights, and takes a
        handful of ops whatever the number of regions (small layers are dominated by per-op cost)."""
        w0 = self.base_layer.weight
        rmax = max(self.ranks[self.regions[t]] for t in routing.present)
        a_of: dict[int, torch.Tensor] = {}
        b_of: dict[int, torch.Tensor] = {}
        scale_of: dict[int, float] = {}
        for t in routing.present:
            name = self.regions[t]
            factors = self.experts[name] if name in self.experts else None
            if factors is None:
                a_of[t] = w0.new_zeros(rmax, self.fan_in)
                b_of[t] = w0.new_zeros(self.out_features, rmax)
                scale_of[t] = 1.0
                continue
            pad = rmax - factors.rank
            a_of[t] = F.pad(factors.A, (0, 0, 0, pad)) if pad else factors.A
            b_of[t] = F.pad(factors.B, (0, pad)) if pad else factors.B
            scale_of[t] = self.scales[name]
        a_all = torch.stack([a_of[t] for t in routing.index_list])
        b_all = torch.stack([b_of[t] for t in routing.index_list])
        scales = {scale_of[t] for t in routing.present}
        if len(scales) == 1:
            scale = scales.pop()
            return a_all, (b_all if scale == 1.0 else b_all * scale)
        per_sample = torch.tensor([scale_of[t] for t in routing.index_list], dtype=w0.dtype, device=w0.device)
        return a_all, b_all * per_sample.view(-1, 1, 1)

    def _forward_gather(self, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        a_all, b_all = self._per_sample_factors(routing)
        w0 = self.base_layer.weight
        n = a_all.shape[0]
        if isinstance(self, ExpertConvTranspose):
            weights = w0.unsqueeze(0) + self._matrix_to_weight(torch.bmm(b_all, a_all))
        else:  # W0 + B A for every sample in one op: the weight layout is (out, fan_in) already
            w0_rows = w0.reshape(1, self.out_features, self.fan_in).expand(n, -1, -1)
            weights = torch.baddbmm(w0_rows, b_all, a_all).view(n, *w0.shape)
        return self._call_per_sample(x, weights, self.base_layer.bias)

    def _forward_lowrank_grouped(self, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        a_all, b_all = self._per_sample_factors(routing)
        y = self.base_layer(x)
        h = self._call_per_sample(x, self._factor_to_weight(a_all), None)  # (batch, r, ...) per-sample A
        # y is a fresh non-leaf output whose backward does not need its value: in-place add is safe.
        return y.add_(self._apply_b_per_sample(h, b_all))

    def _forward_paper(self, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        w0 = self.base_layer.weight
        mats = []
        for t in self.regions:
            m = self._delta_matrix(t)
            mats.append(m if m is not None else w0.new_zeros(self.out_features, self.fan_in))
        deltas = self._matrix_to_weight(torch.stack(mats))  # (T, *weight)
        onehot = F.one_hot(routing.on(x.device).index, len(self.regions)).to(w0.dtype)  # (B, T)
        onehot = onehot.view(*onehot.shape, *([1] * w0.dim()))
        weights = w0.unsqueeze(0) + (onehot * deltas.unsqueeze(0)).sum(1)  # (B, T, |W|) summed over T
        return self._call_per_sample(x, weights, self.base_layer.bias)

    def _forward_lowrank(self, x: torch.Tensor, routing: Routing, present: list[int]) -> torch.Tensor:
        y = self.base_layer(x)
        dev = routing.on(x.device)
        for t in present:
            factors = self.experts[self.regions[t]]
            sel = dev.selection[t]
            xs = x[sel] if isinstance(sel, slice) else x.index_select(0, sel)
            u = self._lowrank(xs, factors.A, factors.B * self.scales[self.regions[t]])
            if isinstance(sel, slice):
                sel = dev.indices[t]
            # y is a fresh non-leaf output whose backward does not need its value, so in-place is safe
            # (autograd's version counter would flag it otherwise) and avoids one full copy per region.
            y = y.index_add_(0, sel, u)
        return y

    # -- per-type hooks ------------------------------------------------------------------------------
    def _call(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def _call_per_sample(
        self, x: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        raise NotImplementedError

    def _lowrank(self, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``b @ (a x)`` for one region: ``a`` applied as a layer with r outputs, then ``b`` per position."""
        h = self._call(x, self._factor_to_weight(a), None)
        return self._apply_b_per_sample(h, b.expand(h.shape[0], *b.shape))

    def _factor_to_weight(self, a: torch.Tensor) -> torch.Tensor:
        """(.., r, fan_in) -> the base weight's layout with ``out`` replaced by r."""
        raise NotImplementedError

    def _apply_b_per_sample(self, h: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """h (batch, r, *spatial) channel-first, b (batch, out, r) -> (batch, out, *spatial)."""
        return torch.bmm(b, h.flatten(2)).view(h.shape[0], b.shape[1], *h.shape[2:])

    def extra_repr(self) -> str:
        ranks = ", ".join(f"{t}={r}" for t, r in self.ranks.items())
        merged = f", merged={self.merged_region!r}" if self.merged_region else ""
        return f"ranks=({ranks}), alpha={self.alpha}{merged}"


class ExpertConv(ExpertLayer):
    """Region experts around ``nn.Conv2d`` / ``nn.Conv3d``."""

    base_types = (nn.Conv2d, nn.Conv3d)

    @property
    def fan_in(self) -> int:
        w = self.base_layer.weight
        return w.shape[1] * math.prod(w.shape[2:])

    @property
    def out_features(self) -> int:
        return self.base_layer.weight.shape[0]

    @property
    def _conv(self):
        return F.conv2d if isinstance(self.base_layer, nn.Conv2d) else F.conv3d

    def _matrix_to_weight(self, m: torch.Tensor) -> torch.Tensor:
        return m.reshape(*m.shape[:-2], *self.base_layer.weight.shape)

    def _call(self, x, weight, bias):
        c = self.base_layer
        return self._conv(x, weight, bias, c.stride, c.padding, c.dilation, 1)

    def _call_per_sample(self, x, weights, bias):
        c = self.base_layer
        n = x.shape[0]
        w = weights.reshape(n * weights.shape[1], *weights.shape[2:])
        b = None if bias is None else bias.repeat(n)
        y = self._conv(x.reshape(1, n * x.shape[1], *x.shape[2:]), w, b, c.stride, c.padding, c.dilation, n)
        return y.view(n, -1, *y.shape[2:])

    def _factor_to_weight(self, a):
        return a.reshape(*a.shape[:-1], *self.base_layer.weight.shape[1:])

    def _spatial_out(self, x):
        return max(1, math.prod(x.shape[2:]) // math.prod(self.base_layer.stride))


class ExpertConvTranspose(ExpertLayer):
    """Region experts around ``nn.ConvTranspose2d`` / ``nn.ConvTranspose3d`` (weight ``(in, out, *k)``)."""

    base_types = (nn.ConvTranspose2d, nn.ConvTranspose3d)

    @property
    def fan_in(self) -> int:
        w = self.base_layer.weight
        return w.shape[0] * math.prod(w.shape[2:])

    @property
    def out_features(self) -> int:
        return self.base_layer.weight.shape[1]

    @property
    def _conv(self):
        return F.conv_transpose2d if isinstance(self.base_layer, nn.ConvTranspose2d) else F.conv_transpose3d

    def _matrix_to_weight(self, m: torch.Tensor) -> torch.Tensor:
        w = self.base_layer.weight
        lead = m.shape[:-2]
        # (.., out, in*k) -> (.., out, in, *k) -> (.., in, out, *k)
        return m.reshape(*lead, w.shape[1], w.shape[0], *w.shape[2:]).transpose(len(lead), len(lead) + 1)

    def _call(self, x, weight, bias):
        c = self.base_layer
        return self._conv(x, weight, bias, c.stride, c.padding, c.output_padding, 1, c.dilation)

    def _call_per_sample(self, x, weights, bias):
        c = self.base_layer
        n = x.shape[0]
        w = weights.reshape(n * weights.shape[1], *weights.shape[2:])
        b = None if bias is None else bias.repeat(n)
        y = self._conv(
            x.reshape(1, n * x.shape[1], *x.shape[2:]),
            w,
            b,
            c.stride,
            c.padding,
            c.output_padding,
            n,
            c.dilation,
        )
        return y.view(n, -1, *y.shape[2:])

    def _factor_to_weight(self, a):
        w = self.base_layer.weight
        lead = a.shape[:-2]
        # (.., r, in*k) -> (.., r, in, *k) -> (.., in, r, *k)
        return a.reshape(*lead, a.shape[-2], w.shape[0], *w.shape[2:]).transpose(len(lead), len(lead) + 1)

    def _spatial_out(self, x):
        return math.prod(x.shape[2:]) * math.prod(self.base_layer.stride)


class ExpertLinear(ExpertLayer):
    """Region experts around ``nn.Linear`` (any number of middle dimensions; the batch is dim 0)."""

    base_types = (nn.Linear,)
    auto_impl = "lowrank"

    @property
    def fan_in(self) -> int:
        return self.base_layer.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.base_layer.weight.shape[0]

    def _matrix_to_weight(self, m: torch.Tensor) -> torch.Tensor:
        return m

    def _call(self, x, weight, bias):
        return F.linear(x, weight, bias)

    def _call_per_sample(self, x, weights, bias):
        n = x.shape[0]
        y = torch.bmm(x.reshape(n, -1, x.shape[-1]), weights.transpose(1, 2))
        if bias is not None:
            y = y + bias
        return y.view(*x.shape[:-1], weights.shape[1])

    def _lowrank(self, x, a, b):
        return F.linear(F.linear(x, a), b)

    def _factor_to_weight(self, a):
        return a

    def _apply_b_per_sample(self, h, b):
        n, r = h.shape[0], h.shape[-1]
        return torch.bmm(h.reshape(n, -1, r), b.transpose(1, 2)).view(*h.shape[:-1], b.shape[1])

    def _spatial_out(self, x):
        return max(1, math.prod(x.shape[1:-1]))


EXPERT_LAYER_TYPES: tuple[type[ExpertLayer], ...] = (ExpertConv, ExpertConvTranspose, ExpertLinear)


def expert_class_for(layer: nn.Module) -> type[ExpertLayer] | None:
    """The expert class for an exact supported base type, else None."""
    for cls in EXPERT_LAYER_TYPES:
        if type(layer) in cls.base_types:
            return cls
    return None


def wrap_layer(
    layer: nn.Module,
    regions: Sequence[str],
    ranks: dict[str, int],
    alpha: float | None = None,
    *,
    name: str = "",
) -> ExpertLayer:
    """Wrap one base layer; raises :class:`UnsupportedLayerError` naming it when it is not supported."""
    cls = expert_class_for(layer)
    if cls is None:
        label = f"layer {name!r} ({type(layer).__name__})" if name else type(layer).__name__
        supported = ", ".join(t.__name__ for c in EXPERT_LAYER_TYPES for t in c.base_types)
        raise UnsupportedLayerError(f"{label} cannot carry region experts; supported: {supported}")
    return cls(layer, regions, ranks, alpha, name=name)
