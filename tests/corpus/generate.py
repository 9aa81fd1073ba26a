"""Write the robustness corpus: small bad or unusual scans, label maps and model folders.

``build_corpus(dir)`` writes every entry below ``dir`` (a few hundred kB in all, well under a second
apart from the tiny model) and returns one :class:`CorpusEntry` per entry with the error the loaders
must raise (``None``: it must load) and a phrase of the one-line message. docs/robustness.md lists them.

Kinds and the loaders that try them (tests/test_robustness_corpus.py):

- ``scan``: ``lorkd_core.io.load_scan``, ``lorkd info PATH`` and the app's ``Backend.load``.
- ``label``: ``load_label_map(path, like=scan)`` on ``entry.scan``, the app's ``Backend.load_label_map`` and
  ``validate_items`` (which also reports label values the item does not declare).
- ``model``: ``read_card`` + ``load_model`` on the folder, ``lorkd segment --model DIR`` on ``entry.scan``
  and the app's ``Backend.list_models`` / ``run_model``.
"""

from __future__ import annotations

import gzip
import json
import pickle
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lorkd_core.errors import LabelError, ModelError, ScanError

SHAPE = (4, 5, 6)  # (z, y, x) of the small volumes
LABELS = {1: "liver", 2: "spleen"}
NON_ASCII_DIR = "Überweisung_患者"


@dataclass(frozen=True)
class CorpusEntry:
    """One corpus input and what every loader must do with it.

    ``expected_error`` is the LorkdError subclass the loaders raise, or None when the input must load;
    ``expected_phrase`` is part of the one-line message (for a label that loads, of the validation
    problem). ``scan`` is the scan a label map must fit or a model segments; ``checks`` holds facts a
    successful load must show (e.g. ``{"shape": (1, 5, 6)}``).
    """

    name: str
    path: Path
    kind: str  # scan | label | model
    expected_error: type[Exception] | None
    expected_phrase: str
    scan: Path | None = None
    checks: dict = field(default_factory=dict, compare=False)
    note: str = ""


def permissions_enforced(folder: Path) -> bool:
    """Whether a chmod 000 file in ``folder`` is really unreadable (not for root, nor on some file systems)."""
    probe = folder / ".perm_probe"
    probe.write_bytes(b"x")
    try:
        probe.chmod(0)
        try:
            with open(probe, "rb"):
                return False
        except PermissionError:
            return True
    finally:
        probe.chmod(0o600)
        probe.unlink()


# ------------------------------------------------------------------------------------------- writers


def ct_volume(shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """Air (-1000 HU) around a block of soft tissue (40 HU): loads as CT by the modality heuristic."""
    array = np.full(shape, -1000.0, np.float32)
    z, y, x = shape
    array[z // 4 : max(z // 4 + 1, 3 * z // 4), 1 : max(2, y - 1), 1 : max(2, x - 1)] = 40.0
    return array


def write_image(path: Path, array: np.ndarray, spacing=(1.5, 1.5, 3.0), origin=(0.0, 0.0, 0.0),
                direction=None) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(s) for s in spacing][: image.GetDimension()])
    image.SetOrigin([float(s) for s in origin][: image.GetDimension()])
    if direction is not None:
        image.SetDirection([float(d) for d in direction])
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=path.name.endswith(".gz"))
    return path


def nifti_bytes(data: np.ndarray | bytes, dims: tuple[int, ...], pixdim: tuple[float, ...] = (1.0, 1.0, 1.0),
                datatype: int = 16, bitpix: int = 32) -> bytes:
    """A NIfTI-1 single file (header + data) written by hand, so the header may say anything.

    ``dims`` is (x, y, z, ...); ``pixdim`` the spacing per axis (zero or negative allowed). ``data`` may
    be shorter than the header claims (the huge-dimension entry). qform code 1, identity rotation.
    """
    header = bytearray(348)
    struct.pack_into("<i", header, 0, 348)
    dim = [len(dims), *dims] + [1] * (7 - len(dims))
    struct.pack_into("<8h", header, 40, *dim)
    struct.pack_into("<2h", header, 70, datatype, bitpix)
    pix = [1.0, *pixdim] + [1.0] * (7 - len(pixdim))
    struct.pack_into("<8f", header, 76, *pix)
    struct.pack_into("<f", header, 108, 352.0)  # vox_offset
    struct.pack_into("<f", header, 112, 1.0)  # scl_slope
    header[123] = 2  # xyzt_units: mm
    struct.pack_into("<2h", header, 252, 1, 0)  # qform_code, sform_code
    header[344:348] = b"n+1\0"
    payload = data if isinstance(data, bytes) else np.ascontiguousarray(data).tobytes()
    return bytes(header) + b"\0\0\0\0" + payload


def write_gz(path: Path, raw: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw, compresslevel=6, mtime=0))
    return path


def write_dicom_series(folder: Path, n: int = 5, *, series_uid: str | None = None, study_uid: str | None = None,
                       z0: float = 0.0, dz: float = 2.0, rows: int = 8, cols: int = 8, skip: tuple[int, ...] = (),
                       prefix: str = "slice") -> list[Path]:
    """A small axial CT series (uncompressed, explicit VR little endian); ``skip`` leaves slices out."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = generate_uid()
    paths = []
    for k in range(n):
        if k in skip:
            continue
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "CT"
        ds.PatientName = "Robustness^Corpus"
        ds.PatientID = "CORPUS-0001"
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, z0 + k * dz]
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = dz
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        pixels = np.full((rows, cols), 0, np.int16)
        pixels[2:-2, 2:-2] = 1064 + 10 * k  # 40 HU and up
        ds.PixelData = pixels.tobytes()
        path = folder / f"{prefix}{k:03d}.dcm"
        ds.save_as(str(path), enforce_file_format=True)
        paths.append(path)
    return paths


def _write_mha(path: Path, array: np.ndarray, spacing: str) -> Path:
    """A MetaImage with a hand-written header (SimpleITK refuses to write zero spacing)."""
    z, y, x = array.shape
    header = (f"ObjectType = Image\nNDims = 3\nDimSize = {x} {y} {z}\nElementSpacing = {spacing}\n"
              "ElementType = MET_FLOAT\nElementDataFile = LOCAL\n")
    path.write_bytes(header.encode() + np.ascontiguousarray(array, np.float32).tobytes())
    return path


# ----------------------------------------------------------------------------------------------- corpus


def build_corpus(root: str | Path, *, models: bool = True) -> list[CorpusEntry]:
    """Write the corpus below ``root`` and return its entries (``models=False``: no torch needed)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    entries = _scan_entries(root / "scans") + _label_entries(root / "labels")
    if models:
        entries += _model_entries(root / "models", root / "labels" / "scan.nii.gz")
    return entries


def _scan_entries(d: Path) -> list[CorpusEntry]:
    d.mkdir(parents=True, exist_ok=True)
    out: list[CorpusEntry] = []

    def add(name, path, error, phrase, **kw):
        out.append(CorpusEntry(name, Path(path), "scan", error, phrase, **kw))

    good = write_image(d / "good.nii.gz", ct_volume())
    data = good.read_bytes()
    add("good_control", good, None, "", checks={"shape": SHAPE, "modality": "CT"})

    (d / "truncated.nii.gz").write_bytes(data[: len(data) // 2])
    add("nifti_truncated_gz", d / "truncated.nii.gz", ScanError, "truncated")

    raw = nifti_bytes(ct_volume(), SHAPE[::-1])
    (d / "truncated.nii").write_bytes(raw[: 352 + 40])
    add("nifti_truncated_raw", d / "truncated.nii", ScanError, "truncated")

    corrupt = bytearray(write_gz(d / "corrupt_src.nii.gz", raw).read_bytes())
    (d / "corrupt_src.nii.gz").unlink()
    for i in range(20, len(corrupt) - 12, 7):  # keep the gzip magic and header, garble the deflate stream
        corrupt[i] ^= 0x5A
    (d / "corrupt_gzip.nii.gz").write_bytes(bytes(corrupt))
    add("nifti_corrupt_gzip", d / "corrupt_gzip.nii.gz", ScanError, "file is corrupt")

    crc = bytearray(gzip.compress(raw, mtime=0))
    crc[-8] ^= 0xFF  # only the CRC is wrong: every byte decompresses
    (d / "bad_crc.nii.gz").write_bytes(bytes(crc))
    add("nifti_gzip_bad_crc", d / "bad_crc.nii.gz", ScanError, "CRC check failed")

    (d / "text.nii.gz").write_text("this is not an image\n")
    add("text_named_nii_gz", d / "text.nii.gz", ScanError, "not a gzip file")

    (d / "zero.nii.gz").write_bytes(b"")
    add("zero_bytes", d / "zero.nii.gz", ScanError, "0 bytes")

    (d / "nifti.png").write_bytes(raw)
    add("nifti_named_png", d / "nifti.png", ScanError, "not a readable image")

    png = write_image(d / "png_src.png", (np.arange(30, dtype=np.uint8).reshape(5, 6) * 8), spacing=(1, 1))
    (d / "png.nii.gz").write_bytes(png.read_bytes())
    png.rename(d / "bitmap.png")
    add("png_named_nii_gz", d / "png.nii.gz", ScanError, "not a gzip file")
    add("png_2d", d / "bitmap.png", None, "", checks={"shape": (1, 5, 6), "modality": "OT", "is_2d": True})

    flat = ct_volume((1, 5, 6))[0]
    write_gz(d / "two_d.nii.gz", nifti_bytes(flat, (6, 5)))
    add("nifti_2d", d / "two_d.nii.gz", None, "", checks={"shape": (1, 5, 6)},
        note="a 2D NIfTI loads as a one-slice volume; segmenting it is tried in the model tests")

    four = np.zeros((3, *SHAPE), np.float32)
    write_gz(d / "four_d.nii.gz", nifti_bytes(four, (6, 5, 4, 3)))
    add("nifti_4d", d / "four_d.nii.gz", ScanError, "4D images are not supported")

    write_gz(d / "four_d_singleton.nii.gz", nifti_bytes(ct_volume(), (6, 5, 4, 1)))
    add("nifti_4d_singleton", d / "four_d_singleton.nii.gz", None, "", checks={"shape": SHAPE},
        note="a 4th axis of length 1 is dropped")

    rgb = np.zeros((*SHAPE, 3), np.uint8)
    write_gz(d / "rgb.nii.gz", nifti_bytes(rgb, SHAPE[::-1], datatype=128, bitpix=24))
    add("nifti_rgb", d / "rgb.nii.gz", ScanError, "3 components per voxel are not supported")

    nan = ct_volume()
    nan[1, 2, 3] = np.nan
    write_gz(d / "nan.nii.gz", nifti_bytes(nan, SHAPE[::-1]))
    add("nifti_nan", d / "nan.nii.gz", ScanError, "1 NaN or infinite voxels")

    inf = ct_volume()
    inf[0, 0, 0], inf[3, 4, 5] = np.inf, -np.inf
    write_image(d / "inf.nrrd", inf)
    add("nrrd_inf", d / "inf.nrrd", ScanError, "2 NaN or infinite voxels")

    write_gz(d / "spacing_tiny.nii.gz", nifti_bytes(ct_volume(), SHAPE[::-1], pixdim=(1e-6, 1e-6, 1e-6)))
    add("spacing_1e-6mm", d / "spacing_tiny.nii.gz", None, "", checks={"spacing": (1e-6, 1e-6, 1e-6)})
    write_gz(d / "spacing_huge.nii.gz", nifti_bytes(ct_volume(), SHAPE[::-1], pixdim=(1e6, 1e6, 1e6)))
    add("spacing_1e6mm", d / "spacing_huge.nii.gz", None, "", checks={"spacing": (1e6, 1e6, 1e6)})
    write_gz(d / "spacing_zero.nii.gz", nifti_bytes(ct_volume(), SHAPE[::-1], pixdim=(1.0, 0.0, 2.0)))
    add("spacing_zero_nifti", d / "spacing_zero.nii.gz", ScanError, "invalid voxel spacing 0")
    write_gz(d / "spacing_negative.nii.gz", nifti_bytes(ct_volume(), SHAPE[::-1], pixdim=(1.0, -1.0, 2.0)))
    add("spacing_negative_nifti", d / "spacing_negative.nii.gz", None, "", checks={"spacing": (1.0, 1.0, 2.0)},
        note="NIfTI readers take |pixdim| (flips live in the qform): loads with 1 mm")
    _write_mha(d / "spacing_zero.mha", ct_volume(), "1 0 2")
    add("spacing_zero_mha", d / "spacing_zero.mha", ScanError, "spacing")
    _write_mha(d / "spacing_negative.mha", ct_volume(), "1 -1 2")
    add("spacing_negative_mha", d / "spacing_negative.mha", None, "",
        checks={"spacing": (1.0, 1.0, 2.0), "direction": (1, 0, 0, 0, -1, 0, 0, 0, 1)},
        note="ITK turns a negative MetaImage spacing into a flipped axis")

    write_image(d / "one_slice.mha", ct_volume((1, 5, 6)))
    add("one_slice", d / "one_slice.mha", None, "", checks={"shape": (1, 5, 6)})

    write_gz(d / "huge_header.nii.gz", nifti_bytes(b"\0" * 64, (4000, 4000, 4000), datatype=2, bitpix=8))
    add("huge_dimensions", d / "huge_header.nii.gz", ScanError, "above the limit")

    non_ascii = write_image(d / NON_ASCII_DIR / "scan.nii.gz", ct_volume())
    add("non_ascii_path", non_ascii, None, "", checks={"shape": SHAPE, "modality": "CT"})

    locked = write_image(d / "locked.nii.gz", ct_volume())
    locked.chmod(0)
    if permissions_enforced(d):
        add("unreadable_chmod_000", locked, ScanError, "permission denied")
    else:
        add("unreadable_chmod_000", locked, None, "", checks={"shape": SHAPE},
            note="permissions are not enforced here (root): the file loads")

    add("missing_path", d / "does_not_exist.nii.gz", ScanError, "does not exist")

    (d / "unsupported.txt").write_text("hello\n")
    add("unsupported_extension", d / "unsupported.txt", ScanError, "unsupported file type")

    other = d / "not_dicom"
    other.mkdir()
    (other / "notes.txt").write_text("not a DICOM file\n")
    (other / "IM0001").write_bytes(b"\0" * 300)
    shutil.copy(d / "bitmap.png", other / "picture.png")
    add("folder_without_dicom", other, ScanError, "no DICOM series")

    (d / "empty").mkdir()
    add("empty_folder", d / "empty", ScanError, "empty folder")

    series = write_dicom_series(d / "dicom_good")
    add("dicom_series_good", d / "dicom_good", None, "", checks={"shape": (5, 8, 8), "modality": "CT"})

    one = series[2].read_bytes()
    (d / "truncated.dcm").write_bytes(one[: len(one) - 40])
    add("dicom_truncated_file", d / "truncated.dcm", ScanError, "file is truncated")

    trunc_series = d / "dicom_truncated_series"
    shutil.copytree(d / "dicom_good", trunc_series)
    target = trunc_series / series[2].name
    target.write_bytes(one[: len(one) - 40])
    add("dicom_series_truncated_slice", trunc_series, ScanError, "cannot be read")

    last_series = d / "dicom_truncated_last_slice"
    shutil.copytree(d / "dicom_good", last_series)
    last = last_series / series[-1].name
    last.write_bytes(last.read_bytes()[:-40])
    add("dicom_series_truncated_last_slice", last_series, ScanError, "cannot be read",
        note="GDCM skips the damaged file silently; without a check the volume would lose its last slice")

    write_dicom_series(d / "dicom_missing_slice", skip=(2,))
    add("dicom_missing_slice", d / "dicom_missing_slice", ScanError, "unevenly spaced")

    uid = "1.2.826.0.1.3680043.8.498.4242"
    write_dicom_series(d / "dicom_duplicates", 4, series_uid=uid, prefix="a")
    write_dicom_series(d / "dicom_duplicates", 4, series_uid=uid, prefix="b")
    add("dicom_duplicate_positions", d / "dicom_duplicates", ScanError, "share a position")

    write_dicom_series(d / "dicom_mixed", 5, prefix="big")
    write_dicom_series(d / "dicom_mixed", 3, prefix="small", z0=100.0)
    add("dicom_mixed_series", d / "dicom_mixed", None, "",
        checks={"shape": (5, 8, 8), "series_in_folder": 2},
        note="two series in one folder: the one with most slices loads (--series-uid picks another)")
    return out


def _label_entries(d: Path) -> list[CorpusEntry]:
    d.mkdir(parents=True, exist_ok=True)
    scan = write_image(d / "scan.nii.gz", ct_volume())
    out: list[CorpusEntry] = []

    def label(name: str, array: np.ndarray, names: dict[int, str] | None = LABELS, **geometry) -> Path:
        path = write_image(d / f"{name}.nii.gz", array, **geometry)
        if names is not None:
            (d / f"{name}.json").write_text(json.dumps({"labels": {str(k): v for k, v in names.items()}}))
        return path

    def add(name, path, error, phrase, **kw):
        out.append(CorpusEntry(name, path, "label", error, phrase, scan=scan, **kw))

    good = np.zeros(SHAPE, np.uint8)
    good[1:3, 1:4, 1:3], good[1:3, 1:4, 3:5] = 1, 2
    add("label_good_control", label("good", good), None, "", checks={"values": [1, 2]})

    unknown = good.copy()
    unknown[3, 4, 5] = 7
    add("label_unknown_values", label("unknown_values", unknown), None, "unknown label value(s) [7]",
        checks={"values": [1, 2, 7]}, note="loads (values kept); validate_items reports the undeclared value")

    add("label_other_grid", label("other_grid", np.zeros((4, 5, 7), np.uint8)), LabelError,
        "label vs scan: size 7x5x4 vs 6x5x4")
    add("label_other_spacing", label("other_spacing", good, spacing=(1.0, 1.0, 1.0)), LabelError,
        "label vs scan: spacing (1, 1, 1) vs (1.5, 1.5, 3)")

    fractional = good.astype(np.float32) * 0.5
    add("label_fractional", label("fractional", fractional), LabelError, "non-integer values")

    negative = good.astype(np.int16)
    negative[0, 0, 0] = -3
    add("label_negative", label("negative", negative), LabelError, "0..32767")

    data = (d / "good.nii.gz").read_bytes()
    (d / "truncated.nii.gz").write_bytes(data[: len(data) // 2])
    add("label_truncated", d / "truncated.nii.gz", LabelError, "truncated")
    return out


# ------------------------------------------------------------------------------------------------ models

TEACHER_ARCH = {"name": "monai.UNet", "model": "plain",
                "kwargs": {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [4, 8],
                           "strides": [2], "num_res_units": 0}, "heads": {}}


class PickleCanary:
    """Unpickling this creates ``marker``: proof that a loader unpickled a file it should have refused."""

    def __init__(self, marker: Path) -> None:
        self.marker = Path(marker)

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def write_tiny_model(folder: Path) -> Path:
    """A valid teacher model folder (3 channels: background, liver, spleen; ~1 k parameters)."""
    import torch

    from lorkd_core.engine.model_card import Architecture, ModelCard
    from lorkd_core.engine.model_io import save_model_folder
    from lorkd_core.engine.networks import build_from_architecture

    torch.manual_seed(0)
    model = build_from_architecture(TEACHER_ARCH)
    arch = dict(TEACHER_ARCH)
    card = ModelCard(kind="teacher", task="segmentation",
                     architecture=Architecture(arch.pop("name"), arch.pop("kwargs"), arch.pop("heads"), arch),
                     regions=["abdomen"],
                     labels={"abdomen": dict(LABELS), "union": {0: "background", **LABELS}},
                     training={"data": "robustness corpus", "spacing": [3.0, 3.0, 3.0], "patch_size": [8, 8, 8]},
                     extra={"modality": "CT", "display_name": "corpus teacher"})
    save_model_folder(folder, model, card)
    return folder


def _rewrite_card(folder: Path, edit) -> None:
    card_file = folder / "card.json"
    card = json.loads(card_file.read_text())
    edit(card)
    card_file.write_text(json.dumps(card, indent=2))


def _resign(folder: Path) -> None:
    """Make the card's weights_sha256 match the (tampered) weights, so the weights' own checks are reached."""
    import hashlib

    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    _rewrite_card(folder, lambda card: card.update(weights_sha256=digest))


def _model_entries(d: Path, scan: Path) -> list[CorpusEntry]:
    from safetensors.torch import load_file, save_file

    good = write_tiny_model(d / "good")
    out: list[CorpusEntry] = []

    def variant(name: str) -> Path:
        folder = d / name
        shutil.copytree(good, folder)
        return folder

    def add(name, path, error, phrase, **kw):
        out.append(CorpusEntry(name, path, "model", error, phrase, scan=scan, **kw))

    add("model_good_control", good, None, "", checks={"kind": "teacher"})

    f = variant("card_invalid_json")
    (f / "card.json").write_text('{"format": "lorkd-model/1", "kind": "teacher",,}')
    add("card_invalid_json", f, ModelError, "not valid JSON")

    f = variant("card_not_utf8")
    (f / "card.json").write_bytes(b'{"format": "\xff\xfe lorkd"}')
    add("card_not_utf8", f, ModelError, "not UTF-8")

    f = variant("card_wrong_format")
    _rewrite_card(f, lambda c: c.update(format="lorkd-model/9"))
    add("card_wrong_format_version", f, ModelError, "field 'format'")

    f = variant("card_missing_fields")
    _rewrite_card(f, lambda c: c.pop("architecture"))
    add("card_missing_field", f, ModelError, "field 'architecture'")

    f = variant("card_unknown_region")
    _rewrite_card(f, lambda c: c.update(regions=["abdomen", "tail"]))
    add("card_unknown_region", f, ModelError, "unknown region")

    f = variant("card_wrong_shapes")
    _rewrite_card(f, lambda c: c["architecture"]["kwargs"].update(channels=[4, 16]))
    add("card_shapes_mismatch", f, ModelError, "has shape")

    f = variant("card_missing")
    (f / "card.json").unlink()
    add("card_missing", f, ModelError, "card.json")

    f = variant("weights_missing")
    (f / "model.safetensors").unlink()
    add("weights_missing", f, ModelError, "model.safetensors is missing")

    weights = (good / "model.safetensors").read_bytes()
    f = variant("weights_truncated")
    (f / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    add("weights_truncated", f, ModelError, "weights_sha256")

    f = variant("weights_truncated_unsigned")
    (f / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    _rewrite_card(f, lambda c: c.pop("weights_sha256", None))
    add("weights_truncated_unsigned", f, ModelError, "not a readable safetensors file")

    state = load_file(str(good / "model.safetensors"))
    f = variant("weights_extra_tensor")
    save_file({**state, "extra.weight": state[next(iter(state))].clone()}, str(f / "model.safetensors"))
    _resign(f)
    add("weights_extra_tensor", f, ModelError, "unexpected tensors 'extra.weight'")

    f = variant("weights_missing_tensor")
    dropped = sorted(state)[-1]
    save_file({k: v for k, v in state.items() if k != dropped}, str(f / "model.safetensors"))
    _resign(f)
    add("weights_missing_tensor", f, ModelError, f"missing tensors '{dropped}'")

    f = variant("weights_pickle")
    canary = d / "UNPICKLED"
    (f / "model.safetensors").write_bytes(pickle.dumps({"weight": PickleCanary(canary)}, protocol=4))
    _resign(f)
    add("weights_pickle", f, ModelError, "not a readable safetensors file", checks={"canary": canary},
        note="a pickle named model.safetensors: refused, never unpickled (the canary file must not appear)")

    f = variant("weights_pickle_unsigned")
    (f / "model.safetensors").write_bytes(pickle.dumps({"weight": PickleCanary(canary)}, protocol=2))
    _rewrite_card(f, lambda c: c.pop("weights_sha256", None))
    add("weights_pickle_unsigned", f, ModelError, "not a readable safetensors file", checks={"canary": canary})
    return out
