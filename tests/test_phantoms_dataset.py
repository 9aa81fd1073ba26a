"""Phantom datasets on disk: manifest contract, files, determinism, the ``lorkd phantoms`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lorkd_core.data.phantom_findings import FINDINGS
from lorkd_core.data.phantom_regions import REGION_LABELS
from lorkd_core.data.phantoms import split_of, write_phantom_dataset

REGIONS = ["brain", "upper_limb"]
KEYS = {"image", "label", "region", "modality", "labels", "finding", "split", "case_id", "finding_mask"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantoms")
    return write_phantom_dataset(out, 3, REGIONS, seed=5, size=32)


def _lines(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_manifest_lines_follow_the_contract(dataset):
    root = dataset.parent
    items = _lines(dataset)
    assert [it["case_id"] for it in items] == [f"{r}_{i:03d}" for r in REGIONS for i in range(3)]
    for it in items:
        assert set(it) == KEYS
        assert it["modality"] == "CT" and it["region"] in REGIONS
        assert it["split"] in ("train", "val", "test")
        assert it["labels"] == {str(i + 1): n for i, n in enumerate(REGION_LABELS[it["region"]])}
        assert it["finding"] in FINDINGS[it["region"]].classes
        for key in ("image", "label", "finding_mask"):
            assert not Path(it[key]).is_absolute() and (root / it[key]).is_file()
        assert it["image"] == f"cases/{it['case_id']}/ct.nii.gz"
        sidecar = json.loads((root / it["label"]).with_name("seg.json").read_text(encoding="utf-8"))
        assert sidecar["labels"] == it["labels"] and sidecar["region"] == it["region"]
    assert [it["split"] for it in items if it["region"] == "brain"] == ["train", "train", "test"]
    summary = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    assert set(summary["regions"]) == set(REGIONS)
    assert summary["regions"]["brain"]["labels"]["1"] == "brain"


def test_images_and_labels_share_a_grid_and_the_declared_ids(dataset):
    root = dataset.parent
    for it in _lines(dataset):
        ct = sitk.ReadImage(str(root / it["image"]))
        seg = sitk.ReadImage(str(root / it["label"]))
        mask = sitk.ReadImage(str(root / it["finding_mask"]))
        for other in (seg, mask):
            assert other.GetSize() == ct.GetSize()
            assert np.allclose(other.GetSpacing(), ct.GetSpacing()) and np.allclose(other.GetOrigin(), ct.GetOrigin())
            assert np.allclose(other.GetDirection(), ct.GetDirection())
        assert ct.GetSize() == (32, 32, 32)
        hu = sitk.GetArrayFromImage(ct)
        assert hu.min() >= -1024 and hu.max() > 100
        values = set(np.unique(sitk.GetArrayFromImage(seg)).tolist())
        assert values <= {0, *map(int, it["labels"])} and len(values) > 2
        assert sitk.GetArrayFromImage(mask).any() == (it["finding"] != "none")


def test_same_seed_gives_identical_files(dataset, tmp_path):
    again = write_phantom_dataset(tmp_path / "again", 3, REGIONS, seed=5, size=32)
    assert again.read_text(encoding="utf-8") == dataset.read_text(encoding="utf-8")
    for it in _lines(dataset):
        for key in ("image", "label", "finding_mask"):
            a = sitk.GetArrayFromImage(sitk.ReadImage(str(dataset.parent / it[key])))
            b = sitk.GetArrayFromImage(sitk.ReadImage(str(again.parent / it[key])))
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), f"{it['case_id']} {key}"


def test_cases_do_not_depend_on_the_other_regions(dataset, tmp_path):
    alone = write_phantom_dataset(tmp_path / "alone", 1, ["upper_limb"], seed=5, size=32)
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(alone.parent / "cases/upper_limb_000/ct.nii.gz")))
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(dataset.parent / "cases/upper_limb_000/ct.nii.gz")))
    assert a.tobytes() == b.tobytes()


def test_manifest_reads_back_with_the_dataset_reader(dataset):
    manifest = pytest.importorskip("lorkd_core.data.manifest")
    items = manifest.read_manifest(dataset)
    assert len(items) == 6
    first = items[0]
    assert first.region == "brain" and first.image.is_file() and first.label.is_file()
    assert first.labels[1] == "brain"


def test_split_is_deterministic_with_about_a_fifth_test():
    splits = [split_of(i, 10) for i in range(10)]
    assert splits == ["train"] * 7 + ["val"] + ["test"] * 2
    assert [split_of(i, 1) for i in range(1)] == ["train"]
    assert [split_of(i, 2) for i in range(2)] == ["train", "test"]


def test_cli_writes_a_dataset_and_prints_a_summary(tmp_path, capsys):
    from lorkd_core.cli import main

    rc = main(["phantoms", "--out", str(tmp_path / "ds"), "--cases-per-region", "1", "--regions", "brain",
               "--size", "24", "--seed", "3"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "wrote 1 cases" in out and "brain" in out
    assert (tmp_path / "ds" / "manifest.jsonl").is_file()
    assert main(["phantoms", "--out", str(tmp_path / "bad"), "--size", "4"]) != 0
