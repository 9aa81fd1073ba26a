"""``lorkd evaluate``: the per-region table for teacher / experts / baseline, CSV, card metrics, metric maths."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from test_inference_tiny import ALL_REGIONS, build_models, write_dataset

from lorkd_core.cli import main
from lorkd_core.engine.catalog import entries_for_folder
from lorkd_core.engine.evaluate import evaluate_models, roc_auc, structure_metrics
from lorkd_core.engine.model_card import read_card
from lorkd_core.errors import DatasetError


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    build_models(root / "run")
    manifest = write_dataset(root / "data")
    return root / "run", manifest


def test_evaluate_table_has_every_region_and_model(setup, tmp_path):
    models, manifest = setup
    steps = []
    result = evaluate_models(models, manifest, tmp_path / "report.md", latency_runs=1, progress=steps.append)
    assert result.task == "segmentation" and result.models == ["teacher", "experts", "baseline"]
    assert result.regions == ALL_REGIONS and result.cases == len(ALL_REGIONS)
    assert len(result.region_scores) == 3 * len(ALL_REGIONS)
    for s in result.region_scores:
        assert 0.0 <= s.dice <= 1.0 and 0.0 <= s.nsd <= 1.0
        assert s.parameters > 0 and s.file_bytes > 0 and s.latency_ms > 0
    # each merged expert is backbone + one head: smaller than the whole experts file's parameters
    experts_total = read_card(models / "experts").parameters
    assert all(s.parameters < experts_total for s in result.region_scores if s.model == "experts")
    assert steps[-1].step == steps[-1].total

    md = result.markdown_path.read_text()
    table = md.split("## Per region")[1].split("##")[0]
    for region in ALL_REGIONS:
        assert f"| {region} | 1 |" in table
    assert "Teacher Dice" in table and "Experts NSD" in table and "**Mean**" in table
    assert "## Size and speed" in md and "## Per structure" in md and "| abdomen | liver |" in md

    rows = list(csv.DictReader(result.csv_path.open()))
    region_rows = [r for r in rows if r["level"] == "region"]
    assert {(r["model"], r["region"]) for r in region_rows} == {(m, r) for m in result.models for r in ALL_REGIONS}
    assert any(r["level"] == "structure" and r["structure"] == "liver" for r in rows)

    card = read_card(models / "experts")
    assert set(card.metrics["dice"]) == set(ALL_REGIONS)
    assert card.metrics["dice"]["thorax"] == pytest.approx(result.score("experts", "thorax").dice, abs=1e-6)
    assert card.metrics["evaluation"]["tolerance_mm"] == 2.0
    entry = next(e for e in entries_for_folder(models / "teacher") if e.region == "spine")
    assert entry.dice == pytest.approx(result.score("teacher", "spine").dice, abs=1e-6)


def _trained_models(root, manifest):
    """Two steps of the real training engine: the cards evaluate/export read are the ones training writes."""
    from lorkd_core.engine.config import DecomposeConfig, FoundationConfig
    from lorkd_core.engine.train import decompose, train_foundation

    net = {"name": "monai.UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}}
    common = {"data": str(manifest), "steps": 2, "batch_size": 2, "patch_size": (16, 16, 16),
              "spacing": (3.0, 3.0, 3.0), "device": "cpu", "checkpoint_every": 0}
    train_foundation(FoundationConfig(out=str(root / "teacher"), network=net, **common))
    decompose(DecomposeConfig(out=str(root / "run"), teacher=str(root / "teacher"), student=net, feature_channels=4,
                              ranks=2, **common))
    return root / "run"


def test_evaluate_cli_on_engine_trained_models(tmp_path, capsys):
    manifest = write_dataset(tmp_path / "data", regions=["abdomen", "pelvis"], train_per_region=1)
    models = _trained_models(tmp_path, manifest)
    code = main(["evaluate", "--models", str(models), "--data", str(manifest), "--latency-runs", "1", "--quiet"])
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "teacher" in out and "experts" in out and "baseline" in out and "mean dice" in out
    md = (models / "evaluation.md").read_text()
    assert "| abdomen | 1 |" in md and "| pelvis | 1 |" in md
    rows = list(csv.DictReader((models / "evaluation.csv").open()))
    assert {r["model"] for r in rows} == {"teacher", "experts", "baseline"}
    assert set(read_card(models / "experts").metrics["dice"]) == {"abdomen", "pelvis"}
    # the recorded figures travel with an exported expert
    assert main(["export", "--models", str(models), "--region", "pelvis", "--out", str(tmp_path / "pelvis")]) == 0
    exported = read_card(tmp_path / "pelvis")
    assert exported.kind == "expert" and set(exported.metrics["dice"]) == {"pelvis"}
    assert exported.extra["preprocessing"]["patch_size"] == [16, 16, 16]


def test_evaluate_without_test_cases_is_one_line_error(setup, tmp_path, capsys):
    models, manifest = setup
    code = main(["evaluate", "--models", str(models), "--data", str(manifest), "--split", "val",
                 "--out", str(tmp_path / "r.md"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "no held-out cases" in err
    with pytest.raises(DatasetError):
        evaluate_models(models, manifest, tmp_path / "r.md", split="val")


def test_structure_metrics_dice_and_nsd():
    truth = np.zeros((8, 20, 20), np.int16)
    truth[2:6, 5:15, 5:15] = 1
    same = structure_metrics(truth, truth, [(1, 1)], (1.0, 1.0, 1.0))
    assert same[0][0] == pytest.approx(1.0) and same[1][0] == pytest.approx(1.0)
    shifted = np.roll(truth, 1, axis=2)
    dice, nsd = structure_metrics(shifted, truth, [(1, 1)], (1.0, 1.0, 1.0), tolerance_mm=2.0)
    assert dice[0] < 1.0 and nsd[0] == pytest.approx(1.0)  # a 1 mm shift is within the 2 mm tolerance
    _, nsd_tight = structure_metrics(shifted, truth, [(1, 1)], (1.0, 1.0, 5.0), tolerance_mm=2.0)
    assert nsd_tight[0] < 1.0  # the same shift is 5 mm along x at 5 mm spacing
    empty = np.zeros_like(truth)
    dice, nsd = structure_metrics(truth, empty, [(1, 1), (2, 2)], (1.0, 1.0, 1.0))
    assert dice[0] == 0.0 and nsd[0] == 0.0  # predicted where there is nothing
    assert math.isnan(dice[1]) and math.isnan(nsd[1])  # absent from both


def test_roc_auc():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(0.75)
    assert roc_auc([0.5, 0.5], [True, False]) == pytest.approx(0.5)
    assert math.isnan(roc_auc([0.2, 0.3], [True, True]))
