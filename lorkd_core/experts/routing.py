"""Which region's expert each expert layer applies: backbone only, one region, or one region per sample.

The routing is computed once per call of :func:`set_active_regions` and shared by every expert layer, so
the host-side work (which regions are present, where their samples are) happens once per batch rather
than once per layer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from lorkd_core.errors import ConfigError
from lorkd_core.experts.layers import ExpertLayer

RegionIndex = None | str | int | torch.Tensor | Sequence[str] | Sequence[int]


@dataclass
class DeviceRouting:
    """The routing's tensors on one device."""

    index: torch.Tensor  # (B,) region index per sample
    selection: dict[int, slice | torch.Tensor]  # region -> its samples (a slice when contiguous)
    indices: dict[int, torch.Tensor]  # region -> its sample indices


@dataclass
class Routing:
    kind: str  # "none" | "single" | "mixed"
    n_regions: int
    region: int | None = None
    index: torch.Tensor | None = None  # CPU copy, mixed only
    present: tuple[int, ...] = ()
    index_list: tuple[int, ...] = ()  # the region of each sample, host side
    _devices: dict[torch.device, DeviceRouting] = field(default_factory=dict, repr=False)

    @property
    def batch(self) -> int:
        return 0 if self.index is None else int(self.index.shape[0])

    @property
    def single_region(self) -> int | None:
        """The one region every sample uses, or None (backbone only, or several regions)."""
        if self.kind == "single":
            return self.region
        if self.kind == "mixed" and len(self.present) == 1:
            return self.present[0]
        return None

    def on(self, device: torch.device) -> DeviceRouting:
        cached = self._devices.get(device)
        if cached is not None:
            return cached
        assert self.index is not None
        index = self.index
        selection: dict[int, slice | torch.Tensor] = {}
        indices: dict[int, torch.Tensor] = {}
        for t in self.present:
            where = (index == t).nonzero().flatten()
            idx = where.to(device)
            indices[t] = idx
            lo, hi = int(where[0]), int(where[-1]) + 1
            # A contiguous run is a view of the batch, no copy.
            selection[t] = slice(lo, hi) if hi - lo == where.numel() else idx
        routed = DeviceRouting(index.to(device), selection, indices)
        self._devices[device] = routed
        return routed


def expert_layers(model: nn.Module) -> list[tuple[str, ExpertLayer]]:
    """Every expert layer in ``model`` with its path, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, ExpertLayer)]


def region_order(model: nn.Module) -> tuple[str, ...]:
    """The model's region order (index ``i`` in a region index means ``region_order(model)[i]``)."""
    layers = expert_layers(model)
    if not layers:
        raise ConfigError(f"{type(model).__name__} has no region experts (call add_region_experts first)")
    order = layers[0][1].regions
    for name, layer in layers[1:]:
        if layer.regions != order:
            raise ConfigError(
                f"layer {name!r} has region order {list(layer.regions)}, expected {list(order)}"
            )
    return order


def make_routing(regions: Sequence[str], index: RegionIndex) -> Routing:
    """Validate ``index`` against ``regions`` and build the routing."""
    n = len(regions)
    if index is None:
        return Routing("none", n)
    if isinstance(index, str):
        if index not in regions:
            raise ConfigError(f"unknown region {index!r}; this model has {list(regions)}")
        return Routing("single", n, region=list(regions).index(index))
    if isinstance(index, torch.Tensor):
        if index.dtype.is_floating_point or index.dtype.is_complex or index.dtype == torch.bool:
            raise ConfigError(f"a region index tensor must hold integers, got {index.dtype}")
        if index.dim() == 0:
            return make_routing(regions, int(index))
        if index.dim() != 1 or index.numel() == 0:
            raise ConfigError(f"a region index tensor must have shape (batch,), got {tuple(index.shape)}")
        cpu = index.detach().to("cpu", torch.long)
        lo, hi = int(cpu.min()), int(cpu.max())
        if lo < 0 or hi >= n:
            raise ConfigError(f"region index values must be in 0..{n - 1}, got {lo}..{hi}")
        values = tuple(cpu.tolist())
        return Routing("mixed", n, index=cpu, present=tuple(sorted(set(values))), index_list=values)
    if isinstance(index, bool):
        raise ConfigError("a region index cannot be a bool")
    if isinstance(index, int) or hasattr(index, "__index__"):
        i = int(index)
        if not 0 <= i < n:
            raise ConfigError(f"region index {i} out of range 0..{n - 1}")
        return Routing("single", n, region=i)
    if isinstance(index, Sequence):
        items = [list(regions).index(v) if isinstance(v, str) and v in regions else v for v in index]
        bad = [v for v in items if isinstance(v, str)]
        if bad:
            raise ConfigError(f"unknown regions {bad}; this model has {list(regions)}")
        return make_routing(regions, torch.as_tensor(items, dtype=torch.long))
    raise ConfigError(
        f"cannot route by {type(index).__name__}; give None, a region name/index or a LongTensor"
    )


def set_active_regions(model: nn.Module, index: RegionIndex) -> Routing:
    """Route every expert layer of ``model``.

    ``index``: None (backbone only), a region name or int (the whole batch, ``W0 + dW_t``), or a LongTensor
    / sequence of shape (batch,) with one region per sample (EKS). Returns the routing now in effect.
    """
    routing = make_routing(region_order(model), index)
    for _, layer in expert_layers(model):
        layer._routing = routing
    return routing


@contextlib.contextmanager
def active_regions(model: nn.Module, index: RegionIndex) -> Iterator[Routing]:
    """``with active_regions(model, idx): model(x)`` routes for the block, then restores what was set."""
    layers = expert_layers(model)
    previous = [layer._routing for _, layer in layers]
    try:
        yield set_active_regions(model, index)
    finally:
        for (_, layer), routing in zip(layers, previous):
            layer._routing = routing
