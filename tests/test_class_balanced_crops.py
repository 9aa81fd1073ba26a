"""Class-balanced patch centres (``crop_sampling="class"``): a small structure gets as many foreground crops
as a large organ; with "voxel" (uniform over foreground voxels) it is almost never the centre."""

from __future__ import annotations

import numpy as np
import pytest
from test_engine_train_helpers import make_blob_dataset

from lorkd_core.engine import data_loading
from lorkd_core.engine.config import DecomposeConfig
from lorkd_core.errors import ConfigError

PATCH = (16, 16, 16)


def _case(mode: str) -> data_loading.CachedCase:
    label = np.zeros((48, 48, 48), np.int16)
    label[:30, :30, :30] = 1  # 27,000 voxels
    label[44:46, 44:46, 44:46] = 2  # 8 voxels, far from the large one
    if mode == "class":
        fg, bounds = data_loading._class_points(label)
    else:
        fg, bounds = np.argwhere(label > 0), np.zeros(0, np.int64)
    return data_loading.CachedCase(image=np.zeros(label.shape, np.float32), label=label, region="abdomen",
                                   target=0, case_id="c", fg=fg.astype(np.int32), fg_bounds=bounds)


def _share_with_small(mode: str, draws: int = 400) -> float:
    case = _case(mode)
    hits = 0
    for seed in range(draws):
        _, lab = data_loading._crop(case, PATCH, np.random.default_rng(seed), "segmentation", 3)
        hits += bool((lab == 2).any())
    return hits / draws


def test_class_points_group_each_class_with_a_cap():
    label = np.zeros((40, 40, 40), np.int16)
    label[:20] = 3
    label[30, 30, 30] = 1
    fg, bounds = data_loading._class_points(label)
    assert bounds.tolist() == [0, 1, 1 + data_loading._MAX_CLASS_POINTS]
    assert label[tuple(fg[0])] == 1
    assert (label[tuple(fg[1:].T)] == 3).all()
    empty, none = data_loading._class_points(np.zeros((4, 4, 4), np.int16))
    assert empty.shape == (0, 3) and len(none) == 0


def test_small_structure_is_centred_far_more_often_with_class_sampling():
    by_class, by_voxel = _share_with_small("class"), _share_with_small("voxel")
    # about half of the 2/3 foreground draws pick the small class; by voxel it is 8 of 27,008 voxels
    assert by_class > 0.25
    assert by_voxel < 0.05
    assert by_class > 5 * by_voxel


@pytest.fixture(scope="module")
def blob_items(tmp_path_factory):
    from lorkd_core.data.manifest import read_manifest

    return read_manifest(make_blob_dataset(tmp_path_factory.mktemp("blobs"), cases_per_region=1,
                                           regions=("abdomen", "thorax")))


def test_training_set_with_class_sampling_is_pure_in_seed_and_step(blob_items):
    def make() -> data_loading.TrainingSet:
        return data_loading.TrainingSet(blob_items, task="segmentation", patch_size=PATCH,
                                        spacing=(3.0, 3.0, 3.0), seed=5, crop_sampling="class")

    first, second = make(), make()
    try:
        for case in (c for cases in first.cases.values() for c in cases):
            assert len(case.fg_bounds) >= 2 and case.fg_bounds[-1] == len(case.fg)
        a, b = first.batch(step=3, batch_size=4), second.batch(step=3, batch_size=4)
        assert (a.image == b.image).all() and (a.target == b.target).all()
    finally:
        first.close()
        second.close()


def test_crop_sampling_is_validated():
    assert DecomposeConfig().crop_sampling == "voxel"
    assert DecomposeConfig.from_dict({"crop_sampling": "class"}).crop_sampling == "class"
    with pytest.raises(ConfigError, match="crop_sampling"):
        DecomposeConfig.from_dict({"crop_sampling": "organ"})
    with pytest.raises(ValueError, match="crop_sampling"):
        data_loading.TrainingSet([], task="segmentation", patch_size=PATCH, spacing=(3.0, 3.0, 3.0),
                                 crop_sampling="organ")
