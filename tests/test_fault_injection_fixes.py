"""Checks that came with the fault-injection work (issue 7) and its small fixes:

- atomic temp files and checkpoint deletions: hidden ``.*.tmp-*`` names, removed when a job starts again;
- ``lorkd info`` falls back to the heuristic when the region suggester fails, and says so;
- ``lorkd evaluate`` scores a case without a finding as class "none", the name training uses;
- the phantom writers leave file permissions to ``atomic_path`` (the umask).
"""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from safetensors.torch import save_file

from lorkd_core.atomic import atomic_path, is_temp_name, remove_stale_temps, write_text_atomic
from lorkd_core.cli import main

# ---------------------------------------------------------------------- temp files and checkpoints


def test_atomic_temp_files_are_hidden_and_marked(tmp_path):
    with atomic_path(tmp_path / "seg.nii.gz", suffix=".nii.gz") as tmp:
        assert tmp.parent == tmp_path and is_temp_name(tmp.name) and tmp.name.endswith(".nii.gz")
        assert tmp.name.startswith(".seg.nii.gz.tmp-")
        tmp.write_bytes(b"x")
    assert not is_temp_name("seg.nii.gz") and not is_temp_name(".hidden")


def test_remove_stale_temps_removes_only_temps(tmp_path):
    (tmp_path / "card.json").write_text("{}")
    (tmp_path / ".card.json.tmp-abc12345.json").write_text("{half")  # a killed atomic write
    (tmp_path / ".step-000004.tmp-999").mkdir()  # a killed checkpoint write
    (tmp_path / ".step-000004.tmp-999" / "model.safetensors").write_bytes(b"half")
    (tmp_path / ".tmpaVjlH6").write_bytes(b"half")  # safetensors' save_file writes through one of these
    (tmp_path / ".hidden").write_text("user file")
    (tmp_path / ".tmpnotes.txt").write_text("user file")
    removed = remove_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == [".card.json.tmp-abc12345.json", ".step-000004.tmp-999", ".tmpaVjlH6"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", ".tmpnotes.txt", "card.json"]
    assert remove_stale_temps(tmp_path / "missing") == []


def test_checkpoint_ignores_and_prunes_hidden_step_folders(tmp_path):
    from lorkd_core.engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

    model = torch.nn.Linear(2, 2)
    for step in (1, 2):
        save_checkpoint(tmp_path, step=step, phase="experts", model=model)
    # a newer, complete-looking step folder that a killed process was deleting (moved aside first)
    aside = tmp_path / ".step-000009.tmp-old-1"
    (tmp_path / "step-000002").rename(aside)
    save_checkpoint(tmp_path, step=2, phase="experts", model=model)
    assert latest_checkpoint(tmp_path).name == "step-000002"
    (tmp_path / "latest.json").unlink()  # even without the pointer, the fallback skips hidden folders
    assert latest_checkpoint(tmp_path).name == "step-000002"
    # re-saving an existing step (a resumed run) replaces it whole
    folder = save_checkpoint(tmp_path, step=2, phase="experts", model=model, state={"again": True})
    assert load_checkpoint(folder).state["again"] is True
    save_checkpoint(tmp_path, step=3, phase="experts", model=model)  # prunes step 1 and stale temps
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "step-000002", "step-000003"]


# ---------------------------------------------------------------------- lorkd info: suggester fallback


@pytest.fixture
def ct_scan(tmp_path):
    array = np.full((20, 40, 40), -1000.0, np.float32)
    array[:, 5:35, 5:35] = 40.0  # a 240 mm wide soft-tissue body: the heuristic says abdomen
    img = sitk.GetImageFromArray(array)
    img.SetSpacing((8.0, 8.0, 8.0))
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(img, str(path))
    return path


@pytest.fixture
def broken_classifier(tmp_path, monkeypatch):
    """A region classifier whose network does not take the suggester's features (2 input channels, not 4):
    it loads, then fails on every scan, as a classifier trained for other features would."""
    import lorkd_core.engine.region_suggest as rs
    from lorkd_core.engine.networks import build_network

    spec = {"name": "lorkd.SmallCNN", "kwargs": {"spatial_dims": 2, "in_channels": 2, "channels": [4, 8]}}
    regions = ["abdomen", "thorax"]
    net = build_network(spec, out_channels=len(regions))
    meta = tmp_path / "rs" / "region_suggest.json"
    meta.parent.mkdir()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(meta.with_suffix(".safetensors")))
    meta.write_text(json.dumps({"format": rs.FORMAT, "regions": regions, "network": spec}))
    monkeypatch.setattr(rs, "bundled_weights", lambda: meta)
    return meta


def test_info_falls_back_to_the_heuristic_and_says_why(ct_scan, broken_classifier, capsys):
    assert main(["info", str(ct_scan), "--json"]) == 0
    suggestion = json.loads(capsys.readouterr().out)["suggested_region"]
    assert suggestion["region"] == "abdomen" and suggestion["method"] == "heuristic"
    assert suggestion["fallback"] == "heuristic" and suggestion["confidence"] == pytest.approx(0.4)
    assert suggestion["error"].startswith("RuntimeError: ") and "channels" in suggestion["error"]

    assert main(["info", str(ct_scan)]) == 0
    out = capsys.readouterr().out
    assert "suggested region: abdomen (40%, heuristic)" in out
    assert "heuristic fallback: the region suggester failed (RuntimeError: " in out


def test_info_reports_both_errors_when_the_heuristic_fails_too(ct_scan, broken_classifier, capsys, monkeypatch):
    import lorkd_core.engine.region_suggest as rs

    def no_heuristic(scan):
        raise ValueError("no heuristic today")

    monkeypatch.setattr(rs, "heuristic_region", no_heuristic)
    assert main(["info", str(ct_scan), "--json"]) == 0
    suggestion = json.loads(capsys.readouterr().out)["suggested_region"]
    assert suggestion["region"] is None and "fallback" not in suggestion
    assert suggestion["error"].startswith("RuntimeError: ")
    assert suggestion["error"].endswith("; the heuristic fallback failed too: ValueError: no heuristic today")
    assert main(["info", str(ct_scan)]) == 0
    assert "suggested region: n/a (RuntimeError: " in capsys.readouterr().out


def test_info_without_a_failure_names_no_fallback(ct_scan, capsys, monkeypatch):
    import lorkd_core.engine.region_suggest as rs

    monkeypatch.setattr(rs, "bundled_weights", lambda: ct_scan.parent / "no_classifier" / "region_suggest.json")
    assert main(["info", str(ct_scan), "--json"]) == 0
    suggestion = json.loads(capsys.readouterr().out)["suggested_region"]
    assert suggestion == {"region": "abdomen", "confidence": 0.4, "method": "heuristic"}


# ---------------------------------------------------------------------- lorkd evaluate: the no-finding class


REGIONS = ("abdomen", "thorax")
FINDINGS = (None, "none", "cyst")  # null and "none" both mean no finding


def _always_no_finding(folder, no_finding: str) -> None:
    """A classification baseline whose heads always answer class 0 (``no_finding``)."""
    import test_inference_tiny as tiny

    from lorkd_core.engine.model_io import save_model_folder
    from lorkd_core.engine.networks import build_from_architecture, region_architecture

    spec = {"name": "lorkd.SmallCNN", "kwargs": {"channels": [4, 8]}}
    arch = region_architecture(spec, 8, dict.fromkeys(REGIONS, 2), "classification")
    model = build_from_architecture(arch)
    with torch.no_grad():
        for head in model.heads.values():
            head.weight.zero_()
            head.bias.copy_(torch.tensor([5.0, -5.0]))
    labels = {r: {0: no_finding, 1: "cyst"} for r in REGIONS}
    card = tiny._card("baseline", arch, REGIONS, labels, task="classification")
    card.extra["preprocessing"] = {"spacing": tiny.SPACING, "patch_size": [16, 16, 16], "spatial_dims": 3}
    save_model_folder(folder / "baseline", model, card)


@pytest.fixture(scope="module")
def finding_cases(tmp_path_factory):
    from test_inference_tiny import write_case

    root = tmp_path_factory.mktemp("findings")
    lines = []
    for r_i, region in enumerate(REGIONS):
        for k, finding in enumerate(FINDINGS):
            case = f"{region}_{k:03d}"
            write_case(root / "cases" / case, region, seed=10 * r_i + k)
            lines.append({"image": f"cases/{case}/ct.nii.gz", "region": region, "modality": "CT",
                          "finding": finding, "split": "test", "case_id": case})
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return manifest


@pytest.mark.parametrize("no_finding", ["none", "normal"])
def test_evaluate_scores_a_missing_finding_as_class_none(finding_cases, tmp_path, no_finding):
    from lorkd_core.engine.evaluate import evaluate_models, finding_class

    assert finding_class(None) == finding_class("none") == "none" and finding_class("cyst") == "cyst"
    _always_no_finding(tmp_path / "models", no_finding)
    result = evaluate_models(tmp_path / "models", finding_cases, tmp_path / "eval.md", latency_runs=1, record=False)
    assert result.task == "classification"
    for region in REGIONS:
        # two of the three cases have no finding, and the model always says so
        assert result.score("baseline", region).accuracy == pytest.approx(2 / 3)


# ---------------------------------------------------------------------- phantom file permissions


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_phantom_files_follow_the_umask(tmp_path, umask, mode):
    from lorkd_core.data.phantoms import write_phantom_dataset

    old = os.umask(umask)
    try:
        manifest = write_phantom_dataset(tmp_path / "ph", 1, ["upper_limb"], seed=5, size=24)
        write_text_atomic(tmp_path / "plain.txt", "x")  # what every other atomic write gets
    finally:
        os.umask(old)
    files = [p for p in manifest.parent.rglob("*") if p.is_file()]
    assert any(p.name == "ct.nii.gz" for p in files) and any(p.suffix == ".json" for p in files)
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: mode for p in files}
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == mode
