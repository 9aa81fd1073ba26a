"""Loading scans and label maps: formats, modality, geometry, and every kind of bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from lorkd_core.errors import LabelError, ScanError
from lorkd_core.io import Geometry, load_label_map, load_scan


def _write(path, array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture()
def ct_volume():
    rng = np.random.default_rng(0)
    array = rng.normal(40, 10, size=(12, 14, 16)).astype(np.float32)
    array[:, :3] = -1000  # air
    return array


# ------------------------------------------------------------------------------------------ real data


@pytest.fixture(scope="module")
def real_ct(ct_dicom_dir):
    return load_scan(ct_dicom_dir)


@pytest.fixture(scope="module")
def ts_names(real_data_dir):
    raw = json.loads((real_data_dir / "totalsegmentator_v2_labels.json").read_text())
    return {v: int(k) for k, v in raw.items()}


def test_real_dicom_series_has_the_geometry_of_its_label_map(real_ct, ct_seg_path):
    assert real_ct.modality == "CT"
    assert real_ct.array.dtype == np.float32 and real_ct.array.shape == (20, 512, 512)
    raw = sitk.ReadImage(str(ct_seg_path))
    raw_geometry = Geometry.of(raw)
    # same grid of voxel centres: the NIfTI stores the y axis flipped (LAS), the series is LPS
    assert raw_geometry.size == real_ct.size
    np.testing.assert_allclose(raw_geometry.spacing, real_ct.spacing, atol=1e-4)
    corners = np.array([[i, j, k] for i in (0, 511) for j in (0, 511) for k in (0, 19)], dtype=float)
    a = np.sort(real_ct.geometry.index_to_physical(corners), axis=0)
    b = np.sort(raw_geometry.index_to_physical(corners), axis=0)
    np.testing.assert_allclose(a, b, atol=1e-3)
    label = load_label_map(ct_seg_path, like=real_ct)
    assert label.geometry.size == real_ct.geometry.size
    for name in ("spacing", "origin", "direction"):
        np.testing.assert_allclose(getattr(label, name), getattr(real_ct, name), atol=1e-4)
    assert label.meta["reoriented_from"] == "LAS"
    assert label.array.dtype == np.int16


def test_real_label_map_lands_on_the_right_anatomy(real_ct, ct_seg_path, ts_names):
    label = load_label_map(ct_seg_path, like=real_ct).array
    means = {
        name: float(real_ct.array[label == ts_names[name]].mean())
        for name in ("liver", "vertebrae_T12", "spleen")
    }
    assert 30 < means["liver"] < 90, means
    assert means["vertebrae_T12"] > 150, means
    assert 20 < means["spleen"] < 80, means


def test_real_ct_is_in_hounsfield_units(real_ct):
    # stored values are 0..2429 with RescaleIntercept -1024: outside the body is air at -1024 HU
    assert real_ct.array.min() == -1024
    assert real_ct.meta["rescale"] == {"slope": 1.0, "intercept": -1024.0}
    assert real_ct.meta["windows"][0] == {"width": 300.0, "level": 40.0, "name": "WINDOW1"}
    assert real_ct.orientation == "LPS"


def test_mni152_loads_as_mr_by_heuristic_and_by_hint(mni_t1_path):
    scan = load_scan(mni_t1_path)
    assert scan.modality == "MR" and scan.meta["modality_source"] == "heuristic"
    assert scan.size == (197, 233, 189) and scan.orientation == "RAS"
    hinted = load_scan(mni_t1_path, modality="MR")
    assert hinted.modality == "MR" and hinted.meta["modality_source"] == "hint"


# ------------------------------------------------------------------------------------------ formats


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"])
def test_volume_formats_keep_geometry(tmp_path, ct_volume, suffix):
    direction = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    path = _write(tmp_path / f"vol{suffix}", ct_volume, (0.7, 0.8, 2.5), (10.0, -20.0, 30.0), direction)
    scan = load_scan(path)
    np.testing.assert_allclose(scan.array, ct_volume, atol=1e-4)
    np.testing.assert_allclose(scan.spacing, (0.7, 0.8, 2.5), atol=1e-5)
    np.testing.assert_allclose(scan.origin, (10.0, -20.0, 30.0), atol=1e-4)
    np.testing.assert_allclose(scan.direction, direction, atol=1e-6)
    assert scan.modality == "CT" and scan.meta["modality_source"] == "heuristic"
    back = scan.to_sitk()
    assert back.GetSize() == (16, 14, 12) and np.allclose(back.GetDirection(), direction)


def test_png_loads_as_one_slice(tmp_path):
    rgb = np.zeros((20, 30, 3), dtype=np.uint8)
    rgb[5:10, 5:25] = (255, 255, 255)
    image = sitk.GetImageFromArray(rgb, isVector=True)
    sitk.WriteImage(image, str(tmp_path / "xray.png"))
    scan = load_scan(tmp_path / "xray.png")
    assert scan.array.shape == (1, 20, 30) and scan.meta["is_2d"]
    assert scan.modality == "OT"
    assert scan.array.max() == pytest.approx(255, abs=0.5) and scan.array.min() == 0
    assert load_scan(tmp_path / "xray.png", modality="XR").modality == "XR"


def test_modality_hint_is_validated(tmp_path, ct_volume):
    path = _write(tmp_path / "v.nii.gz", ct_volume)
    assert load_scan(path, modality="ct").modality == "CT"
    with pytest.raises(ScanError, match="unknown modality"):
        load_scan(path, modality="PET")


def test_memory_guard_refuses_before_reading(tmp_path, ct_volume, monkeypatch):
    path = _write(tmp_path / "big.nii.gz", ct_volume)
    with pytest.raises(ScanError, match="above the limit"):
        load_scan(path, max_voxels=1000)
    monkeypatch.setenv("LORKD_MAX_VOXELS", "100")
    with pytest.raises(ScanError, match="above the limit of 100"):
        load_scan(path)
    # header-only: a file whose pixel data is missing still fails on the size, not on the data
    raw = path.read_bytes()
    short = tmp_path / "short.nii.gz"
    import gzip

    short.write_bytes(gzip.compress(gzip.decompress(raw)[:400]))
    with pytest.raises(ScanError, match="above the limit"):
        load_scan(short, max_voxels=1000)


# ---------------------------------------------------------------------------------------- bad input


def _bad_inputs(tmp_path, ct_volume):
    good = _write(tmp_path / "good.nii.gz", ct_volume)
    data = good.read_bytes()
    (tmp_path / "truncated.nii.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.nii.gz").write_text("this is a text file, not an image\n")
    (tmp_path / "empty_folder").mkdir()
    notdicom = tmp_path / "not_dicom"
    notdicom.mkdir()
    (notdicom / "readme.txt").write_text("hello")
    (notdicom / "slice1.dcm").write_bytes(b"\x00" * 300)
    four_d = sitk.JoinSeries([sitk.GetImageFromArray(ct_volume)] * 3)
    sitk.WriteImage(four_d, str(tmp_path / "four_d.nii.gz"))
    nan = ct_volume.copy()
    nan[2, 3, 4] = np.nan
    _write(tmp_path / "nans.nrrd", nan)
    (tmp_path / "zero.nii.gz").write_bytes(b"")
    (tmp_path / "plain_truncated.nii").write_bytes(_write(tmp_path / "p.nii", ct_volume).read_bytes()[:2000])
    (tmp_path / "scan.xyz").write_text("?")
    return tmp_path


BAD_CASES = [
    ("truncated.nii.gz", "truncated"),
    ("text.nii.gz", "not a gzip file"),
    ("empty_folder", "empty folder"),
    ("not_dicom", "no DICOM series"),
    ("four_d.nii.gz", "4D images are not supported"),
    ("nans.nrrd", "NaN"),
    ("zero.nii.gz", "empty (0 bytes)"),
    ("plain_truncated.nii", "truncated"),
    ("scan.xyz", "unsupported file type"),
    ("missing.nii.gz", "does not exist"),
]


@pytest.mark.parametrize("name, problem", BAD_CASES)
def test_bad_input_raises_scan_error_naming_file_and_problem(tmp_path, ct_volume, name, problem):
    root = _bad_inputs(tmp_path, ct_volume)
    with pytest.raises(ScanError) as info:
        load_scan(root / name)
    message = str(info.value)
    assert name in message and problem in message
    assert "\n" not in message
    assert info.value.path == root / name


def test_nan_in_nifti_is_caught_although_itk_zeroes_it(tmp_path, ct_volume):
    # ITK's NIfTI reader turns NaN into 0; the raw payload check must still see it
    nan = ct_volume.copy()
    nan[0, 0, 0] = np.nan
    nan[1, 1, 1] = np.inf
    path = _write(tmp_path / "nan.nii.gz", nan)
    with pytest.raises(ScanError, match="contains 2 NaN or infinite voxels"):
        load_scan(path)


# ------------------------------------------------------------------------------------------- labels


def test_label_map_checks(tmp_path, ct_volume):
    scan_path = _write(tmp_path / "ct.nii.gz", ct_volume, (0.8, 0.8, 2.0), (1.0, 2.0, 3.0))
    scan = load_scan(scan_path)
    labels = np.zeros(ct_volume.shape, np.uint8)
    labels[4:8, 5:9, 6:10] = 2
    good = load_label_map(
        _write(tmp_path / "seg.nii.gz", labels, (0.8, 0.8, 2.0), (1.0, 2.0, 3.0)), like=scan
    )
    assert good.array.dtype == np.int16 and good.values() == [2]

    wrong_spacing = _write(tmp_path / "spacing.nii.gz", labels, (0.8, 0.8, 2.5), (1.0, 2.0, 3.0))
    with pytest.raises(LabelError, match="grid differs.*spacing") as info:
        load_label_map(wrong_spacing, like=scan)
    assert "spacing.nii.gz" in str(info.value)
    wrong_size = _write(tmp_path / "size.nii.gz", labels[:-1], (0.8, 0.8, 2.0), (1.0, 2.0, 3.0))
    with pytest.raises(LabelError, match="size"):
        load_label_map(wrong_size, like=scan)
    shifted = _write(tmp_path / "origin.nii.gz", labels, (0.8, 0.8, 2.0), (1.0, 2.0, 3.5))
    with pytest.raises(LabelError, match="origin"):
        load_label_map(shifted, like=scan)
    fractional = _write(
        tmp_path / "float.nii.gz", labels.astype(np.float32) * 0.3, (0.8, 0.8, 2.0), (1.0, 2.0, 3.0)
    )
    with pytest.raises(LabelError, match="non-integer"):
        load_label_map(fractional, like=scan)
    (tmp_path / "zero.nii.gz").write_bytes(b"")
    with pytest.raises(LabelError, match="0 bytes"):
        load_label_map(tmp_path / "zero.nii.gz")


def test_label_map_stored_flipped_is_reordered_exactly(tmp_path, ct_volume):
    scan = load_scan(_write(tmp_path / "ct.nii.gz", ct_volume, (0.8, 0.9, 2.0), (1.0, 2.0, 3.0)))
    labels = np.zeros(ct_volume.shape, np.int16)
    labels[1:3, 2:6, 3:12] = 1
    labels[7:11, 9:13, 1:4] = 3
    # the same voxels stored with x and z reversed (RPI-like): origin moves to the far corner
    g = scan.geometry
    far = g.index_to_physical(np.array([[g.size[0] - 1, 0, g.size[2] - 1]]))[0]
    flipped = labels[::-1, :, ::-1]
    path = _write(tmp_path / "flipped.nii.gz", flipped, g.spacing, tuple(far), (-1, 0, 0, 0, 1, 0, 0, 0, -1))
    out = load_label_map(path, like=scan)
    np.testing.assert_array_equal(out.array, labels)
    assert out.geometry.matches(scan.geometry)
