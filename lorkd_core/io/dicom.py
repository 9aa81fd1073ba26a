"""DICOM series folders and single DICOM files.

Series are grouped by GDCM (SeriesInstanceUID) and sorted by GDCM along the slice normal, so file
names and order on disk do not matter. Pixel values come out rescaled (GDCM applies
RescaleSlope/RescaleIntercept: CT in HU). Tags are read with pydicom from a whitelist: patient
identifiers (name, ID, birth date, ...) never reach ``Scan.meta``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from lorkd_core.errors import ScanError
from lorkd_core.io.scan import (
    Scan,
    _as_scalar_volume,
    check_finite,
    check_voxel_limit,
    itk_message,
    quiet_native_stderr,
    read_image,
)

_MODALITY = {
    "CT": "CT",
    "MR": "MR",
    "CR": "XR",
    "DX": "XR",
    "DR": "XR",
    "MG": "XR",
    "RG": "XR",
    "PX": "XR",
    "IO": "XR",
}
# relative deviation of slice gaps tolerated before the series counts as unevenly spaced
_GAP_TOLERANCE = 0.01
_MAX_WALK_DIRS = 2000


def find_series(folder: Path) -> list[tuple[str, list[str]]]:
    """Every DICOM series below ``folder``: (SeriesInstanceUID, sorted file names), most slices first."""
    found: list[tuple[str, list[str]]] = []
    reader = sitk.ImageSeriesReader()
    for count, (dirpath, dirnames, filenames) in enumerate(os.walk(folder)):
        dirnames.sort()
        if count > _MAX_WALK_DIRS:
            break
        if not _has_dicom_file(dirpath, filenames):
            continue
        with quiet_native_stderr():
            uids = reader.GetGDCMSeriesIDs(dirpath)
            for uid in uids:
                files = list(reader.GetGDCMSeriesFileNames(dirpath, uid))
                if files:
                    found.append((uid, files))
    found.sort(key=lambda item: -len(item[1]))
    return found


def _has_dicom_file(dirpath: str, filenames: list[str], probe: int = 64) -> bool:
    """A cheap look before handing a folder to GDCM (which warns loudly about folders of other files)."""
    for name in filenames[:probe]:
        try:
            with open(os.path.join(dirpath, name), "rb") as fh:
                head = fh.read(132)
        except OSError:
            continue
        if head[128:132] == b"DICM" or head[:4] in (
            b"\x08\x00\x05\x00",
            b"\x08\x00\x08\x00",
            b"\x08\x00\x16\x00",
        ):
            return True  # preamble, or a preamble-less file starting with a group-0008 tag
    return False


def _dropped_files(files: list[str], uid: str, grouped: set[str]) -> list[Path]:
    """DICOM files beside the series that GDCM left out of every series although they belong to it (or are
    too damaged to tell): GDCM skips unreadable files silently, so a truncated first or last slice would
    otherwise vanish from the volume without a word."""
    dropped = []
    for dirpath in sorted({os.path.dirname(f) for f in files}):
        for name in sorted(os.listdir(dirpath)):
            full = os.path.join(dirpath, name)
            if name.startswith(".") or os.path.normpath(full) in grouped or not os.path.isfile(full):
                continue
            if not _has_dicom_file(dirpath, [name]):
                continue
            try:
                ds = pydicom.dcmread(full, stop_before_pixels=True, force=True)
            except Exception:  # pydicom raises many types on garbage
                dropped.append(Path(full))
                continue
            series = str(ds.get("SeriesInstanceUID", "") or "")
            is_dicomdir = "DirectoryRecordSequence" in ds
            if series == uid or (not series and not is_dicomdir):
                dropped.append(Path(full))
    return dropped


def load_series(
    folder: Path, modality: str | None = None, series_uid: str | None = None, max_voxels: int = 0
) -> Scan:
    """Load the largest series in ``folder`` (or the one with ``series_uid``)."""
    if not any(f for _, _, files in os.walk(folder) for f in files if not f.startswith(".")):
        raise ScanError("empty folder (no files to read)", folder)
    series = find_series(folder)
    if not series:
        n = sum(len(files) for _, _, files in os.walk(folder))
        raise ScanError(f"no DICOM series found in folder ({n} files, none readable as DICOM image)", folder)
    if series_uid is not None:
        chosen = [s for s in series if s[0] == series_uid or s[0].startswith(series_uid + ".")]
        if not chosen:
            available = ", ".join(f"{uid or '(empty uid)'} ({len(files)} files)" for uid, files in series[:5])
            raise ScanError(
                f"no series with SeriesInstanceUID {series_uid} in folder; found: {available}", folder
            )
        uid, files = chosen[0]
    else:
        uid, files = series[0]
    dropped = _dropped_files(files, uid, {os.path.normpath(f) for _, group in series for f in group})
    if dropped:
        names = ", ".join(p.name for p in dropped[:3]) + (f" (+{len(dropped) - 3} more)" if len(dropped) > 3 else "")
        raise ScanError(
            f"{len(dropped)} DICOM file(s) of the series cannot be read (truncated or corrupt?): {names}", folder
        )
    headers = [_read_header(Path(f)) for f in files]
    first = headers[0]
    if "PixelData" not in first and "Rows" not in first:
        raise ScanError("the DICOM series holds no image pixel data", folder)
    if len(files) == 1:
        return load_file(Path(files[0]), modality=modality, max_voxels=max_voxels)
    frames = int(first.get("NumberOfFrames", 1) or 1)
    rows, cols = int(first.get("Rows", 0) or 0), int(first.get("Columns", 0) or 0)
    check_voxel_limit((cols, rows, len(files) * frames), max_voxels, folder)
    _check_slice_positions(headers, folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        with quiet_native_stderr():
            image = reader.Execute()
    except RuntimeError as exc:
        raise ScanError(f"cannot decode the DICOM pixel data ({itk_message(exc)})", folder) from None
    image = _as_scalar_volume(image, folder, is_2d=False)
    meta = dicom_meta(first)
    meta.update(
        format="DICOM series", n_slices=len(files), series_in_folder=len(series), dicom_files=list(files)
    )
    if uid:
        meta.setdefault("series_uid", uid)
    scan = Scan.from_sitk(image, modality="OT", path=folder, meta=meta)
    check_finite(scan.array, folder)
    scan.modality = _modality(first, modality, scan)
    return scan


def load_file(path: Path, modality: str | None = None, max_voxels: int = 0) -> Scan:
    """Load one DICOM file (single frame -> one-slice volume, multi-frame -> volume)."""
    header = _read_header(path)
    if "Rows" not in header:
        raise ScanError(
            "DICOM file holds no image (no Rows/Columns; a report, DICOMDIR or other object?)", path
        )
    try:
        image = read_image(path, max_voxels)
    except ScanError:
        short = _pixel_data_shortfall(path, header)
        if short:
            raise ScanError(short, path) from None
        raise
    frames = int(header.get("NumberOfFrames", 1) or 1)
    image = _as_scalar_volume(image, path, is_2d=frames == 1)
    meta = dicom_meta(header)
    meta.update(format="DICOM file", dicom_files=[str(path)], n_slices=image.GetSize()[2])
    if frames == 1:
        meta["is_2d"] = True
    scan = Scan.from_sitk(image, modality="OT", path=path, meta=meta)
    check_finite(scan.array, path)
    if str(header.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        # MONOCHROME1 shows low values bright; flip so that brighter is always higher
        scan.array = (scan.array.max() + scan.array.min() - scan.array).astype(np.float32)
        meta["inverted_monochrome1"] = True
    scan.modality = _modality(header, modality, scan)
    return scan


def _pixel_data_shortfall(path: Path, header: pydicom.Dataset) -> str | None:
    """Why an uncompressed file's pixels did not read, when it holds fewer pixel bytes than its header needs."""
    try:
        syntax = header.file_meta.TransferSyntaxUID
        if syntax.is_compressed:
            return None
        need = (int(header.Rows) * int(header.Columns) * int(header.get("NumberOfFrames", 1) or 1)
                * int(header.get("SamplesPerPixel", 1) or 1) * int(header.BitsAllocated) // 8)
        got = len(pydicom.dcmread(str(path), force=True).get("PixelData") or b"")
    except Exception:  # no file meta, odd tags: leave the reader's own message
        return None
    if got < need:
        return f"file is truncated: {got:,} of {need:,} bytes of pixel data present"
    return None


def _read_header(path: Path) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except InvalidDicomError:
        try:
            return pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
        except Exception as exc:  # pydicom raises many types on garbage
            raise ScanError(f"not a DICOM file ({exc.__class__.__name__})", path) from None
    except Exception as exc:
        raise ScanError(f"cannot read the DICOM header ({exc.__class__.__name__}: {exc})", path) from None


def _check_slice_positions(headers: list[pydicom.Dataset], folder: Path) -> None:
    """Refuse series whose slices overlap or leave gaps: one voxel grid could not hold them."""
    try:
        iop = np.asarray([float(v) for v in headers[0].ImageOrientationPatient])
        positions = np.asarray([[float(v) for v in h.ImagePositionPatient] for h in headers])
    except (AttributeError, TypeError, ValueError):
        return  # no patient geometry (e.g. secondary capture): GDCM's order is all there is
    normal = np.cross(iop[:3], iop[3:])
    along = np.sort(positions @ normal)
    gaps = np.diff(along)
    if gaps.size == 0:
        return
    if np.any(gaps < 1e-3):
        dup = int(np.sum(gaps < 1e-3))
        raise ScanError(
            f"{dup} slices share a position with another slice (several acquisitions, echoes or phases in one series?)",
            folder,
        )
    median = float(np.median(gaps))
    worst = float(np.max(np.abs(gaps - median)))
    if worst > max(0.01, _GAP_TOLERANCE * median):
        raise ScanError(
            f"slices are unevenly spaced ({gaps.min():.3g} to {gaps.max():.3g} mm apart; missing slices?)",
            folder,
        )


def _modality(header: pydicom.Dataset, hint: str | None, scan: Scan) -> str:
    tag = str(header.get("Modality", "") or "").upper()
    if tag in _MODALITY:
        scan.meta["modality_source"] = "dicom"
        return _MODALITY[tag]
    if hint:
        scan.meta["modality_source"] = "hint"
        return hint
    scan.meta["modality_source"] = "dicom"
    return "OT"


def _floats(value: Any) -> list[float]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple, MultiValue)):
        return [float(v) for v in value if v not in (None, "")]
    return [float(value)]


def dicom_meta(ds: pydicom.Dataset) -> dict[str, Any]:
    """De-identified, JSON-friendly tags for ``Scan.meta`` (whitelist; no patient identifiers)."""
    meta: dict[str, Any] = {}
    text_tags = {
        "series_uid": "SeriesInstanceUID",
        "study_uid": "StudyInstanceUID",
        "frame_of_reference_uid": "FrameOfReferenceUID",
        "sop_class_uid": "SOPClassUID",
        "modality_tag": "Modality",
        "series_description": "SeriesDescription",
        "body_part": "BodyPartExamined",
        "manufacturer": "Manufacturer",
        "patient_position": "PatientPosition",
        "photometric": "PhotometricInterpretation",
        "contrast_agent": "ContrastBolusAgent",
        "rescale_type": "RescaleType",
    }
    for key, tag in text_tags.items():
        value = ds.get(tag)
        if value not in (None, ""):
            meta[key] = str(value)
    for key, tag in (
        ("series_number", "SeriesNumber"),
        ("slice_thickness", "SliceThickness"),
        ("kvp", "KVP"),
    ):
        try:
            values = _floats(ds.get(tag))
        except (TypeError, ValueError):
            values = []
        if values:
            meta[key] = values[0]
    try:
        slope, intercept = _floats(ds.get("RescaleSlope")), _floats(ds.get("RescaleIntercept"))
        if slope or intercept:
            meta["rescale"] = {
                "slope": slope[0] if slope else 1.0,
                "intercept": intercept[0] if intercept else 0.0,
            }
        centers, widths = _floats(ds.get("WindowCenter")), _floats(ds.get("WindowWidth"))
    except (TypeError, ValueError):
        centers, widths = [], []
    names = ds.get("WindowCenterWidthExplanation")
    names = [str(n) for n in names] if isinstance(names, (list, MultiValue)) else [str(names or "")]
    windows = []
    for i, (center, width) in enumerate(zip(centers, widths)):
        if width > 0:
            name = names[i] if i < len(names) and names[i] else f"preset {i + 1}"
            windows.append({"width": width, "level": center, "name": name})
    if windows:
        meta["windows"] = windows
    return meta
