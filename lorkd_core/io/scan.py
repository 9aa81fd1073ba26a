"""Reading scans and label maps into numpy arrays that keep their geometry.

Arrays follow SimpleITK: axes (z, y, x); spacing/origin are (x, y, z) in mm in ITK's LPS world;
direction is a row-major 3x3 matrix whose columns are the x, y, z axis directions. 2D images
(PNG, JPEG, single-frame DICOM) load as one-slice volumes, shape (1, y, x).

Modality: the DICOM ``Modality`` tag, else the caller's hint, else a heuristic for 3D volumes:
a minimum below -500 means CT in HU (air is -1000 HU; no MR, PET or uint image goes there), anything
else is taken as MR. 2D bitmaps without a hint are "OT". A CT stored without its rescale
(raw 0..4095) is therefore taken as MR: pass ``modality="CT"`` for those.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import struct
import sys
import tempfile
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from lorkd_core.errors import LabelError, ScanError

_log = logging.getLogger(__name__)

DEFAULT_MAX_VOXELS = 512 * 512 * 2000
GEOMETRY_TOLERANCE = 1e-4
MODALITIES = ("CT", "MR", "XR", "OT")

_NIFTI = (".nii", ".nii.gz")
_ITK_VOLUMES = (".nrrd", ".nhdr", ".mha", ".mhd")
_BITMAPS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_DICOM = (".dcm", ".dicom", ".ima")
SUPPORTED_SUFFIXES = _NIFTI + _ITK_VOLUMES + _BITMAPS + _DICOM


def max_voxels_default() -> int:
    """The voxel limit; ``LORKD_MAX_VOXELS`` in the environment overrides the default."""
    try:
        return int(os.environ.get("LORKD_MAX_VOXELS", DEFAULT_MAX_VOXELS))
    except ValueError:
        return DEFAULT_MAX_VOXELS


@dataclass(frozen=True)
class Geometry:
    """The voxel grid of an image: size (x, y, z), spacing, origin, row-major direction."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        return cls(
            size=tuple(int(s) for s in image.GetSize()),  # type: ignore[arg-type]
            spacing=tuple(float(s) for s in image.GetSpacing()),  # type: ignore[arg-type]
            origin=tuple(float(s) for s in image.GetOrigin()),  # type: ignore[arg-type]
            direction=tuple(float(s) for s in image.GetDirection()),
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        """Numpy shape (z, y, x)."""
        return (self.size[2], self.size[1], self.size[0])

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def index_to_physical(self, index_xyz: np.ndarray) -> np.ndarray:
        """(N, 3) continuous (x, y, z) indices -> (N, 3) LPS points in mm."""
        idx = np.asarray(index_xyz, dtype=float)
        return np.asarray(self.origin) + (idx * np.asarray(self.spacing)) @ self.matrix.T

    def differences(self, other: Geometry, tol: float = GEOMETRY_TOLERANCE) -> list[str]:
        """What differs, each as ``"<property> <self's value> vs <other's value>"`` (empty when the grids match)."""
        out = []
        if self.size != other.size:
            out.append(f"size {_fmt(self.size)} vs {_fmt(other.size)}")
        for name in ("spacing", "origin", "direction"):
            a, b = np.asarray(getattr(self, name)), np.asarray(getattr(other, name))
            if not np.allclose(a, b, atol=tol, rtol=0):
                out.append(f"{name} {_fmt(a)} vs {_fmt(b)}")
        return out

    def matches(self, other: Geometry, tol: float = GEOMETRY_TOLERANCE) -> bool:
        return not self.differences(other, tol)

    def to_dict(self) -> dict[str, list[float] | list[int]]:
        return {
            "size": list(self.size),
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": list(self.direction),
        }

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image


@dataclass
class Scan:
    """A loaded image volume: float32 array (z, y, x) plus geometry, modality and de-identified metadata."""

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    modality: str
    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def geometry(self) -> Geometry:
        z, y, x = self.array.shape
        return Geometry((x, y, z), self.spacing, self.origin, self.direction)

    @property
    def size(self) -> tuple[int, int, int]:
        """(x, y, z) voxel counts, as SimpleITK reports them."""
        return self.geometry.size

    @property
    def orientation(self) -> str:
        """Three-letter code of where the axes point, e.g. ``LPS`` (identity) or ``RAS``."""
        return orientation_code(self.direction)

    def to_sitk(self) -> sitk.Image:
        return self.geometry.apply_to(sitk.GetImageFromArray(self.array))

    @classmethod
    def from_sitk(
        cls, image: sitk.Image, modality: str, path: Path | None = None, meta: dict[str, Any] | None = None
    ) -> Scan:
        g = Geometry.of(image)
        array = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
        return cls(array, g.spacing, g.origin, g.direction, modality, path, dict(meta or {}))


@dataclass
class LabelMap:
    """An integer label map (int16, (z, y, x)) with geometry; ``names`` from its sidecar JSON if any."""

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    path: Path | None = None
    names: dict[int, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def geometry(self) -> Geometry:
        z, y, x = self.array.shape
        return Geometry((x, y, z), self.spacing, self.origin, self.direction)

    def to_sitk(self) -> sitk.Image:
        return self.geometry.apply_to(sitk.GetImageFromArray(self.array))

    def values(self) -> list[int]:
        """Label values present, background excluded."""
        return [int(v) for v in np.unique(self.array) if v != 0]


def orientation_code(direction: tuple[float, ...] | np.ndarray) -> str:
    """``LPS``, ``RAS``, ... (closest axis for oblique directions), via SimpleITK's DICOM orient filter."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines([float(d) for d in direction])


def load_scan(
    path: str | Path,
    modality: str | None = None,
    series_uid: str | None = None,
    max_voxels: int | None = None,
) -> Scan:
    """Load a NIfTI/NRRD/MHA/MHD file, a DICOM file or series folder, or a 2D bitmap.

    ``modality`` is a hint used when the file does not say (DICOM tags win). ``series_uid`` picks a
    DICOM series in a folder (default: the series with most slices). Volumes above ``max_voxels``
    are refused from their header, before any pixel is read. Every failure raises ScanError.
    """
    path = Path(path)
    if modality is not None:
        modality = modality.upper()
        if modality not in MODALITIES:
            raise ScanError(f"unknown modality {modality!r} (expected one of {', '.join(MODALITIES)})", path)
    limit = max_voxels_default() if max_voxels is None else int(max_voxels)
    if not path.exists():
        raise ScanError("file or folder does not exist", path)
    if path.is_dir():
        from lorkd_core.io import dicom

        return dicom.load_series(path, modality=modality, series_uid=series_uid, max_voxels=limit)
    _check_file(path)
    suffix = suffix_of(path)
    if suffix in _DICOM or (suffix not in SUPPORTED_SUFFIXES and _looks_like_dicom(path)):
        from lorkd_core.io import dicom

        return dicom.load_file(path, modality=modality, max_voxels=limit)
    if suffix not in SUPPORTED_SUFFIXES:
        raise ScanError(
            f"unsupported file type {suffix or '(no extension)'!r}; supported: NIfTI (.nii, .nii.gz), NRRD, "
            "MHA/MHD, DICOM (file or series folder), PNG/JPEG",
            path,
        )
    image = read_image(path, limit)
    is_2d = suffix in _BITMAPS
    image = _as_scalar_volume(image, path, is_2d)
    scan = Scan.from_sitk(image, modality="OT", path=path, meta={"format": _FORMAT_NAMES.get(suffix, suffix)})
    check_finite(scan.array, path)
    if is_2d:
        scan.meta["is_2d"] = True
        scan.modality = modality or "OT"
    else:
        scan.modality = modality or guess_modality(scan.array)
        scan.meta["modality_source"] = "hint" if modality else "heuristic"
    return scan


_FORMAT_NAMES = {
    ".nii": "NIfTI",
    ".nii.gz": "NIfTI",
    ".nrrd": "NRRD",
    ".nhdr": "NRRD",
    ".mha": "MetaImage",
    ".mhd": "MetaImage",
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}


def suffix_of(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def guess_modality(array: np.ndarray) -> str:
    """CT when the volume goes below -500 (air in HU), else MR. See the module docstring."""
    return "CT" if array.size and float(np.min(array)) < -500 else "MR"


def check_finite(array: np.ndarray, path: Path | None) -> None:
    if np.issubdtype(array.dtype, np.floating):
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise ScanError(f"contains {bad} NaN or infinite voxels", path)


def _check_file(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ScanError(f"cannot access file ({exc.strerror})", path) from None
    if size == 0:
        raise ScanError("file is empty (0 bytes)", path)
    if not os.access(path, os.R_OK):
        raise ScanError("file is not readable (permission denied)", path)
    if path.name.lower().endswith(".gz"):
        with open(path, "rb") as fh:
            magic = fh.read(2)
        if magic != b"\x1f\x8b":
            raise ScanError("not a gzip file although named .gz (wrong extension or not an image)", path)


def _looks_like_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def itk_message(exc: BaseException) -> str:
    """The useful one-line part of an ITK exception text."""
    text = str(exc)
    if "Unable to determine ImageIO reader" in text:
        return "the content is not an image format SimpleITK recognises"
    for line in text.splitlines():
        line = line.strip()
        if line.lower().startswith(("description:", "itk::error", "itk::exceptionobject")):
            tail = line.split(":", 1)[1].strip() if line.lower().startswith("description:") else ""
            if tail:
                return tail
    # ITK appends errno's text, which is often a stale "No such file or directory": not the problem
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "No such file or directory" not in ln]
    return lines[-1] if lines else "unreadable"


def read_image_information(path: Path) -> sitk.ImageFileReader:
    """Header only (no pixel data): size, spacing, dimension, pixel type."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with quiet_native_stderr():
            reader.ReadImageInformation()
    except RuntimeError as exc:
        damage = gzip_problem(path)
        if damage:
            raise ScanError(damage, path) from None
        raise ScanError(f"not a readable image ({itk_message(exc)})", path) from None
    return reader


def check_voxel_limit(size: tuple[int, ...], limit: int, path: Path | None) -> None:
    count = int(np.prod([int(s) for s in size], dtype=np.int64))
    if count > limit:
        raise ScanError(
            f"image has {count:,} voxels ({' x '.join(str(s) for s in size)}), above the limit of {limit:,}; "
            "crop or downsample it first (or raise LORKD_MAX_VOXELS)",
            path,
        )


def read_image(path: Path, max_voxels: int) -> sitk.Image:
    """Read a single image file with the header-first memory guard; ScanError on any failure."""
    reader = read_image_information(path)
    dim = reader.GetDimension()
    size = reader.GetSize()
    if dim >= 4 and any(s > 1 for s in size[3:]):
        raise ScanError(f"4D images are not supported (size {' x '.join(map(str, size))})", path)
    check_voxel_limit(size, max_voxels, path)
    if suffix_of(path) in _NIFTI:
        # ITK's NIfTI reader silently zero-fills a short file and turns NaN into 0: check the raw bytes
        check_nifti_payload(path)
    try:
        with quiet_native_stderr():
            image = reader.Execute()
    except RuntimeError as exc:
        damage = gzip_problem(path)
        if damage:
            raise ScanError(damage, path) from None
        raise ScanError(f"file is corrupt, pixel data cannot be read ({itk_message(exc)})", path) from None
    return image


def _as_scalar_volume(image: sitk.Image, path: Path, is_2d: bool) -> sitk.Image:
    dim = image.GetDimension()
    if dim == 4:  # a trailing singleton 4th axis (passed the 4D check)
        size = list(image.GetSize())
        image = sitk.Extract(image, [*size[:3], 0], [0, 0, 0, 0])
        dim = 3
    if image.GetNumberOfComponentsPerPixel() > 1:
        if not is_2d:
            raise ScanError(
                f"images with {image.GetNumberOfComponentsPerPixel()} components per voxel are not supported",
                path,
            )
        image = _to_gray(image)
    if dim == 2:
        image = sitk.JoinSeries(image)
    elif dim != 3:
        raise ScanError(f"{dim}D images are not supported", path)
    return image


def _to_gray(image: sitk.Image) -> sitk.Image:
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    channels = array.shape[-1]
    if channels >= 3:  # ITU-R BT.601 luma, as PIL's "L" conversion; alpha ignored
        gray = array[..., 0] * 0.299 + array[..., 1] * 0.587 + array[..., 2] * 0.114
    else:
        gray = array[..., 0]
    out = sitk.GetImageFromArray(gray)
    out.CopyInformation(sitk.VectorIndexSelectionCast(image, 0))
    return out


# ----------------------------------------------------------------------------------------------- labels


def load_label_map(path: str | Path, like: Scan | None = None) -> LabelMap:
    """Load an integer label map. With ``like``, it must lie on the scan's grid.

    A label map that covers exactly the scan's voxels but with axes stored flipped or permuted (as
    nibabel-written NIfTI often are) is reordered onto the scan's grid without interpolation; any
    other grid difference (size, spacing, origin, direction beyond 1e-4) raises LabelError.
    Non-integer values, negative values and values above 32767 raise LabelError too.
    """
    path = Path(path)
    if not path.exists():
        raise LabelError("label map does not exist", path)
    try:
        if path.is_dir():
            raise ScanError("is a folder, expected a label map file", path)
        _check_file(path)
        image = read_image(path, max_voxels_default())
        image = _as_scalar_volume(image, path, is_2d=suffix_of(path) in _BITMAPS)
    except ScanError as exc:
        raise LabelError(exc.problem, path) from None
    array = sitk.GetArrayFromImage(image)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise LabelError("label map contains NaN or infinite values", path)
        if not np.array_equal(array, np.round(array)):
            raise LabelError(
                "label map holds non-integer values (is it an image or a probability map?)", path
            )
    if array.size and (array.min() < 0 or array.max() > np.iinfo(np.int16).max):
        raise LabelError(f"label values must lie in 0..32767, found {array.min()}..{array.max()}", path)
    geometry = Geometry.of(image)
    label = LabelMap(
        array.astype(np.int16, copy=False),
        geometry.spacing,
        geometry.origin,
        geometry.direction,
        path=path,
        names=_sidecar_names(path),
    )
    if like is not None:
        label = conform_label_map(label, like.geometry, path)
    return label


def conform_label_map(label: LabelMap, target: Geometry, path: Path | None = None) -> LabelMap:
    """Return ``label`` on ``target``'s grid; exact reordering only, LabelError for any real mismatch."""
    source = label.geometry
    if source.matches(target):
        return label
    reordered = _reorder_onto(label.array, source, target)
    if reordered is None:
        raise LabelError(
            "label map grid differs from the scan grid (label vs scan: "
            + "; ".join(source.differences(target))
            + ")",
            path or label.path,
        )
    meta = dict(label.meta, reoriented_from=orientation_code(source.direction))
    return LabelMap(reordered, target.spacing, target.origin, target.direction, label.path, label.names, meta)


def _reorder_onto(array: np.ndarray, source: Geometry, target: Geometry) -> np.ndarray | None:
    """Permute/flip ``array`` (on ``source``) onto ``target`` when both grids hold the same voxel centres."""
    s_dir, t_dir = source.matrix, target.matrix
    # index axis k of the source, expressed in target index units: must be +-1 along one target axis
    mapping = np.linalg.solve(t_dir * np.asarray(target.spacing), s_dir * np.asarray(source.spacing))
    rounded = np.round(mapping)
    if not np.allclose(mapping, rounded, atol=1e-3) or not np.allclose(np.abs(rounded).sum(axis=0), 1):
        return None
    if not np.allclose(np.abs(rounded).sum(axis=1), 1):
        return None
    # target index of source voxel 0
    offset = np.linalg.solve(
        t_dir * np.asarray(target.spacing), np.asarray(source.origin) - np.asarray(target.origin)
    )
    if not np.allclose(offset, np.round(offset), atol=1e-3):
        return None
    perm = [int(np.argmax(np.abs(rounded[:, k]))) for k in range(3)]  # source axis k -> target axis perm[k]
    signs = [int(rounded[perm[k], k]) for k in range(3)]
    for k in range(3):
        n = source.size[k]
        start = int(round(offset[perm[k]]))
        end = start + signs[k] * (n - 1)
        if target.size[perm[k]] != n or min(start, end) != 0 or max(start, end) != n - 1:
            return None
    # numpy axes are reversed index axes: numpy axis a <-> index axis 2 - a
    out = array
    for k in range(3):
        if signs[k] < 0:
            out = np.flip(out, axis=2 - k)
    # target numpy axis b takes source index axis k with perm[k] == 2 - b
    order = [2 - perm.index(2 - b) for b in range(3)]
    return np.ascontiguousarray(np.transpose(out, order))


def sidecar_path(label_path: str | Path) -> Path:
    """``seg.nii.gz`` -> ``seg.json`` (also for .nii, .nrrd, .mha, .mhd)."""
    p = Path(label_path)
    name = p.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return p.with_name(name[: -len(suffix)] + ".json")
    return p.with_suffix(".json")


def _sidecar_names(path: Path) -> dict[int, str]:
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return {}
    try:
        raw = json.loads(sidecar.read_text(encoding="utf-8"))
        return {int(k): str(v) for k, v in raw.get("labels", {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _fmt(values: Any) -> str:
    vals = list(values)
    if all(isinstance(v, (int, np.integer)) for v in vals):
        return "x".join(str(int(v)) for v in vals)
    return "(" + ", ".join(f"{float(v):.4g}" for v in vals) + ")"


_NIFTI_FLOATS = {16: "f4", 64: "f8"}


def check_nifti_payload(path: Path) -> None:
    """Raise ScanError when a NIfTI file holds fewer voxel bytes than its header declares, or NaN/Inf."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(540)
            if len(head) < 348:
                raise ScanError("file is truncated (incomplete NIfTI header)", path)
            endian = "<" if struct.unpack("<i", head[:4])[0] in (348, 540) else ">"
            sizeof_hdr = struct.unpack(endian + "i", head[:4])[0]
            if sizeof_hdr == 348:
                dims = struct.unpack(endian + "8h", head[40:56])
                datatype, bitpix = struct.unpack(endian + "2h", head[70:74])
                vox_offset = int(struct.unpack(endian + "f", head[108:112])[0])
                pixdim = struct.unpack(endian + "8f", head[76:108])
                sform_code = struct.unpack(endian + "h", head[254:256])[0]
                # without an sform, the spacing is pixdim; ITK quietly turns a zero there into 1 mm
                for axis in range(1, 1 + max(0, min(3, int(dims[0])))):
                    if sform_code <= 0 and not (np.isfinite(pixdim[axis]) and pixdim[axis] != 0):
                        raise ScanError(f"invalid voxel spacing {pixdim[axis]:g} in the header (pixdim[{axis}]); "
                                        "the physical size of the image is unknown", path)
            elif sizeof_hdr == 540 and len(head) == 540:
                datatype, bitpix = struct.unpack(endian + "2h", head[12:16])
                dims = struct.unpack(endian + "8q", head[16:80])
                vox_offset = int(struct.unpack(endian + "q", head[168:176])[0])
            else:
                raise ScanError("not a NIfTI file (bad header size)", path)
            ndim = max(0, min(7, int(dims[0])))
            nvox = int(np.prod([max(1, int(d)) for d in dims[1 : ndim + 1]], dtype=np.int64))
            expected = nvox * max(1, int(bitpix)) // 8
            skip = max(0, vox_offset - len(head))
            pending = head[vox_offset:] if vox_offset <= len(head) else b""
            while skip:
                chunk = fh.read(min(skip, 1 << 20))
                if not chunk:
                    break
                skip -= len(chunk)
            dtype = np.dtype(endian + _NIFTI_FLOATS[datatype]) if datatype in _NIFTI_FLOATS else None
            got, bad, carry = 0, 0, b""
            while got < expected:
                chunk = pending or fh.read(1 << 22)
                pending = b""
                if not chunk:
                    break
                chunk = chunk[: expected - got]
                got += len(chunk)
                if dtype is not None:
                    data = carry + chunk
                    usable = len(data) - len(data) % dtype.itemsize
                    values = np.frombuffer(data[:usable], dtype=dtype)
                    bad += int(values.size - np.count_nonzero(np.isfinite(values)))
                    carry = data[usable:]
    except EOFError:
        raise ScanError("file is truncated (the compressed data ends early)", path) from None
    except (OSError, zlib.error) as exc:
        raise ScanError(f"file is corrupt ({exc.__class__.__name__}: {exc})", path) from None
    except struct.error:
        raise ScanError("file is truncated (incomplete NIfTI header)", path) from None
    if got < expected:
        raise ScanError(f"file is truncated: {got:,} of {expected:,} bytes of voxel data present", path)
    if bad:
        raise ScanError(f"contains {bad} NaN or infinite voxels", path)


_quiet_lock = threading.Lock()
_quiet_state: dict[str, Any] = {"depth": 0, "saved": None, "sink": None}


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Keep ITK/GDCM/MetaIO C++ chatter off the terminal; it goes to the debug log instead.

    Our own errors carry the useful part, and the CLI promises one line on stderr. File descriptor 2
    is process-wide, so nested or concurrent users share one redirection (the last one out restores it).
    """
    try:
        fd = sys.__stderr__.fileno() if sys.__stderr__ is not None else 2
    except (AttributeError, OSError, ValueError):
        fd = 2
    with _quiet_lock:
        if _quiet_state["depth"] == 0:
            try:
                sys.stderr.flush()
                sink = tempfile.TemporaryFile()
                _quiet_state["saved"] = os.dup(fd)
                os.dup2(sink.fileno(), fd)
                _quiet_state["sink"] = sink
            except OSError:
                _quiet_state["saved"] = None
        _quiet_state["depth"] += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_state["depth"] -= 1
            if _quiet_state["depth"] == 0 and _quiet_state["saved"] is not None:
                os.dup2(_quiet_state["saved"], fd)
                os.close(_quiet_state["saved"])
                sink = _quiet_state["sink"]
                sink.seek(0)
                text = sink.read().decode("utf-8", "replace").strip()
                sink.close()
                _quiet_state.update(saved=None, sink=None)
                if text:
                    _log.debug("native library output: %s", text)


def read_gzip_ok(path: Path) -> bool:
    """True when a .gz file decompresses to the end with a good checksum."""
    return gzip_problem(path) is None


def gzip_problem(path: Path) -> str | None:
    """For a ``.gz`` file that does not decompress to the end: whether it is truncated or corrupt; else None."""
    if not path.name.lower().endswith(".gz"):
        return None
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(1 << 20):
                pass
    except EOFError:
        return "file is truncated (the compressed data ends early)"
    except (OSError, zlib.error) as exc:  # gzip.BadGzipFile (bad CRC, bad header) is an OSError
        return f"file is corrupt (the compressed data is damaged: {exc})"
    return None
