"""Region suggestion: heuristic fallback, a classifier trained on tiny cases, held-out accuracy, bad weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from test_inference_tiny import build_models, write_dataset

from lorkd_core.engine.region_suggest import (
    evaluate_region_classifier,
    heuristic_region,
    scan_features,
    suggest_from_teacher,
    suggest_region,
    train_region_classifier,
)
from lorkd_core.errors import ModelError
from lorkd_core.io import load_scan


def _volume(tmp_path, name, array, spacing=(4.0, 4.0, 4.0)):
    img = sitk.GetImageFromArray(array.astype(np.float32))
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(tmp_path / name))
    return load_scan(tmp_path / name, modality="CT")


def test_heuristic_thorax_and_abdomen(tmp_path):
    body = np.full((30, 80, 80), -1000.0)
    yy, xx = np.mgrid[:80, :80]
    torso = (yy - 40) ** 2 / 30**2 + (xx - 40) ** 2 / 38**2 < 1
    body[:, torso] = 40.0
    abdomen = _volume(tmp_path, "abd.nii.gz", body)
    lungs = body.copy()
    for cx in (25, 55):
        lungs[:, (yy - 40) ** 2 + (xx - cx) ** 2 < 12**2] = -850.0
    thorax = _volume(tmp_path, "tho.nii.gz", lungs)
    assert heuristic_region(abdomen).region == "abdomen"
    assert heuristic_region(thorax).region == "thorax"
    mr = load_scan(tmp_path / "abd.nii.gz", modality="MR")
    mr.modality = "MR"
    assert heuristic_region(mr).region == "brain"


def test_features_keep_physical_size(tmp_path):
    scan = _volume(tmp_path, "v.nii.gz", np.zeros((10, 40, 40)))
    feats = scan_features(scan)
    assert feats.shape == (4, 64, 64) and feats.dtype == np.float32
    # 40 voxels of 4 mm = 160 mm = 20 pixels of 8 mm, centred in the 64-pixel field of view
    assert int((feats[0] > -0.5).sum(axis=0).max()) == 20


def test_train_and_evaluate_classifier(tmp_path, monkeypatch):
    import lorkd_core.engine.region_suggest as rs

    manifest = write_dataset(tmp_path / "data", regions=["abdomen", "brain"], train_per_region=2)
    # the two regions must look different: make the brain cases small heads of bright bone
    for line in manifest.read_text().splitlines():
        item = json.loads(line)
        if item["region"] == "brain":
            path = manifest.parent / item["image"]
            img = sitk.ReadImage(str(path))
            arr = sitk.GetArrayFromImage(img)
            arr[arr > 0] = 900.0
            out = sitk.GetImageFromArray(arr)
            out.CopyInformation(img)
            sitk.WriteImage(out, str(path))
    steps = []
    meta, acc = train_region_classifier(manifest, tmp_path / "rs", steps=6, progress=steps.append)
    assert meta.is_file() and meta.with_suffix(".safetensors").is_file()
    assert acc.cases == 2 and 0.0 <= acc.accuracy <= 1.0 and set(acc.per_region) == {"abdomen", "brain"}
    assert json.loads(meta.read_text())["accuracy"]["cases"] == 2
    assert steps[-1].step == 6 and "loss" in steps[-1].metrics
    again = evaluate_region_classifier(manifest, meta)
    assert again.accuracy == acc.accuracy
    scan = load_scan(manifest.parent / "cases" / "abdomen_000" / "ct.nii.gz")
    found = suggest_region(scan, weights=meta)
    assert found.method == "classifier" and abs(sum(found.scores.values()) - 1.0) < 1e-5
    # bundled weights are used by default once present
    monkeypatch.setattr(rs, "bundled_weights", lambda: meta)
    assert suggest_region(scan).method == "classifier"


def test_broken_classifier_weights_name_the_file(tmp_path):
    meta = tmp_path / "region_suggest.json"
    meta.write_text(json.dumps({"format": "lorkd-region-suggest/1", "regions": ["abdomen"]}))
    meta.with_suffix(".safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ModelError) as err:
        suggest_region(load_scan(write_dataset(tmp_path / "d", regions=["abdomen"]).parent
                                 / "cases" / "abdomen_000" / "ct.nii.gz"), weights=meta)
    assert "region_suggest.safetensors" in str(err.value)


def test_suggest_from_teacher_label_content(tmp_path):
    from lorkd_core.engine.catalog import entries_for_folder

    build_models(tmp_path / "m", regions=["abdomen", "thorax"], baseline=False)
    manifest = write_dataset(tmp_path / "d", regions=["abdomen"])
    scan = load_scan(manifest.parent / "cases" / "abdomen_000" / "ct.nii.gz")
    teacher = entries_for_folder(tmp_path / "m" / "teacher")[0]
    found = suggest_from_teacher(scan, teacher)
    assert found.method in ("teacher", "heuristic") and found.region in ("abdomen", "thorax")
