"""``lorkd info``: the facts of a scan, and one clean line on stderr for a bad one."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lorkd_core.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_info_on_the_real_dicom_series(ct_dicom_dir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "lorkd_core.engine.region_suggest", None)  # no classifier
    assert main(["info", str(ct_dicom_dir)]) == 0
    out = capsys.readouterr().out
    assert "modality:        CT (from dicom)" in out
    assert "512 x 512 x 20" in out
    assert "0.9766 x 0.9766 x 2 mm" in out
    assert "orientation:     LPS" in out
    assert "intensity range: -1024 .. 1839 HU" in out
    assert "window presets:  W300/L40, W1500/L300" in out
    assert "suggested region: n/a (no region classifier)" in out


def test_info_json_and_region_hook(mni_t1_path, capsys, monkeypatch):
    fake = types.ModuleType("lorkd_core.engine.region_suggest")
    fake.suggest_region = lambda scan: ("brain", 0.93)
    monkeypatch.setitem(sys.modules, "lorkd_core.engine.region_suggest", fake)
    assert main(["info", str(mni_t1_path), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["modality"] == "MR" and facts["modality_source"] == "heuristic"
    assert facts["size"] == [197, 233, 189] and facts["orientation"] == "RAS"
    assert facts["intensity_range"] == [0.0, 255.0]
    assert facts["suggested_region"] == {"region": "brain", "confidence": 0.93}
    assert main(["info", str(mni_t1_path)]) == 0
    assert "suggested region: brain (93%)" in capsys.readouterr().out


def _bad_inputs(tmp_path):
    good = tmp_path / "good.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6), np.float32)), str(good))
    data = good.read_bytes()
    (tmp_path / "truncated.nii.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.nii.gz").write_text("not an image")
    (tmp_path / "zero.nii.gz").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("x")
    (tmp_path / "txt" / "b.dcm").write_bytes(b"\x00" * 200)
    nan = np.zeros((4, 5, 6), np.float32)
    nan[1, 1, 1] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(nan), str(tmp_path / "nan.nii.gz"))
    sitk.WriteImage(sitk.JoinSeries([sitk.GetImageFromArray(nan * 0)] * 2), str(tmp_path / "four_d.nii.gz"))
    return tmp_path


BAD = {
    "truncated.nii.gz": "truncated",
    "text.nii.gz": "not a gzip file",
    "zero.nii.gz": "0 bytes",
    "empty": "empty folder",
    "txt": "no DICOM series",
    "nan.nii.gz": "NaN",
    "four_d.nii.gz": "4D images are not supported",
}


def _check_one_line(name, code, out, err):
    assert code != 0, name
    lines = err.strip().splitlines()
    assert len(lines) == 1, (name, err)
    assert "Traceback" not in err and out == ""
    assert lines[0].startswith("lorkd info: error: ") and name in lines[0] and BAD[name] in lines[0], lines[0]


def test_info_cli_on_bad_input_prints_one_line_and_fails(tmp_path, capfd):
    root = _bad_inputs(tmp_path)
    # the real command line for a file and a folder (interpreter starts are slow: both at once) ...
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "lorkd_core", "info", str(root / name)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("truncated.nii.gz", "txt")
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        _check_one_line(name, proc.returncode, out, err)
    # ... and every bad input through the same entry point in-process; capfd also sees native stderr
    for name in BAD:
        code = main(["info", str(root / name)])
        out, err = capfd.readouterr()
        _check_one_line(name, code, out, err)


@pytest.mark.parametrize("argv", [["info"], ["info", "x", "--modality", "PET"]])
def test_info_usage_errors(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
