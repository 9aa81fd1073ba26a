"""``lorkd segment`` / ``lorkd classify``: files on the input grid, the real DICOM series, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_inference_tiny import build_classifier, build_models, write_case

from lorkd_core.cli import main
from lorkd_core.io import load_label_map, load_scan


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_models")
    # 8 mm voxels and a 8 x 64 x 64 patch: the 512 x 512 x 20 DICOM series is one window
    build_models(root, regions=["abdomen", "thorax"], baseline=False, spacing=(8.0, 8.0, 8.0), patch=(8, 64, 64))
    build_classifier(root)
    return root


def test_segment_writes_label_map_on_the_input_grid(models, tmp_path, capsys):
    image, _ = write_case(tmp_path / "case", "abdomen", 1, direction=(-1, 0, 0, 0, 0, 1, 0, 1, 0),
                          origin=(12.5, -3.0, 40.0))
    out = tmp_path / "out" / "seg.nii.gz"
    code = main(["segment", "--input", str(image), "--region", "abdomen", "--output", str(out),
                 "--model", str(models / "experts"), "--device", "cpu"])
    assert code == 0
    scan = load_scan(image)
    labels = load_label_map(out, like=scan)  # raises unless size/spacing/origin/direction match
    assert labels.array.shape == scan.array.shape
    for attr in ("spacing", "origin", "direction"):
        assert np.allclose(getattr(labels, attr), getattr(scan, attr))
    sidecar = json.loads(out.with_name("seg.json").read_text())
    assert sidecar["labels"] == {"1": "liver", "2": "spleen"} and sidecar["region"] == "abdomen"
    printed = capsys.readouterr().out
    assert "liver" in printed and "volume (mL)" in printed


def test_segment_real_dicom_series(models, ct_dicom_dir, tmp_path, capsys):
    out = tmp_path / "dicom_seg.nii.gz"
    code = main(["segment", "--input", str(ct_dicom_dir), "--region", "abdomen", "--output", str(out),
                 "--model", str(models), "--device", "cpu", "--quiet"])
    assert code == 0, capsys.readouterr().err
    scan = load_scan(ct_dicom_dir)
    labels = load_label_map(out, like=scan)
    assert labels.array.shape == scan.array.shape == (20, 512, 512)
    assert np.allclose(labels.spacing, scan.spacing) and np.allclose(labels.origin, scan.origin)
    assert set(np.unique(labels.array)) <= {0, 1, 2}


def test_classify_prints_probabilities(models, tmp_path, capsys):
    image, _ = write_case(tmp_path / "case", "thorax", 2)
    code = main(["classify", "--input", str(image), "--region", "thorax", "--model", str(models / "classifier"),
                 "--device", "cpu"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    probs = {line.split()[0]: float(line.split()[1]) for line in lines[1:]}
    assert set(probs) == {"none", "cyst"} and sum(probs.values()) == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("args, needle", [
    (["--region", "mars"], "unknown region 'mars'"),
    (["--region", "brain"], "no segmentation model for region 'brain'"),
    (["--model", "/nonexistent/model"], "does not exist"),
])
def test_cli_errors_are_one_line(models, tmp_path, capsys, args, needle):
    image, _ = write_case(tmp_path / "case", "abdomen", 1)
    base = {"--input": str(image), "--region": "abdomen", "--model": str(models / "experts")}
    base.update(dict(zip(args[::2], args[1::2])))
    argv = ["segment", "--output", str(tmp_path / "x.nii.gz")] + [v for kv in base.items() for v in kv]
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and needle in err


def test_missing_scan_is_one_line(models, tmp_path, capsys):
    code = main(["segment", "--input", str(tmp_path / "none.nii.gz"), "--region", "abdomen",
                 "--output", str(tmp_path / "x.nii.gz"), "--model", str(models / "experts")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "none.nii.gz" in err
