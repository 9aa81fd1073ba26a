"""Writing predictions back on the scan's grid: NIfTI + sidecar JSON, or DICOM SEG."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import SimpleITK as sitk

from lorkd_core.atomic import atomic_path
from lorkd_core.errors import LabelError, ScanError
from lorkd_core.io.scan import Geometry, LabelMap, Scan, sidecar_path

if TYPE_CHECKING:  # pydicom costs ~1 s to import: only DICOM SEG output needs it
    import pydicom

_NIFTI_SUFFIXES = (".nii.gz", ".nii")


def _label_array(labels: np.ndarray | LabelMap, shape: tuple[int, ...], path: Path) -> np.ndarray:
    array = labels.array if isinstance(labels, LabelMap) else np.asarray(labels)
    if array.shape != tuple(shape):
        raise LabelError(
            f"labels have shape {array.shape} but the scan's grid is {tuple(shape)} (z, y, x)", path
        )
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise LabelError("labels must be integers", path)
    if array.size and (array.min() < 0 or array.max() > np.iinfo(np.int16).max):
        raise LabelError(f"label values must lie in 0..32767, found {array.min()}..{array.max()}", path)
    return array


def save_label_map(
    path: str | Path,
    labels: np.ndarray | LabelMap,
    like: Scan | Geometry,
    label_names: dict[int, str],
    **provenance: Any,
) -> Path:
    """Write ``labels`` (z, y, x) as NIfTI on ``like``'s grid (a Scan or its Geometry) plus ``<name>.json``
    beside it, both atomically.

    The sidecar holds ``{"labels": {"1": "liver", ...}, **provenance, "geometry": {...}}``; pass
    ``model=...`` and ``region=...`` as provenance. A path without a NIfTI suffix gets ``.nii.gz``.
    """
    path = Path(path)
    if not path.name.lower().endswith(_NIFTI_SUFFIXES):
        path = path.with_name(path.name + ".nii.gz")
    geometry = like if isinstance(like, Geometry) else like.geometry
    array = _label_array(labels, geometry.shape, path)
    dtype = np.uint8 if array.size == 0 or array.max() < 256 else np.int16
    image = geometry.apply_to(sitk.GetImageFromArray(array.astype(dtype, copy=False)))
    suffix = ".nii.gz" if path.name.lower().endswith(".nii.gz") else ".nii"
    sidecar: dict[str, Any] = {"labels": {str(int(k)): str(v) for k, v in sorted(label_names.items())}}
    sidecar.update({"model": None, "region": None})
    sidecar.update(provenance)
    sidecar["geometry"] = geometry.to_dict()
    sidecar["present"] = [int(v) for v in np.unique(array) if v != 0]
    text = json.dumps(sidecar, indent=2) + "\n"  # first: a value JSON cannot hold fails before any file changes
    # both files are complete on disk before either replaces an older one, so a failed write (disk full)
    # never leaves a new label map beside an old sidecar
    with atomic_path(sidecar_path(path), suffix=".json") as tmp_json, atomic_path(path, suffix=suffix) as tmp:
        # SimpleITK picks the writer from the extension, hence the temp name ending in .nii.gz
        sitk.WriteImage(image, str(tmp), useCompression=True)
        tmp_json.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------- DICOM SEG


def _source_datasets(
    source: Scan | str | Path | Sequence[pydicom.Dataset], series_uid: str | None
) -> list[pydicom.Dataset]:
    """Source images in the scan's slice order (the order :func:`load_scan` stacked them)."""
    import pydicom

    if isinstance(source, Scan):
        files = source.meta.get("dicom_files")
        if not files:
            raise ScanError(
                "DICOM SEG needs a scan loaded from DICOM (no source files recorded)", source.path
            )
        return [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    if isinstance(source, (str, Path)):
        folder = Path(source)
        if folder.is_file():
            return [pydicom.dcmread(str(folder), stop_before_pixels=True)]
        from lorkd_core.io.dicom import find_series

        series = find_series(folder)
        if series_uid is not None:
            series = [s for s in series if s[0] == series_uid]
        if not series:
            raise ScanError("no DICOM series to reference in the SEG", folder)
        return [pydicom.dcmread(f, stop_before_pixels=True) for f in series[0][1]]
    datasets = list(source)
    if not datasets:
        raise ScanError("no source DICOM datasets given for the SEG")

    def position(ds: pydicom.Dataset) -> float:
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
        return float(np.asarray([float(v) for v in ds.ImagePositionPatient]) @ np.cross(iop[:3], iop[3:]))

    try:
        return sorted(datasets, key=position)
    except AttributeError:
        return datasets


def _property_type(name: str) -> Any:
    from pydicom.sr.codedict import codes

    from lorkd_core.regions import normalize_name

    key = normalize_name(name)
    base = re.sub(r"_(left|right)$", "", key)
    if base.startswith("vertebrae_"):
        base = "vertebra"
    elif base.startswith("rib_"):
        base = "rib"
    elif base.startswith("lung_"):
        base = "lung"
    elif base.startswith("kidney_cyst"):
        base = "cyst"
    camel = "".join(part.capitalize() for part in base.split("_"))
    code = getattr(codes.SCT, camel, None)
    if code is not None:
        return code
    from highdicom.sr import CodedConcept

    # private coding scheme (99xxx), as DICOM allows for concepts without a standard code
    return CodedConcept(value=key[:16], scheme_designator="99LORKD", meaning=name.replace("_", " ")[:64])


def save_dicom_seg(
    path: str | Path,
    labels: np.ndarray | LabelMap,
    source: Scan | str | Path | Sequence[pydicom.Dataset],
    label_names: dict[int, str],
    *,
    series_uid: str | None = None,
    series_description: str = "LoRKD segmentation",
    model: str = "LoRKD",
    model_version: str = "0.1",
    series_number: int = 300,
) -> Path:
    """Write a binary DICOM SEG (one segment per label present) referencing the source series.

    ``labels`` is (z, y, x) on the grid :func:`load_scan` returned for that series; ``source`` is
    that Scan, the series folder, or its pydicom datasets. Written atomically.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from lorkd_core import __version__
    from lorkd_core.regions import distinct_colors

    path = Path(path)
    datasets = _source_datasets(source, series_uid)
    missing = [
        tag for tag in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID") if not datasets[0].get(tag)
    ]
    if missing:
        raise ScanError(
            f"the source DICOM lacks {', '.join(missing)} (anonymised too far?); a DICOM SEG cannot reference it, "
            "save as NIfTI instead",
            path,
        )
    rows, cols = int(datasets[0].Rows), int(datasets[0].Columns)
    array = _label_array(labels, (len(datasets), rows, cols), path)
    present = [int(v) for v in np.unique(array) if v != 0]
    if not present:
        raise LabelError("the segmentation is empty; nothing to write as DICOM SEG", path)
    # highdicom wants segment numbers 1..n: renumber the labels present in their id order
    lut = np.zeros(max(present) + 1, dtype=np.uint16)
    for number, value in enumerate(present, start=1):
        lut[value] = number
    segments = lut[array]
    # the viewer's colours: distinct within this label set (lorkd_core.regions.distinct_colors)
    all_names = {int(k): v for k, v in label_names.items()}
    colors = distinct_colors({**all_names, **{int(v): f"label_{v}" for v in present if int(v) not in all_names}})
    algorithm = hd.AlgorithmIdentificationSequence(
        name=model[:64], family=codes.cid7162.ArtificialIntelligence, version=str(model_version)[:64]
    )
    descriptions = []
    for number, value in enumerate(present, start=1):
        name = label_names.get(value, f"label_{value}")
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=name[:64],
                segmented_property_category=codes.SCT.AnatomicalStructure,
                segmented_property_type=_property_type(name),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                display_color=hd.color.CIELabColor.from_rgb(*colors[int(value)]),
            )
        )
    try:
        seg = hd.seg.Segmentation(
            source_images=datasets,
            pixel_array=segments,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="LoRKD Studio",
            manufacturer_model_name=model[:64],
            software_versions=__version__,
            device_serial_number="0",
            series_description=series_description[:64],
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise ScanError(f"cannot build the DICOM SEG ({exc})", path) from None
    with atomic_path(path, suffix=".dcm") as tmp:
        seg.save_as(str(tmp))
    return path
