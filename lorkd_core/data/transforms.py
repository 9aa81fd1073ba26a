"""MONAI dictionary pipelines for training and inference on keys ``image`` / ``label``.

Volumes are channel-first MetaTensors (1, X, Y, Z) with a RAS affine, reoriented to RAS and
resampled to the network spacing. CT is windowed to [-1000, 1000] HU and scaled to [-1, 1]; MR is
scaled between its 0.5 and 99.5 percentiles. Training crops patches around labels and background
inside the body, then augments strongly enough that a network trained on phantoms transfers to real
CT: affine (rotation, scale, shear), intensity scale/shift/gamma, noise, blur and sharpening, low
resolution and a mild bias field. There is no left-right flip unless the caller gives label pairs
to swap (``lr_pairs``), because a flip turns a left kidney into a right one.

Inputs may be paths (NIfTI, NRRD, MHA, a DICOM folder), SimpleITK images, objects with ``to_sitk()``
(a :class:`lorkd_core.io.Scan`), numpy arrays (z, y, x) with optional ``spacing``/``origin``/
``direction`` entries in the item, or MetaTensors.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.transforms import (
    CenterSpatialCropd,
    Compose,
    CropForegroundd,
    EnsureTyped,
    FgBgToIndicesd,
    MapTransform,
    NormalizeIntensityd,
    Orientationd,
    RandAdjustContrastd,
    RandAffined,
    RandBiasFieldd,
    RandCropByPosNegLabeld,
    RandGaussianNoised,
    RandGaussianSharpend,
    RandGaussianSmoothd,
    RandomizableTransform,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSimulateLowResolutiond,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
    Spacingd,
    SpatialPadd,
)

CT_WINDOW = (-1000.0, 1000.0)
BODY_THRESHOLD = -0.9  # scaled intensity above which a voxel is body (about -900 HU), not air
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


# -- loading -----------------------------------------------------------------------------------

def _read_sitk(path: Path) -> sitk.Image:
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        names = reader.GetGDCMSeriesFileNames(str(path))
        if not names:
            raise ValueError(f"{path}: no DICOM series in this folder")
        reader.SetFileNames(names)
        return reader.Execute()
    return sitk.ReadImage(str(path))


def to_metatensor(array_zyx: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
                  direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0), dtype=torch.float32) -> MetaTensor:
    """A (z, y, x) array with LPS geometry (SimpleITK conventions) as a (1, X, Y, Z) RAS MetaTensor."""
    arr = np.asarray(array_zyx)
    if arr.ndim != 3:
        raise ValueError(f"expected a 3-D (z, y, x) array, got shape {arr.shape}")
    d = np.asarray(direction, float).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = d @ np.diag(np.asarray(spacing, float))
    affine[:3, 3] = np.asarray(origin, float)
    data = torch.as_tensor(np.ascontiguousarray(arr.transpose(2, 1, 0))[None], dtype=dtype)
    return MetaTensor(data, affine=torch.as_tensor(_LPS_TO_RAS @ affine, dtype=torch.float64))


def sitk_to_metatensor(image: sitk.Image, dtype=torch.float32) -> MetaTensor:
    return to_metatensor(sitk.GetArrayFromImage(image), image.GetSpacing(), image.GetOrigin(), image.GetDirection(),
                         dtype=dtype)


class LoadVolumed(MapTransform):
    """Load each key from a path, SimpleITK image, scan (``to_sitk()``), array or MetaTensor."""

    def __init__(self, keys, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self._load(d[key], d, key)
        return d

    @staticmethod
    def _load(value: Any, item: Mapping[Hashable, Any], key: Hashable) -> MetaTensor:
        dtype = torch.float32
        if isinstance(value, MetaTensor):
            return value if value.ndim == 4 else value[None]
        if isinstance(value, (str, Path)):
            return sitk_to_metatensor(_read_sitk(Path(value)), dtype)
        if isinstance(value, sitk.Image):
            return sitk_to_metatensor(value, dtype)
        if hasattr(value, "to_sitk"):
            return sitk_to_metatensor(value.to_sitk(), dtype)
        if isinstance(value, (np.ndarray, torch.Tensor)):
            arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
            geo = {k: item[k] for k in ("spacing", "origin", "direction") if k in item}
            return to_metatensor(arr, dtype=dtype, **geo)
        raise TypeError(f"cannot load {key!r} from {type(value).__name__}")


def case_item(case: Any) -> dict[str, Any]:
    """A transform input from an in-memory :class:`lorkd_core.data.phantoms.PhantomCase`."""
    geo = {"spacing": case.spacing, "origin": case.origin, "direction": case.direction}
    return {"image": to_metatensor(case.image, **geo), "label": to_metatensor(case.labels, **geo),
            "region": case.region, "label_names": dict(case.label_names)}


# -- pieces ------------------------------------------------------------------------------------

def lr_swap_pairs(label_names: Mapping[int, str]) -> dict[int, int]:
    """Label id pairs that trade places under a left-right flip (``kidney_left`` <-> ``kidney_right``)."""
    by_name = {name: int(i) for i, name in label_names.items()}
    pairs: dict[int, int] = {}
    for name, i in by_name.items():
        for a, b in (("_left", "_right"), ("_right", "_left")):
            if name.endswith(a) and name[: -len(a)] + b in by_name:
                pairs[i] = by_name[name[: -len(a)] + b]
    return pairs


class RandFlipLRd(RandomizableTransform, MapTransform):
    """Mirror along the patient's left-right axis (axis 0 after RAS orientation) and swap the
    paired left/right label ids so the labels stay anatomically true."""

    def __init__(self, keys, label_key: str, pairs: Mapping[int, int], prob: float = 0.5) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.label_key = label_key
        size = max([0, *pairs.keys(), *pairs.values()]) + 1
        lut = torch.arange(max(size, 1))
        for a, b in pairs.items():
            lut[a] = b
        self.lut = lut

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            flipped = torch.flip(d[key], dims=(1,))
            if key == self.label_key:
                values = flipped.long()
                inside = values < len(self.lut)
                mapped = torch.where(inside, self.lut[values.clamp(max=len(self.lut) - 1)], values)
                flipped = flipped.clone()
                flipped.copy_(mapped.to(flipped.dtype))
            d[key] = flipped
        return d


def _body(x: torch.Tensor) -> torch.Tensor:
    return x > BODY_THRESHOLD


def intensity_transforms(keys: Sequence[str] = ("image",), modality: str = "CT") -> list:
    """CT: window [-1000, 1000] HU to [-1, 1]; MR: 0.5-99.5 percentiles to [-1, 1]."""
    if modality.upper() == "CT":
        lo, hi = CT_WINDOW
        return [ScaleIntensityRanged(keys, a_min=lo, a_max=hi, b_min=-1.0, b_max=1.0, clip=True)]
    if modality.upper() == "MR":
        return [ScaleIntensityRangePercentilesd(keys, lower=0.5, upper=99.5, b_min=-1.0, b_max=1.0, clip=True)]
    return [NormalizeIntensityd(keys, nonzero=False)]


def normalize_intensity(image: np.ndarray, modality: str = "CT") -> np.ndarray:
    """The same scaling as :func:`intensity_transforms` for a plain array (float32)."""
    arr = np.asarray(image, np.float32)
    if modality.upper() == "CT":
        lo, hi = CT_WINDOW
        return (np.clip(arr, lo, hi) - (lo + hi) / 2) / ((hi - lo) / 2)
    if modality.upper() == "MR":
        p0, p1 = np.percentile(arr, [0.5, 99.5])
        return np.clip((arr - p0) / max(float(p1 - p0), 1e-6) * 2 - 1, -1, 1).astype(np.float32)
    std = float(arr.std())
    return ((arr - float(arr.mean())) / (std if std > 0 else 1.0)).astype(np.float32)


def _geometry(keys: Sequence[str], spacing: Sequence[float], modes: Sequence[str]) -> list:
    return [Orientationd(keys, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
            Spacingd(keys, pixdim=tuple(float(s) for s in spacing), mode=tuple(modes), dtype=np.float32)]


def augmentations(keys: Sequence[str], image_key: str, patch_size: Sequence[int], strength: float = 1.0) -> list:
    """Spatial then intensity augmentation; ``strength`` scales ranges and probabilities (0 = none)."""
    if strength <= 0:
        return [CenterSpatialCropd(keys, roi_size=tuple(patch_size))]
    s = float(strength)
    modes = tuple("nearest" if k != image_key else "bilinear" for k in keys)
    rot = 0.26 * s  # about 15 degrees
    affine = RandAffined(keys, spatial_size=tuple(patch_size), prob=min(1.0, 0.8 * s), rotate_range=(rot, rot, rot),
                         scale_range=(0.15 * s,) * 3, shear_range=(0.05 * s,) * 3, mode=modes, padding_mode="border",
                         cache_grid=True)
    resampler = getattr(getattr(affine, "rand_affine", None), "resampler", None)
    if resampler is not None and hasattr(resampler, "dtype"):
        resampler.dtype = torch.float32  # MONAI resamples in float64 by default: twice the CPU time, same result
    return [
        affine,
        RandScaleIntensityd(image_key, factors=0.1 * s, prob=0.5),
        RandShiftIntensityd(image_key, offsets=0.03 * s, prob=0.5),
        RandAdjustContrastd(image_key, gamma=(1 - 0.3 * s, 1 + 0.5 * s), prob=0.3),
        RandGaussianNoised(image_key, std=0.02 * s, prob=0.3),
        RandGaussianSmoothd(image_key, sigma_x=(0.4, 1.0), sigma_y=(0.4, 1.0), sigma_z=(0.4, 1.0), prob=0.2),
        RandGaussianSharpend(image_key, alpha=(2.0, 8.0), prob=0.1),
        RandSimulateLowResolutiond(image_key, zoom_range=(0.5, 1.0), prob=0.2),
        RandBiasFieldd(image_key, coeff_range=(0.0, 0.04 * s), prob=0.1),
    ]


# -- pipelines ---------------------------------------------------------------------------------

def train_transforms(spacing: Sequence[float] = (3.0, 3.0, 3.0), patch_size: Sequence[int] = (64, 64, 64), *,
                     modality: str = "CT", num_samples: int = 2, pos: float = 2.0, neg: float = 1.0,
                     strength: float = 1.0, lr_pairs: Mapping[int, int] | None = None,
                     image_key: str = "image", label_key: str = "label", seed: int | None = None) -> Compose:
    """Load -> RAS -> spacing -> intensity -> body crop | random patches -> augmentation -> tensors.

    Everything before the first random transform is deterministic, so MONAI's CacheDataset caches
    it (body-cropped volume plus foreground/background indices). Each item yields ``num_samples`` patches of ``patch_size`` (image float32, label int64),
    ``pos``:``neg`` centred on labelled voxels vs. other body voxels.
    """
    keys = [image_key, label_key]
    patch = tuple(int(p) for p in patch_size)
    # Crop a margin larger so rotation and scaling never pull in empty corners.
    margin = 1.25 if strength > 0 else 1.0
    crop = tuple(int(math.ceil(p * margin)) for p in patch)
    steps = [
        LoadVolumed(keys),
        *_geometry(keys, spacing, ("bilinear", "nearest")),
        *intensity_transforms([image_key], modality),
        CropForegroundd(keys, source_key=image_key, select_fn=_body, margin=4, allow_smaller=True),
        SpatialPadd([image_key], spatial_size=crop, value=-1.0),
        SpatialPadd([label_key], spatial_size=crop, value=0),
        FgBgToIndicesd(label_key, image_key=image_key, image_threshold=BODY_THRESHOLD),
        RandCropByPosNegLabeld(keys, label_key=label_key, spatial_size=crop, pos=pos, neg=neg,
                               num_samples=num_samples, fg_indices_key=f"{label_key}_fg_indices",
                               bg_indices_key=f"{label_key}_bg_indices", allow_smaller=True),
        *augmentations(keys, image_key, patch, strength),
    ]
    if lr_pairs:
        steps.append(RandFlipLRd(keys, label_key, lr_pairs, prob=0.5))
    steps.append(EnsureTyped(keys, dtype=(torch.float32, torch.int64), track_meta=False))
    compose = Compose(steps)
    if seed is not None:
        compose.set_random_state(seed=seed)
    return compose


def infer_transforms(spacing: Sequence[float] = (3.0, 3.0, 3.0), *, modality: str = "CT",
                     keys: Sequence[str] = ("image",), crop_foreground: bool = False) -> Compose:
    """Load -> RAS -> spacing -> intensity (-> body crop). The MetaTensor keeps the applied
    operations, so ``monai.transforms.Invertd`` maps a prediction back to the input grid."""
    keys = list(keys)
    modes = ["bilinear" if i == 0 else "nearest" for i in range(len(keys))]
    steps = [LoadVolumed(keys), *_geometry(keys, spacing, modes), *intensity_transforms(keys[:1], modality)]
    if crop_foreground:
        steps.append(CropForegroundd(keys, source_key=keys[0], select_fn=_body, margin=4, allow_smaller=True))
    steps.append(EnsureTyped(keys, dtype=torch.float32, track_meta=True))
    return Compose(steps)
