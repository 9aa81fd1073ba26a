"""Run a model on a scan: canonicalise, predict (sliding window), write back on the scan's own grid.

:class:`Predictor` owns the device and a cache of ready region modules per (model, region): the first use
of an expert loads and merges it, a switch back to it is a dictionary lookup. Long work reports through
``progress`` and checks ``cancel`` between windows (see lorkd_core/progress.py).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lorkd_core.engine.catalog import ModelEntry
from lorkd_core.engine.model_card import CARD_NAME, WEIGHTS_NAME, ModelCard, region_labels, teacher_channels
from lorkd_core.engine.postprocess import clear_outside_air, keep_largest_pieces
from lorkd_core.errors import ConfigError, ModelError
from lorkd_core.progress import CancelToken, ProgressCallback, report

DEFAULT_SPACING = (3.0, 3.0, 3.0)
DEFAULT_PATCH = (64, 64, 64)


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Segmentation:
    """A label map (z, y, x) int16 on the scan's grid; ids are the region's labels ``label_names``."""

    labels: np.ndarray
    label_names: dict[int, str]
    model_id: str
    region: str
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    seconds: float = 0.0

    def volumes_ml(self) -> dict[str, float]:
        """Volume of every label in mL (0 for labels the model did not find)."""
        voxel_ml = float(np.prod(self.spacing)) / 1000.0
        counts = np.bincount(self.labels.ravel().astype(np.int64), minlength=max(self.label_names, default=0) + 1)
        return {name: float(counts[i]) * voxel_ml for i, name in sorted(self.label_names.items()) if i < len(counts)}


@dataclass(frozen=True)
class Classification:
    """Class probabilities for the scan, plus a Grad-CAM saliency map (z, y, x) in 0..1 on the scan's grid."""

    probabilities: dict[str, float]
    saliency: np.ndarray | None
    model_id: str = ""
    region: str = ""
    seconds: float = 0.0

    @property
    def top(self) -> str:
        return max(self.probabilities, key=self.probabilities.__getitem__)


# ---------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Preprocessing:
    """How a model's inputs were prepared in training (stored in the card's "training" or "preprocessing")."""

    spacing: tuple[float | None, ...] | None = DEFAULT_SPACING  # (x, y, z) mm; None = native (per axis)
    patch_size: tuple[int, ...] = DEFAULT_PATCH  # array order: (z, y, x), or (y, x) for 2D models
    spatial_dims: int = 3
    modality: str = "CT"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, card: ModelCard) -> Preprocessing:
        src: dict[str, Any] = {**card.training, **dict(card.extra.get("preprocessing") or {})}
        dims = int(src.get("spatial_dims") or card.architecture.spatial_dims)
        spacing = src.get("spacing", DEFAULT_SPACING)
        if spacing is not None:
            values = [float(s) for s in spacing]
            # 3 numbers: (x, y, z) mm as to_canonical takes them; 2 (2D models): in-plane, native slices
            spacing = tuple(values) if len(values) == 3 else (values[0], values[-1], None)
        patch = tuple(int(p) for p in src.get("patch_size", DEFAULT_PATCH[-dims:]))
        return cls(spacing, patch[-dims:], dims, card.modality, src)


def prepare_scan(scan: Any, pre: Preprocessing) -> tuple[np.ndarray, Any]:
    """Canonical (LPS, resampled) and intensity-normalised array (z, y, x), plus the grid to map back."""
    from lorkd_core.io import to_canonical

    spacing = pre.spacing
    if spacing is not None and None in spacing:
        spacing = tuple(s if s is not None else _slice_spacing(scan) for s in spacing)
    array, grid = to_canonical(scan, spacing=spacing)
    return _normalize(array, scan.modality or pre.modality), grid


def _slice_spacing(scan: Any) -> float:
    from lorkd_core.io.geometry import closest_axes

    axes, _ = closest_axes(scan.direction)
    return float(scan.spacing[axes[2]])


def _normalize(array: np.ndarray, modality: str) -> np.ndarray:
    """The training's intensity normalisation (CT: clip(HU, -1000, 1000) / 1000; other modalities: z-score)."""
    from lorkd_core.engine.data_loading import normalize_intensity

    return normalize_intensity(array, modality)


# ---------------------------------------------------------------- region modules


class _TeacherRegion(nn.Module):
    """A teacher seen through one region: its channels of that region, foreign classes folded into background."""

    def __init__(self, teacher: nn.Module, channels: Sequence[int], fold_background: bool) -> None:
        super().__init__()
        self.teacher = teacher
        self.channels = [int(c) for c in channels]
        self.fold_background = fold_background

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from lorkd_core.engine.losses import restrict_teacher_logits

        return restrict_teacher_logits(self.teacher(x), self.channels, fold_background=self.fold_background)


class _OneRegion(nn.Module):
    """``x -> logits`` of one region of a region-head model."""

    def __init__(self, model: nn.Module, region: str) -> None:
        super().__init__()
        self.model = model
        self.region = region

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_region(x, self.region)


def region_module(model: nn.Module, card: ModelCard, region: str) -> nn.Module:
    """A plain ``x -> logits`` module for ``region`` in that region's label space (see ``region_labels``)."""
    if card.kind == "teacher":
        channels, _ = teacher_channels(card, region)
        return _TeacherRegion(model, channels, fold_background=card.task == "segmentation")
    from lorkd_core.engine.export import standalone_expert

    plain, _ = standalone_expert(model, card, region)
    return _OneRegion(plain, region)


# ---------------------------------------------------------------- predictor


@dataclass
class _Loaded:
    model: nn.Module
    card: ModelCard


class Predictor:
    """Segment or classify scans with catalog entries; caches merged experts per (model, region).

    ``clean_up``: the anatomical clean-up of :mod:`lorkd_core.engine.postprocess` (organs that are one piece
    in every patient keep only their largest 3D component; on CT nothing but air-filled structures is labelled
    in the air around the patient)."""

    def __init__(self, device: str | torch.device = "auto", *, overlap: float = 0.25, sw_batch_size: int = 2,
                 cache_size: int = 32, models_cached: int = 3, clean_up: bool = True) -> None:
        from lorkd_core.device import select_device

        if isinstance(device, torch.device):
            self.device = device
        else:
            try:
                self.device = select_device(str(device))
            except RuntimeError as exc:  # torch's own message for a malformed device string
                raise ConfigError(f"unknown device '{device}' (use auto, cpu, cuda or mps)") from exc
        self.overlap = float(overlap)
        self.sw_batch_size = int(sw_batch_size)
        self.cache_size = int(cache_size)
        self.models_cached = int(models_cached)
        self.clean_up = bool(clean_up)
        self._regions: OrderedDict[tuple[Any, str], nn.Module] = OrderedDict()
        self._models: OrderedDict[Any, _Loaded] = OrderedDict()
        self._lock = threading.RLock()

    # ------------------------------------------------------------ cache

    def prepare(self, entry: ModelEntry) -> nn.Module:
        """The ready (eval, on device) region module of ``entry``: from the cache, else loaded and merged."""
        key = (_folder_key(entry.path), entry.region)
        with self._lock:
            module = self._regions.get(key)
            if module is not None:
                self._regions.move_to_end(key)
                return module
            loaded = self._load(entry.path, key[0])
            module = region_module(loaded.model, loaded.card, entry.region).to(self.device).eval()
            for p in module.parameters():
                p.requires_grad_(False)
            self._regions[key] = module
            while len(self._regions) > self.cache_size:
                self._regions.popitem(last=False)
            return module

    def is_cached(self, entry: ModelEntry) -> bool:
        with self._lock:
            return (_folder_key(entry.path), entry.region) in self._regions

    def clear_cache(self) -> None:
        with self._lock:
            self._regions.clear()
            self._models.clear()

    def _load(self, folder: Path, key: Any) -> _Loaded:
        from lorkd_core.engine.model_io import load_model

        loaded = self._models.get(key)
        if loaded is None:
            model, card = load_model(folder, device="cpu")
            loaded = _Loaded(model, card)
            self._models[key] = loaded
            while len(self._models) > self.models_cached:
                self._models.popitem(last=False)
        self._models.move_to_end(key)
        return loaded

    # ------------------------------------------------------------ segmentation

    def segment(self, scan: Any, entry: ModelEntry, progress: ProgressCallback | None = None,
                cancel: CancelToken | None = None) -> Segmentation:
        """Label map of ``entry.region`` on ``scan``'s grid (sliding window over the canonical volume)."""
        if entry.task != "segmentation":
            raise ModelError(f"'{entry.display_name}' is a {entry.task} model, not a segmentation model", entry.path)
        start = time.perf_counter()
        report(progress, 0, 1, f"loading {entry.display_name}")
        module = self.prepare(entry)
        _check_cancel(cancel, "segmentation")
        pre = Preprocessing.of(entry.card)
        array, grid = prepare_scan(scan, pre)
        _check_cancel(cancel, "segmentation")
        logits = self.predict_logits(module, array, pre, progress, cancel)
        labels = logits.argmax(dim=1)[0].to(torch.int16).cpu().numpy()
        from lorkd_core.io import from_canonical

        names = region_labels(entry.card, entry.region)
        if self.clean_up:
            if (scan.modality or pre.modality) == "CT":  # the network input is HU / 1000 there
                labels = clear_outside_air(labels, array * 1000.0, names)
            labels = keep_largest_pieces(labels, names)
        labels = from_canonical(labels, grid).astype(np.int16, copy=False)
        return Segmentation(labels, names, entry.id, entry.region, tuple(scan.spacing),
                            time.perf_counter() - start)

    def predict_logits(self, module: nn.Module, array: np.ndarray, pre: Preprocessing,
                       progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> torch.Tensor:
        """Logits (1, K, z, y, x) on the canonical grid; 2D models run slice by slice."""
        from monai.inferers import sliding_window_inference

        vol = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        z_pad = (0, 0)
        if pre.spatial_dims == 3 and vol.shape[0] < pre.patch_size[0]:
            # A short series (e.g. 20 slices of 2 mm: 10 at 4 mm) is a slab of a longer body: continue it with
            # its first/last slice rather than air, which would show the network a body ending just above and
            # below the slab (phantom slabs lose 0.2-0.5 Dice that way). Split as monai splits its padding.
            missing = pre.patch_size[0] - vol.shape[0]
            z_pad = (missing // 2, missing - missing // 2)
            vol = torch.nn.functional.pad(vol[None, None], (0, 0, 0, 0, *z_pad), mode="replicate")[0, 0]
        if pre.spatial_dims == 3:
            inputs = [vol[None, None]]
        else:  # each axial slice is one 2D image; batch a few slices per window pass
            inputs = [vol[z:z + 8, None] for z in range(0, vol.shape[0], 8)]
        roi = tuple(pre.patch_size)
        per_input = [_count_windows(tuple(x.shape[2:]), roi, self.overlap) for x in inputs]
        calls_total = sum(math.ceil(n * x.shape[0] / self.sw_batch_size) for n, x in zip(per_input, inputs))
        done = 0

        def run(batch: torch.Tensor) -> torch.Tensor:
            nonlocal done
            _check_cancel(cancel, "segmentation")
            out = module(batch)
            done += 1
            report(progress, min(done, calls_total), calls_total, f"window {done}/{calls_total}")
            return out

        outs = []
        with torch.inference_mode():
            for x in inputs:
                # Windows run on the device, the full-volume logits are stitched in host memory. In-plane, a
                # volume smaller than the patch is padded with its minimum (air), as the training crops are.
                out = sliding_window_inference(x, roi, self.sw_batch_size, run, overlap=self.overlap,
                                               mode="gaussian", padding_mode="constant", cval=float(x.min()),
                                               sw_device=self.device, device=torch.device("cpu"))
                outs.append(out.float())
        if pre.spatial_dims == 3:
            return outs[0][:, :, z_pad[0]:outs[0].shape[2] - z_pad[1]]
        return torch.cat(outs, dim=0).permute(1, 0, 2, 3)[None]

    # ------------------------------------------------------------ classification

    def classify(self, scan: Any, entry: ModelEntry, progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None, *, saliency: bool = True) -> Classification:
        """Class probabilities (mean over the windows that cover the scan) and a Grad-CAM map."""
        if entry.task != "classification":
            raise ModelError(f"'{entry.display_name}' is a {entry.task} model, not a classifier", entry.path)
        start = time.perf_counter()
        report(progress, 0, 1, f"loading {entry.display_name}")
        module = self.prepare(entry)
        pre = Preprocessing.of(entry.card)
        array, grid = prepare_scan(scan, pre)
        windows = _windows(array, pre)
        probs_sum: torch.Tensor | None = None
        canvas = np.zeros(array.shape, np.float32) if saliency else None
        target_layer = _last_conv(module) if saliency else None
        for n, (index, patch) in enumerate(windows):
            _check_cancel(cancel, "classification")
            x = torch.from_numpy(patch)[None, None].to(self.device)
            if target_layer is not None and canvas is not None:
                logits, cam = grad_cam(module, x, target_layer)
                region_view = canvas[index]
                np.maximum(region_view, cam[tuple(slice(0, s) for s in region_view.shape)], out=region_view)
            else:
                with torch.inference_mode():
                    logits = module(x)
            p = torch.softmax(logits.detach().float(), dim=1)[0].cpu()
            probs_sum = p if probs_sum is None else probs_sum + p
            report(progress, n + 1, len(windows), f"window {n + 1}/{len(windows)}")
        assert probs_sum is not None
        probs = (probs_sum / len(windows)).tolist()
        names = region_labels(entry.card, entry.region)
        probabilities = {names.get(i, f"class_{i}"): float(v) for i, v in enumerate(probs)}
        sal = None
        if canvas is not None:
            from lorkd_core.io.geometry import canonical_to_scan_array

            peak = float(canvas.max())
            sal = canonical_to_scan_array(canvas / peak if peak > 0 else canvas, grid)
        return Classification(probabilities, sal, entry.id, entry.region, time.perf_counter() - start)


# ---------------------------------------------------------------- Grad-CAM


def _last_conv(module: nn.Module) -> nn.Module | None:
    convs = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    return convs[-1] if convs else None


def grad_cam(module: nn.Module, x: torch.Tensor, layer: nn.Module,
             target: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """Logits and the Grad-CAM map (input's spatial shape, not normalised) of class ``target`` (default: top)."""
    acts: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: acts.append(out))
    try:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)  # parameters are frozen: the input carries the graph
            logits = module(x)
            cls = int(logits[0].argmax()) if target is None else int(target)
            (grads,) = torch.autograd.grad(logits[0, cls], acts[-1])
    finally:
        handle.remove()
    act = acts[-1].detach()
    weights = grads.mean(dim=tuple(range(2, grads.dim())), keepdim=True)
    cam = torch.relu((weights * act).sum(dim=1, keepdim=True))
    mode = "trilinear" if cam.dim() == 5 else "bilinear"
    cam = torch.nn.functional.interpolate(cam, size=tuple(x.shape[2:]), mode=mode, align_corners=False)
    return logits.detach(), cam[0, 0].cpu().numpy().astype(np.float32)


# ---------------------------------------------------------------- helpers


def _check_cancel(cancel: CancelToken | None, what: str) -> None:
    if cancel is not None:
        cancel.raise_if_cancelled(what)


def _folder_key(folder: Path) -> tuple[str, int, int]:
    """A model folder's identity: its path and the modification times of card and weights (a retrained
    model in the same folder is a different model)."""
    folder = Path(folder)

    def mtime(p: Path) -> int:
        try:
            return p.stat().st_mtime_ns
        except OSError:
            return 0

    return str(folder.resolve()), mtime(folder / CARD_NAME), mtime(folder / WEIGHTS_NAME)


def _count_windows(shape: tuple[int, ...], roi: tuple[int, ...], overlap: float) -> int:
    """How many windows monai's sliding_window_inference visits (for progress totals)."""
    n = 1
    for s, r in zip(shape, roi):
        size = max(s, r)
        if size == r:
            continue
        interval = max(int(r * (1 - overlap)), 1)
        n *= math.ceil((size - r) / interval) + 1
    return n


def _axis_starts(size: int, patch: int) -> list[int]:
    if size <= patch:
        return [0]
    count = math.ceil((size - patch) / max(1, int(patch * 0.75))) + 1
    return sorted({int(round(v)) for v in np.linspace(0, size - patch, count)})


def _windows(array: np.ndarray, pre: Preprocessing) -> list[tuple[tuple[slice, ...], np.ndarray]]:
    """Classifier inputs: patches tiling the canonical volume (each padded to the patch size)."""
    patch = tuple(pre.patch_size)
    if pre.spatial_dims == 2:
        z_index = range(array.shape[0])
        planes = [(z, array[z]) for z in z_index]
    else:
        planes = [(None, array)]
    out = []
    fill = float(array.min()) if array.size else 0.0
    for z, plane in planes:
        grids = [_axis_starts(s, p) for s, p in zip(plane.shape, patch)]
        for starts in _product(grids):
            window = tuple(slice(a, a + p) for a, p in zip(starts, patch))
            crop = plane[window]
            pads = [(0, p - s) for p, s in zip(patch, crop.shape)]
            if any(b for _, b in pads):
                crop = np.pad(crop, pads, constant_values=fill)
            index = window if z is None else (z, *window)
            out.append((index, np.ascontiguousarray(crop, dtype=np.float32)))
    return out


def _product(grids: list[list[int]]) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = [()]
    for g in grids:
        out = [o + (v,) for o in out for v in g]
    return out
