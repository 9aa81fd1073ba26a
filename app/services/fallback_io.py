"""Stand-in scan reading and label-map writing, used only while lorkd_core.io lacks them.

Follows docs/contracts.md (array (z, y, x) float32, spacing/origin (x, y, z), LPS) so that switching to
the real functions changes nothing for the rest of the app.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lorkd_core.atomic import atomic_path, write_json_atomic
from lorkd_core.errors import ScanError


@dataclass
class FallbackScan:
    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    modality: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)

    def to_sitk(self):
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(self.array)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image


def load_scan(path: str | Path, modality: str | None = None) -> FallbackScan:
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise ScanError("file or folder does not exist", path)
    meta: dict[str, Any] = {}
    if path.is_dir():
        image, found_modality = _read_dicom_folder(path)
        meta["format"] = "DICOM"
    else:
        if path.stat().st_size == 0:
            raise ScanError("file is empty (0 bytes)", path)
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as exc:
            raise ScanError(f"not a readable image, truncated or corrupt ({_first_line(exc)})", path) from exc
        found_modality = None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ScanError(f"expected a 3D single-channel volume, found {image.GetDimension()}D "
                        f"with {image.GetNumberOfComponentsPerPixel()} channel(s)", path)
    array = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise ScanError("volume contains NaN or infinite values", path)
    mod = modality or found_modality or _guess_modality(array)
    return FallbackScan(array, tuple(image.GetSpacing()), tuple(image.GetOrigin()), tuple(image.GetDirection()),
                        mod, path, meta)


def _read_dicom_folder(path: Path):
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(path)) or []
    if not series:
        raise ScanError("no DICOM series found in this folder", path)
    files = max((reader.GetGDCMSeriesFileNames(str(path), s) for s in series), key=len)
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise ScanError(f"DICOM series cannot be read ({_first_line(exc)})", path) from exc
    modality = None
    if reader.HasMetaDataKey(0, "0008|0060"):
        modality = reader.GetMetaData(0, "0008|0060").strip() or None
    return image, modality


def _guess_modality(array: np.ndarray) -> str:
    return "CT" if float(array.min()) < -500 else "MR"


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1][:200] if lines else type(exc).__name__


def save_label_map(path: str | Path, labels: np.ndarray, like: Any, label_names: dict[int, str],
                   **provenance: Any) -> Path:
    import SimpleITK as sitk

    path = Path(path)
    image = sitk.GetImageFromArray(labels.astype(np.int16, copy=False))
    image.SetSpacing(tuple(like.spacing))
    image.SetOrigin(tuple(like.origin))
    image.SetDirection(tuple(like.direction))
    with atomic_path(path, suffix=".nii.gz") as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
    sidecar = {"labels": {str(k): v for k, v in sorted(label_names.items())}, **provenance,
               "geometry": {"size": list(image.GetSize()), "spacing": list(like.spacing),
                            "origin": list(like.origin), "direction": list(like.direction)}}
    write_json_atomic(sidecar_path(path), sidecar)
    return path


def sidecar_path(path: Path) -> Path:
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return path.with_name(name[: -len(ext)] + ".json")
    return path.with_suffix(".json")


def load_label_names(path: Path) -> dict[int, str]:
    try:
        data = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {int(k): str(v) for k, v in data.get("labels", {}).items()}
