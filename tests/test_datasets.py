"""Dataset import (manifest, TotalSegmentator, nnU-Net v2, MSD), validation and summaries on tiny fakes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lorkd_core.data.datasets import Problem, detect_layout, import_dataset, summarize, validate_items
from lorkd_core.data.manifest import DatasetItem, read_manifest, write_manifest
from lorkd_core.errors import DatasetError
from lorkd_core.io import load_label_map

SHAPE = (16, 16, 16)


def write(path: Path, array: np.ndarray, spacing=(1.5, 1.5, 2.0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin((-10.0, 5.0, 20.0))
    sitk.WriteImage(image, str(path))
    return path


def ct(seed: int = 0) -> np.ndarray:
    array = np.random.default_rng(seed).normal(40, 20, SHAPE).astype(np.int16)
    array[:, :2] = -1000
    return array


def box(z: slice, y: slice, x: slice) -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[z, y, x] = 1
    return mask


def reasons(problems: list[Problem]) -> dict[str, str]:
    return {p.path.name: p.reason for p in problems}


# -------------------------------------------------------------------------------------------- manifest


def test_manifest_round_trip_with_relative_paths_and_sidecar_labels(tmp_path):
    root = tmp_path / "data"
    write(root / "cases" / "a" / "ct.nii.gz", ct())
    seg = write(root / "cases" / "a" / "seg.nii.gz", box(slice(2, 6), slice(2, 6), slice(2, 6)))
    (root / "cases" / "a" / "seg.json").write_text(json.dumps({"labels": {"1": "liver"}}))
    items = [
        DatasetItem(
            root / "cases/a/ct.nii.gz", seg, "abdomen", "CT", {1: "liver", 2: "spleen"}, None, "train", "a"
        ),
        DatasetItem(root / "cases/a/ct.nii.gz", seg, "abdomen", "CT", None, "cyst", "val", "a2"),
    ]
    write_manifest(root / "manifest.jsonl", items)
    lines = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    assert lines[0]["image"] == "cases/a/ct.nii.gz" and lines[0]["labels"] == {"1": "liver", "2": "spleen"}
    assert "labels" not in lines[1] and lines[1]["finding"] == "cyst" and lines[1]["split"] == "val"
    back = read_manifest(root / "manifest.jsonl")
    assert [b.image for b in back] == [i.image.resolve() for i in items]
    assert back[0].labels == {1: "liver", 2: "spleen"}
    assert back[1].labels is None and back[1].label_names() == {1: "liver"}  # from the sidecar
    result = import_dataset(root)  # a folder holding manifest.jsonl
    assert result.layout == "manifest" and len(result.items) == 2 and result.ok


@pytest.mark.parametrize(
    "line, problem",
    [
        ("{not json", "line 2: not valid JSON"),
        ('{"label": "x.nii.gz", "region": "abdomen"}', "line 2: missing field 'image'"),
        ('{"image": "x.nii.gz", "region": "abdomen", "labels": {"one": "liver"}}', "line 2:"),
    ],
)
def test_malformed_manifest_names_file_and_line(tmp_path, line, problem):
    path = tmp_path / "m.jsonl"
    path.write_text('{"image": "a.nii.gz", "label": null, "region": "brain"}\n' + line + "\n")
    with pytest.raises(DatasetError) as info:
        read_manifest(path)
    assert problem in str(info.value) and "m.jsonl" in str(info.value)
    with pytest.raises(DatasetError, match="not found"):
        read_manifest(tmp_path / "missing.jsonl")


# ------------------------------------------------------------------------------------ TotalSegmentator


@pytest.fixture()
def totalseg(tmp_path) -> Path:
    root = tmp_path / "Totalsegmentator_dataset"
    # s0001: abdomen + thorax (lung, aorta) + spine (L1); humerus and brain files exist but are empty
    case = root / "s0001"
    write(case / "ct.nii.gz", ct(1))
    segs = {
        "liver": box(slice(2, 8), slice(3, 9), slice(2, 7)),
        "spleen": box(slice(2, 6), slice(3, 8), slice(10, 14)),
        "aorta": box(slice(0, 16), slice(10, 12), slice(7, 9)),
        "vertebrae_L1": box(slice(4, 8), slice(12, 15), slice(6, 10)),
        "lung_upper_lobe_left": box(slice(12, 16), slice(2, 9), slice(9, 15)),
        "humerus_left": np.zeros(SHAPE, np.uint8),
        "brain": np.zeros(SHAPE, np.uint8),
        "not_a_structure": box(slice(0, 1), slice(0, 1), slice(0, 1)),
    }
    for name, mask in segs.items():
        write(case / "segmentations" / f"{name}.nii.gz", mask)
    # s0002: liver fine, spleen written on another grid
    case = root / "s0002"
    write(case / "ct.nii.gz", ct(2))
    write(case / "segmentations" / "liver.nii.gz", box(slice(3, 9), slice(3, 9), slice(3, 9)))
    write(
        case / "segmentations" / "spleen.nii.gz",
        box(slice(3, 9), slice(3, 9), slice(3, 9)),
        spacing=(1, 1, 1),
    )
    # s0003: no ct.nii.gz; s0004: no segmentations folder
    write(root / "s0003" / "segmentations" / "liver.nii.gz", box(slice(3, 9), slice(3, 9), slice(3, 9)))
    write(root / "s0004" / "ct.nii.gz", ct(4))
    (root / "meta.csv").write_text("image_id;age;split\ns0001;50;train\ns0002;60;test\n")
    return root


def test_totalsegmentator_import_splits_cases_into_regions(totalseg, tmp_path):
    cache = tmp_path / "cache"
    assert detect_layout(totalseg) == "totalsegmentator"
    result = import_dataset(totalseg, cache)
    by = {(i.case_id, i.region): i for i in result.items}
    assert sorted(by) == [("s0001", "abdomen"), ("s0001", "spine"), ("s0001", "thorax"), ("s0002", "abdomen")]
    assert summarize(result.items) == {
        "abdomen": 2, "brain": 0, "head_neck": 0, "lower_limb": 0, "pelvis": 0, "spine": 1, "thorax": 1, "upper_limb": 0,
    }  # fmt: skip
    abdomen = by["s0001", "abdomen"]
    # region-specific ids 1..n in the taxonomy's order; shared aorta and L1 stay in the abdomen's set
    assert abdomen.labels == {1: "liver", 2: "spleen", 3: "aorta", 4: "vertebrae_L1"}
    assert abdomen.split == "train" and by["s0002", "abdomen"].split == "test"
    label = load_label_map(abdomen.label)
    assert label.names == abdomen.labels  # sidecar written next to the cached map
    ct_image = sitk.ReadImage(str(abdomen.image))
    assert (
        label.geometry.spacing == tuple(ct_image.GetSpacing())
        and label.geometry.origin == ct_image.GetOrigin()
    )
    assert (label.array == 1).sum() == 6 * 6 * 5 and (label.array == 4).sum() == 4 * 3 * 4
    thorax = by["s0001", "thorax"]
    assert thorax.labels == {1: "lung_upper_lobe_left", 2: "aorta"}
    spine = load_label_map(by["s0001", "spine"].label)
    assert by["s0001", "spine"].labels == {1: "vertebrae_L1"} and spine.values() == [1]
    problems = reasons(result.problems)
    assert sorted(problems) == ["s0003", "s0004", "spleen.nii.gz"]
    assert problems["s0003"] == "missing file (ct.nii.gz)"
    assert problems["s0004"] == "missing folder (segmentations/)"
    assert problems["spleen.nii.gz"].startswith(
        "label grid != image grid (label vs image: spacing (1, 1, 1) vs (1.5, 1.5, 2))"
    )
    assert any("not_a_structure" in note for note in result.notes)
    # every imported item passes validation
    assert validate_items(result.items).ok


def test_totalsegmentator_import_reuses_its_cache(totalseg, tmp_path):
    cache = tmp_path / "cache"
    first = import_dataset(totalseg, cache)
    stamp = (cache / "s0001" / "abdomen.nii.gz").stat().st_mtime_ns
    second = import_dataset(totalseg, cache)
    assert [(i.case_id, i.region, i.labels) for i in second.items] == [
        (i.case_id, i.region, i.labels) for i in first.items
    ]
    assert (cache / "s0001" / "abdomen.nii.gz").stat().st_mtime_ns == stamp


# --------------------------------------------------------------------------------------- nnU-Net / MSD


def test_nnunet_v2_import_splits_multi_region_labels(tmp_path):
    root = tmp_path / "Dataset042_Organs"
    (root).mkdir()
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "labels": {"background": 0, "liver": 1, "Spleen": 2, "bladder": 3},
                "channel_names": {"0": "CT"},
                "file_ending": ".nii.gz",
                "numTraining": 4,
            }
        )
    )
    three = box(slice(1, 5), slice(1, 5), slice(1, 5)) + 2 * box(slice(8, 12), slice(1, 5), slice(1, 5))
    three = three + 3 * box(slice(1, 5), slice(9, 13), slice(9, 13))
    write(root / "imagesTr" / "case_000_0000.nii.gz", ct(0))
    write(root / "labelsTr" / "case_000.nii.gz", three.astype(np.uint8))
    write(root / "imagesTr" / "case_001_0000.nii.gz", ct(1))
    write(root / "labelsTr" / "case_001.nii.gz", box(slice(1, 5), slice(1, 5), slice(1, 5)))
    write(root / "labelsTr" / "case_002.nii.gz", box(slice(1, 5), slice(1, 5), slice(1, 5)))  # no image
    write(root / "imagesTr" / "case_003_0000.nii.gz", ct(3))
    write(root / "labelsTr" / "case_003.nii.gz", 7 * box(slice(1, 5), slice(1, 5), slice(1, 5)))
    assert detect_layout(root) == "nnunet"
    result = import_dataset(root, tmp_path / "cache")
    got = {(i.case_id, i.region): i for i in result.items}
    assert sorted(got) == [("case_000", "abdomen"), ("case_000", "pelvis"), ("case_001", "abdomen")]
    assert got["case_000", "abdomen"].labels == {1: "liver", 2: "spleen"}
    assert got["case_000", "pelvis"].labels == {1: "urinary_bladder"}
    pelvis = load_label_map(got["case_000", "pelvis"].label)
    assert pelvis.values() == [1] and (pelvis.array == 1).sum() == 64
    abdomen = load_label_map(got["case_000", "abdomen"].label)
    assert abdomen.values() == [1, 2]
    assert all(i.modality == "CT" for i in result.items)
    problems = reasons(result.problems)
    assert problems == {
        "case_002_0000.nii.gz": "missing file (image)",
        "case_003.nii.gz": "unknown label value(s) [7] (dataset.json declares [1, 2, 3])",
    }
    assert validate_items(result.items).ok


def test_msd_import_keeps_unknown_labels_with_the_single_region(tmp_path):
    root = tmp_path / "Task03_Liver"
    write(root / "imagesTr" / "liver_0.nii.gz", ct(0))
    seg = box(slice(1, 9), slice(1, 9), slice(1, 9)) + box(slice(3, 5), slice(3, 5), slice(3, 5))
    write(root / "labelsTr" / "liver_0.nii.gz", seg.astype(np.uint8))
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "name": "Liver",
                "modality": {"0": "CT"},
                "labels": {"0": "background", "1": "liver", "2": "cancer"},
                "training": [{"image": "./imagesTr/liver_0.nii.gz", "label": "./labelsTr/liver_0.nii.gz"}],
            }
        )
    )
    assert detect_layout(root) == "msd"
    result = import_dataset(root, tmp_path / "cache")
    assert len(result.items) == 1 and result.ok
    item = result.items[0]
    assert item.region == "abdomen" and item.labels == {1: "liver", 2: "cancer"}
    assert item.label == root / "labelsTr" / "liver_0.nii.gz"  # ids already 1..n: no copy
    assert validate_items(result.items).ok


def test_msd_brain_tumour_needs_a_region(tmp_path):
    root = tmp_path / "Task01_BrainTumour"
    write(root / "imagesTr" / "BRATS_001.nii.gz", ct(0).astype(np.float32) + 2000)
    write(root / "labelsTr" / "BRATS_001.nii.gz", box(slice(1, 9), slice(1, 9), slice(1, 9)))
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
                "labels": {
                    "0": "background",
                    "1": "edema",
                    "2": "non-enhancing tumor",
                    "3": "enhancing tumour",
                },
            }
        )
    )
    with pytest.raises(DatasetError, match="none of the labels"):
        import_dataset(root, tmp_path / "cache")
    result = import_dataset(root, tmp_path / "cache", region="brain")
    item = result.items[0]
    assert item.region == "brain" and item.modality == "MR"
    assert item.labels == {1: "edema", 2: "non_enhancing_tumor", 3: "enhancing_tumour"}
    assert any("4 input channels" in n for n in result.notes)


def test_unrecognised_folder_is_a_dataset_error(tmp_path):
    (tmp_path / "random").mkdir()
    with pytest.raises(DatasetError, match="unrecognised dataset layout"):
        import_dataset(tmp_path / "random")
    with pytest.raises(DatasetError, match="not found"):
        import_dataset(tmp_path / "nothing")


# ------------------------------------------------------------------------------------------ validation


def test_validation_lists_every_bad_item_and_keeps_the_good(tmp_path):
    image = write(tmp_path / "ct.nii.gz", ct())
    good_label = write(tmp_path / "good.nii.gz", box(slice(2, 6), slice(2, 6), slice(2, 6)))
    other_grid = write(
        tmp_path / "grid.nii.gz", box(slice(2, 6), slice(2, 6), slice(2, 6)), spacing=(1, 1, 1)
    )
    unknown_value = write(tmp_path / "value.nii.gz", 5 * box(slice(2, 6), slice(2, 6), slice(2, 6)))
    empty = write(tmp_path / "empty.nii.gz", np.zeros(SHAPE, np.uint8))
    no_names = write(tmp_path / "nonames.nii.gz", box(slice(2, 6), slice(2, 6), slice(2, 6)))
    (tmp_path / "broken.nii.gz").write_text("text, not an image")
    names = {1: "liver"}

    def item(case, label, img=image, region="abdomen", labels=names):
        return DatasetItem(img, label, region, "CT", labels, case_id=case)

    items = [
        item("good", good_label),
        item("missing_image", good_label, img=tmp_path / "nope.nii.gz"),
        item("missing_label", tmp_path / "gone.nii.gz"),
        item("unreadable", good_label, img=tmp_path / "broken.nii.gz"),
        item("grid", other_grid),
        item("value", unknown_value),
        item("empty", empty),
        item("region", good_label, region="elbow"),
        item("nonames", no_names, labels=None),
        item("classification_only", None),
        item("good2", good_label),
    ]
    progress = []
    result = validate_items(items, progress=progress.append)
    assert [i.case_id for i in result.items] == ["good", "classification_only", "good2"]
    got = {p.case_id: p.reason for p in result.problems}
    assert got["missing_image"] == "missing file (image)"
    assert got["missing_label"] == "missing file (label)"
    assert got["unreadable"].startswith("unreadable image: not a gzip file")
    assert got["grid"].startswith("label grid != image grid")
    assert got["value"] == "unknown label value(s) [5] (declared: [1])"
    assert got["empty"] == "empty label (no foreground voxels)"
    assert got["region"] == "unknown region 'elbow'"
    assert got["nonames"].startswith("no label names")
    assert len(result.problems) == 8
    assert {p.case_id: p.path.name for p in result.problems}["grid"] == "grid.nii.gz"
    assert progress[-1].step == progress[-1].total == len(items)
    assert summarize(result.items)["abdomen"] == 3
