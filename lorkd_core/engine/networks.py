"""Networks from JSON specs, and the region-head models the decomposition trains.

A spec is ``{"name": "monai.UNet" | "monai.DynUNet" | "monai.SegResNet" | "lorkd.SmallCNN", "kwargs": {...}}``;
``spatial_dims`` defaults to 3 and ``in_channels`` to 1. Model cards store the same spec under
``architecture`` plus ``heads`` ({region: output channels}) and ``model`` (which wrapper to build).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from lorkd_core.errors import ConfigError, ModelError

NETWORK_NAMES = ("monai.UNet", "monai.DynUNet", "monai.SegResNet", "lorkd.SmallCNN")
SEGMENTER = "RegionSegmenter"
CLASSIFIER = "RegionClassifier"
PLAIN = "plain"


def build_network(spec: Mapping[str, Any], **overrides: Any) -> nn.Module:
    """Instantiate a network spec; ``overrides`` replace kwargs (e.g. ``out_channels``)."""
    name = spec.get("name")
    kwargs = {"spatial_dims": 3, "in_channels": 1, **dict(spec.get("kwargs") or {}), **overrides}
    builder = _BUILDERS.get(str(name)) or _any_monai_net(str(name))
    if builder is None:
        raise ConfigError(f"unknown network '{name}'; known: {', '.join(NETWORK_NAMES)}")
    try:
        return builder(kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ConfigError(f"cannot build network '{name}' with {kwargs}: {exc}") from exc


def _unet(kw: dict[str, Any]) -> nn.Module:
    from monai.networks.nets import UNet

    kw.setdefault("strides", [2] * (len(kw.get("channels", [])) - 1))
    return UNet(**kw)


def _dynunet(kw: dict[str, Any]) -> nn.Module:
    from monai.networks.nets import DynUNet

    dims = kw["spatial_dims"]
    strides = kw.setdefault("strides", [[1] * dims, *[[2] * dims] * 3])
    kw.setdefault("kernel_size", [[3] * dims] * len(strides))
    kw.setdefault("upsample_kernel_size", strides[1:])
    return DynUNet(**kw)


def _segresnet(kw: dict[str, Any]) -> nn.Module:
    from monai.networks.nets import SegResNet

    return SegResNet(**kw)


def _any_monai_net(name: str) -> Callable[[dict[str, Any]], nn.Module] | None:
    """Other ``monai.<Class>`` networks (e.g. from an imported bundle), looked up in monai.networks.nets."""
    if not name.startswith("monai.") or "." in name[6:]:
        return None
    from monai.networks import nets

    cls = getattr(nets, name[6:], None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        return None
    return lambda kw: cls(**kw)


def _small_cnn(kw: dict[str, Any]) -> nn.Module:
    return SmallCNN(**kw)


_BUILDERS: dict[str, Callable[[dict[str, Any]], nn.Module]] = {
    "monai.UNet": _unet, "monai.DynUNet": _dynunet, "monai.SegResNet": _segresnet, "lorkd.SmallCNN": _small_cnn,
}


class SmallCNN(nn.Module):
    """Conv -> InstanceNorm -> LeakyReLU blocks (stride 2 after the first), global average pooling.

    Outputs ``channels[-1]`` features, or ``out_channels`` logits when given (a standalone classifier).
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, channels: Sequence[int] = (8, 16, 32, 64),
                 out_channels: int | None = None) -> None:
        super().__init__()
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        norm = nn.InstanceNorm3d if spatial_dims == 3 else nn.InstanceNorm2d
        layers: list[nn.Module] = []
        prev = in_channels
        for i, ch in enumerate(channels):
            layers += [conv(prev, ch, 3, stride=1 if i == 0 else 2, padding=1), norm(ch, affine=True),
                       nn.LeakyReLU(0.01)]
            prev = ch
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool3d(1) if spatial_dims == 3 else nn.AdaptiveAvgPool2d(1)
        self.out_features = prev
        self.fc = None if out_channels is None else nn.Linear(prev, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.features(x)).flatten(1)
        return h if self.fc is None else self.fc(h)


def _routing(backbone: nn.Module, index: Any) -> contextlib.AbstractContextManager:
    """EKS routing when the backbone carries experts; a no-op for plain (teacher, baseline) backbones."""
    from lorkd_core.experts import ExpertLayer, active_regions

    if not any(isinstance(m, ExpertLayer) for m in backbone.modules()):
        return contextlib.nullcontext()
    return active_regions(backbone, index)


class _RegionHeadModel(nn.Module):
    """Shared backbone (with optional region experts) + one head per region."""

    def __init__(self, backbone: nn.Module, heads: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if not heads:
            raise ConfigError("a region model needs at least one region head")
        self.regions = list(heads)
        self.backbone = backbone
        self.heads = nn.ModuleDict(dict(heads))

    def region_index(self, regions: Sequence[str] | str) -> torch.Tensor:
        names = [regions] if isinstance(regions, str) else list(regions)
        unknown = [r for r in names if r not in self.regions]
        if unknown:
            raise ModelError(f"the model has no head for region(s) {unknown}; it has {self.regions}")
        return torch.tensor([self.regions.index(r) for r in names], dtype=torch.long)

    def features(self, x: torch.Tensor, index: Any) -> torch.Tensor:
        with _routing(self.backbone, index):
            return self._post(self.backbone(x))

    def _post(self, h: torch.Tensor) -> torch.Tensor:
        return h

    def forward(self, x: torch.Tensor, region_index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mixed batch: one backbone pass (EKS), then each region's head on that region's samples.

        Returns ``{region: logits of the samples of that region, in batch order}`` for regions present.
        """
        region_index = region_index.to(x.device)
        h = self.features(x, region_index)
        out: dict[str, torch.Tensor] = {}
        for i, region in enumerate(self.regions):
            mask = region_index == i
            if bool(mask.any()):
                out[region] = self.heads[region](h[mask])
        return out

    def forward_region(self, x: torch.Tensor, region: str) -> torch.Tensor:
        """The whole batch through one region's expert and head (inference)."""
        if region not in self.regions:
            raise ModelError(f"the model has no head for region '{region}'; it has {self.regions}")
        return self.heads[region](self.features(x, self.regions.index(region)))

    def single_region(self, region: str) -> nn.Module:
        """A plain module ``x -> logits`` for one region (use after ``merged_expert`` for export)."""
        return _SingleRegion(self, region)


class _SingleRegion(nn.Module):
    def __init__(self, model: _RegionHeadModel, region: str) -> None:
        super().__init__()
        self.model = model
        self.region = region

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_region(x, self.region)


class RegionSegmenter(_RegionHeadModel):
    """Backbone with ``feature_channels`` outputs, LeakyReLU, then a 1x1 conv head per region (1 + n_t classes)."""

    def __init__(self, backbone: nn.Module, feature_channels: int, heads: Mapping[str, int],
                 spatial_dims: int = 3) -> None:
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        super().__init__(backbone, {r: conv(feature_channels, int(n), 1) for r, n in heads.items()})
        # The MONAI backbones end in a plain conv: without a nonlinearity the head would just be linear on it.
        self.act = nn.LeakyReLU(0.01)
        self.feature_channels = feature_channels

    def _post(self, h: torch.Tensor) -> torch.Tensor:
        return self.act(h)


class RegionClassifier(_RegionHeadModel):
    """Feature backbone (e.g. SmallCNN, outputs (B, F)) plus a Linear head per region."""

    def __init__(self, backbone: nn.Module, feature_channels: int, heads: Mapping[str, int]) -> None:
        super().__init__(backbone, {r: nn.Linear(feature_channels, int(n)) for r, n in heads.items()})
        self.feature_channels = feature_channels


class UnionHeads(nn.Module):
    """A union-label network (the teacher) seen as region heads: its logits restricted to each region's
    classes (:func:`lorkd_core.engine.losses.restrict_teacher_logits`), so that a scan of one region is
    never penalised for another region's structures that nobody labelled in it (a marginal loss)."""

    def __init__(self, net: nn.Module, class_ids: Mapping[str, Sequence[int]], *, fold_background: bool = True):
        super().__init__()
        self.net = net
        self.regions = list(class_ids)
        self.class_ids = {r: [int(i) for i in ids] for r, ids in class_ids.items()}
        self.fold_background = fold_background

    def forward(self, x: torch.Tensor, region_index: torch.Tensor) -> dict[str, torch.Tensor]:
        from lorkd_core.engine.losses import restrict_teacher_logits

        logits = self.net(x)
        region_index = region_index.to(x.device)
        out = {}
        for i, region in enumerate(self.regions):
            mask = region_index == i
            if bool(mask.any()):
                out[region] = restrict_teacher_logits(logits[mask], self.class_ids[region],
                                                      fold_background=self.fold_background)
        return out


# ------------------------------------------------------------------ architecture dicts (model cards)


def plain_architecture(spec: Mapping[str, Any], out_channels: int) -> dict[str, Any]:
    """A card architecture for a plain network (teacher), with ``out_channels`` fixed."""
    kwargs = {"spatial_dims": 3, "in_channels": 1, **dict(spec.get("kwargs") or {}), "out_channels": out_channels}
    return {"name": spec["name"], "kwargs": kwargs, "heads": {}, "model": PLAIN}


def region_architecture(spec: Mapping[str, Any], feature_channels: int, heads: Mapping[str, int],
                        task: str) -> dict[str, Any]:
    """A card architecture for a region-head model; the backbone's outputs are the features."""
    kwargs = {"spatial_dims": 3, "in_channels": 1, **dict(spec.get("kwargs") or {})}
    if task == "segmentation":
        kwargs["out_channels"] = feature_channels
        model = SEGMENTER
    else:
        kwargs.pop("out_channels", None)
        model = CLASSIFIER
    return {"name": spec["name"], "kwargs": kwargs, "heads": {r: int(n) for r, n in heads.items()},
            "model": model, "feature_channels": int(feature_channels)}


def build_from_architecture(arch: Mapping[str, Any]) -> nn.Module:
    """Rebuild the (expert-free) module a card describes: a plain network or a region-head model."""
    arch = copy.deepcopy(dict(arch))
    spec = {"name": arch["name"], "kwargs": arch.get("kwargs", {})}
    model = arch.get("model") or (SEGMENTER if arch.get("heads") else PLAIN)
    if model == PLAIN:
        return build_network(spec)
    heads = arch.get("heads") or {}
    feats = int(arch.get("feature_channels") or spec["kwargs"].get("out_channels") or 0)
    if model == SEGMENTER:
        dims = int(spec["kwargs"].get("spatial_dims", 3))
        return RegionSegmenter(build_network(spec), feats, heads, spatial_dims=dims)
    if model == CLASSIFIER:
        backbone = build_network(spec)
        return RegionClassifier(backbone, int(getattr(backbone, "out_features", feats)), heads)
    raise ModelError(f"unknown architecture model '{model}' (expected {PLAIN}, {SEGMENTER} or {CLASSIFIER})")


def patch_divisor(spec: Mapping[str, Any]) -> int:
    """The number every patch side must be a multiple of for this network (1 when unknown)."""
    kw = dict(spec.get("kwargs") or {})
    name = spec.get("name")
    if name == "monai.UNet":
        strides = kw.get("strides") or [2] * (len(kw.get("channels", [])) - 1)
        return int(torch.tensor([int(s if isinstance(s, int) else max(s)) for s in strides] or [1]).prod())
    if name == "monai.SegResNet":
        return 2 ** (len(kw.get("blocks_down", (1, 2, 2, 4))) - 1)
    if name == "monai.DynUNet" and kw.get("strides"):
        out = 1
        for s in kw["strides"]:
            out *= int(s if isinstance(s, int) else max(s))
        return out
    return 1


def check_patch(spec: Mapping[str, Any], patch: Sequence[int], what: str = "network") -> None:
    """ConfigError unless every patch side is a multiple of the network's total downsampling."""
    div = patch_divisor(spec)
    if any(int(p) % div for p in patch):
        raise ConfigError(f"patch_size {list(patch)} does not fit the {what} ({spec.get('name')}): every side "
                          f"must be a multiple of {div}")


def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only))
