"""MONAI training and inference pipelines on phantoms and on the real test scans."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lorkd_core.data.phantoms import generate_case, write_phantom_dataset
from lorkd_core.data.transforms import (
    RandFlipLRd,
    case_item,
    infer_transforms,
    lr_swap_pairs,
    to_metatensor,
    train_transforms,
)

PATCH = (32, 32, 32)


@pytest.fixture(scope="module")
def case():
    return generate_case("abdomen", 11, shape=(48, 64, 64))


def _values(t: torch.Tensor) -> set[int]:
    return {int(v) for v in torch.unique(t)}


def test_train_pipeline_gives_patches_with_labels_preserved(case):
    tr = train_transforms((4.0, 4.0, 4.0), PATCH, num_samples=3, seed=0)
    out = tr(case_item(case))
    assert isinstance(out, list) and len(out) == 3
    source = {int(v) for v in np.unique(case.labels)}
    for sample in out:
        img, lab = sample["image"], sample["label"]
        assert tuple(img.shape) == (1, *PATCH) and img.dtype == torch.float32
        assert tuple(lab.shape) == (1, *PATCH) and lab.dtype == torch.int64
        assert _values(lab) <= source
        assert torch.isfinite(img).all() and -3 < float(img.min()) and float(img.max()) < 3
    # pos:neg = 2:1 sampling: most patches contain labelled anatomy.
    assert sum(bool((s["label"] > 0).any()) for s in out) >= 2


def test_train_pipeline_is_deterministic_for_a_seed(case):
    a = train_transforms((4.0, 4.0, 4.0), PATCH, num_samples=2, seed=3)(case_item(case))
    b = train_transforms((4.0, 4.0, 4.0), PATCH, num_samples=2, seed=3)(case_item(case))
    c = train_transforms((4.0, 4.0, 4.0), PATCH, num_samples=2, seed=4)(case_item(case))
    for x, y in zip(a, b):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"])
    assert not all(torch.equal(x["image"], z["image"]) for x, z in zip(a, c))


def test_without_augmentation_patches_are_exact_crops(case):
    tr = train_transforms((4.0, 4.0, 4.0), PATCH, num_samples=2, strength=0.0, seed=0)
    for sample in tr(case_item(case)):
        img = sample["image"]
        assert float(img.min()) >= -1.0 and float(img.max()) <= 1.0  # CT window [-1000, 1000] -> [-1, 1]


def test_pipeline_loads_a_written_dataset_item(tmp_path):
    manifest = write_phantom_dataset(tmp_path, 1, ["thorax"], seed=2, size=40)
    root = manifest.parent
    item = {"image": str(root / "cases/thorax_000/ct.nii.gz"), "label": str(root / "cases/thorax_000/seg.nii.gz")}
    out = train_transforms((5.0, 5.0, 5.0), (24, 24, 24), num_samples=1, seed=0)(item)
    assert tuple(out[0]["image"].shape) == (1, 24, 24, 24)
    assert _values(out[0]["label"]) <= set(range(10))


def test_left_right_flip_swaps_paired_labels():
    names = {1: "kidney_left", 2: "kidney_right", 3: "liver"}
    pairs = lr_swap_pairs(names)
    assert pairs == {1: 2, 2: 1}
    labels = np.zeros((8, 8, 8), np.int16)
    labels[:, :, 6] = 1  # LPS: high x index = patient left
    labels[:, :, 1] = 2
    labels[:, 0, 3] = 3
    item = {"image": to_metatensor(labels.astype(np.float32)), "label": to_metatensor(labels, dtype=torch.int64)}
    flip = RandFlipLRd(["image", "label"], "label", pairs, prob=1.0)
    out = flip(item)
    lab = out["label"][0]
    assert int((lab == 3).sum()) == int((item["label"][0] == 3).sum())
    assert torch.equal(torch.flip(out["image"], dims=(1,)), item["image"])
    # Axis 0 runs left-right: the mirrored left kidney now lies on the patient's right and is called right.
    assert torch.equal(lab == 2, torch.flip(item["label"][0] == 1, dims=(0,)))
    assert torch.equal(lab == 1, torch.flip(item["label"][0] == 2, dims=(0,)))
    assert float(torch.nonzero(lab == 1).float()[:, 0].mean()) > 3.5  # LPS x index: high = patient left


def test_infer_pipeline_on_the_real_dicom_series(ct_dicom_dir):
    out = infer_transforms((3.0, 3.0, 3.0))({"image": str(ct_dicom_dir)})
    img = out["image"]
    assert img.shape[0] == 1 and img.dtype == torch.float32
    assert np.allclose(np.abs(np.diag(img.affine.numpy())[:3]), 3.0, atol=1e-3)
    # 512 x 0.977 mm -> ~167 voxels in-plane; 20 x 2 mm -> ~13 slices.
    assert 160 <= img.shape[1] <= 170 and 160 <= img.shape[2] <= 170 and 12 <= img.shape[3] <= 15
    assert float(img.min()) >= -1.0 and float(img.max()) <= 1.0
    assert float((img > -0.9).float().mean()) > 0.2  # the body is there


def test_infer_pipeline_mr_option(mni_t1_path):
    out = infer_transforms((4.0, 4.0, 4.0), modality="MR")({"image": str(mni_t1_path)})
    img = out["image"]
    assert float(img.min()) >= -1.0 and float(img.max()) <= 1.0
    assert float(img.std()) > 0.1


def test_normalize_intensity_matches_the_pipeline(case):
    from lorkd_core.data.transforms import normalize_intensity

    plain = normalize_intensity(case.image, "CT")
    assert plain.dtype == np.float32 and plain.min() >= -1 and plain.max() <= 1
    from lorkd_core.data.transforms import intensity_transforms

    step = intensity_transforms(["image"], "CT")[0]
    ref = step({"image": torch.from_numpy(case.image[None])})["image"][0].numpy()
    assert np.allclose(plain, ref, atol=1e-6)
    mr = normalize_intensity(np.random.default_rng(0).gamma(2.0, 50.0, (8, 8, 8)), "MR")
    assert mr.min() >= -1 and mr.max() <= 1


def test_arrays_with_geometry_and_phantom_geometry_agree(case):
    from_case = case_item(case)["image"]
    from_array = infer_transforms((4.0, 4.0, 4.0))({"image": case.image, "spacing": case.spacing,
                                                     "origin": case.origin, "direction": case.direction})["image"]
    expected = np.diag([-1.0, -1.0, 1.0]) @ np.diag(case.spacing)
    assert np.allclose(from_case.affine.numpy()[:3, :3], expected)
    assert np.allclose(np.abs(np.diag(from_array.affine.numpy())[:3]), 4.0, atol=1e-4)
