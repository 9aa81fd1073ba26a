"""Label maps written on the scan's grid with a sidecar JSON, atomically; MR normalisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from lorkd_core.errors import LabelError
from lorkd_core.io import Scan, load_label_map, load_scan, normalize_mr, save_label_map


@pytest.fixture()
def oblique_scan():
    direction = (0.0, 0.0, 1.0, -1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
    array = np.random.default_rng(0).normal(0, 1, size=(10, 12, 14)).astype(np.float32)
    return Scan(array, (0.9, 1.1, 3.0), (5.0, -7.0, 11.0), direction, "CT")


def test_save_label_map_writes_nifti_on_the_grid_plus_sidecar(tmp_path, oblique_scan):
    labels = np.zeros(oblique_scan.array.shape, np.int16)
    labels[2:5, 3:7, 4:9] = 1
    labels[6:9, 1:3, 10:13] = 300  # above uint8: stored as int16
    names = {1: "liver", 300: "spleen"}
    out = save_label_map(
        tmp_path / "out" / "seg.nii.gz", labels, oblique_scan, names, model="demo-abdomen", region="abdomen"
    )
    assert out == tmp_path / "out" / "seg.nii.gz"
    image = sitk.ReadImage(str(out))
    assert image.GetSize() == (14, 12, 10)
    np.testing.assert_allclose(image.GetSpacing(), oblique_scan.spacing)
    np.testing.assert_allclose(image.GetOrigin(), oblique_scan.origin, atol=1e-5)
    np.testing.assert_allclose(image.GetDirection(), oblique_scan.direction, atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), labels)
    sidecar = json.loads((tmp_path / "out" / "seg.json").read_text())
    assert sidecar["labels"] == {"1": "liver", "300": "spleen"}
    assert sidecar["model"] == "demo-abdomen" and sidecar["region"] == "abdomen"
    assert sidecar["geometry"] == {
        "size": [14, 12, 10],
        "spacing": [0.9, 1.1, 3.0],
        "origin": [5.0, -7.0, 11.0],
        "direction": list(oblique_scan.direction),
    }
    # nothing but the two files: the temp files were renamed or removed
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["seg.json", "seg.nii.gz"]
    back = load_label_map(out, like=oblique_scan)
    assert back.names == names
    np.testing.assert_array_equal(back.array, labels)


def test_save_label_map_suffix_and_errors(tmp_path, oblique_scan):
    labels = np.zeros(oblique_scan.array.shape, np.uint8)
    out = save_label_map(tmp_path / "prediction", labels, oblique_scan, {})
    assert out.name == "prediction.nii.gz" and (tmp_path / "prediction.json").is_file()
    with pytest.raises(LabelError, match="shape"):
        save_label_map(tmp_path / "bad.nii.gz", labels[:-1], oblique_scan, {})
    with pytest.raises(LabelError, match="integers"):
        save_label_map(tmp_path / "bad.nii.gz", labels.astype(np.float32) + 0.5, oblique_scan, {})
    assert not (tmp_path / "bad.nii.gz").exists()


def test_failed_write_leaves_the_previous_file(tmp_path, oblique_scan, monkeypatch):
    labels = np.ones(oblique_scan.array.shape, np.uint8)
    out = save_label_map(tmp_path / "seg.nii.gz", labels, oblique_scan, {1: "liver"})
    before = out.read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", broken)
    with pytest.raises(RuntimeError):
        save_label_map(out, labels * 2, oblique_scan, {2: "spleen"})
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.json", "seg.nii.gz"]


def test_normalize_mr(mni_t1_path):
    scan = load_scan(mni_t1_path)
    scan.array = scan.array[::2, ::2, ::2].copy()  # 8x fewer voxels keeps the test quick
    z = normalize_mr(scan.array)
    from lorkd_core.io.normalize import foreground_mask

    fg = foreground_mask(scan.array)
    assert 0.2 < fg.mean() < 0.8  # head inside the template box, background outside
    assert abs(float(z[fg].mean())) < 0.05 and abs(float(z[fg].std()) - 1) < 0.1
    assert z[~fg].max() <= z[fg].min() + 1e-6
    p = normalize_mr(scan.array, "percentile")
    assert p.min() == 0.0 and p.max() == 1.0
    # the same volume at another intensity scale normalises to the same values
    np.testing.assert_allclose(normalize_mr(scan.array * 3.0 + 20.0), z, atol=1e-4)
    with pytest.raises(ValueError):
        normalize_mr(scan.array, "minmax")
