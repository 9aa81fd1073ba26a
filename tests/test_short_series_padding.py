"""A short series is a slab of a longer body: thin-slab training patches continue it with copies of its
first/last slice along z, as segmentation inference does (tests/test_real_ct_pipeline.py), not with air.

Before: ``_thin_slab`` filled the training patch around the slab with air (label: background).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_engine_train_helpers import make_blob_dataset

from lorkd_core.engine import data_loading


def _runs(volume: np.ndarray) -> tuple[int, int]:
    """How many slices from the start equal the first one, and from the end the last one."""
    head = 1
    while head < len(volume) and np.array_equal(volume[head], volume[0]):
        head += 1
    tail = 1
    while tail < len(volume) and np.array_equal(volume[-1 - tail], volume[-1]):
        tail += 1
    return head, tail


# ---------------------------------------------------------------- training slabs


def test_thin_slab_is_continued_with_its_edge_slices():
    depth = 32
    image = np.random.default_rng(1).normal(size=(depth, 8, 8)).astype(np.float32)
    label = np.arange(depth, dtype=np.int64)[:, None, None] * np.ones((1, 8, 8), np.int64)
    for seed in range(20):
        out, lab = data_loading._thin_slab(image, label, np.random.default_rng(seed))
        assert out.shape == image.shape and lab is not None
        # the slab is the run of slices that are still the input's own
        kept = [z for z in range(depth) if np.array_equal(out[z], image[z])]
        start, stop = kept[0], kept[-1] + 1
        assert kept == list(range(start, stop)) and data_loading._SLAB_MIN <= stop - start < depth
        for z in range(start):  # before the fix: the patch minimum (air), label 0
            np.testing.assert_array_equal(out[z], image[start])
            np.testing.assert_array_equal(lab[z], label[start])
        for z in range(stop, depth):
            np.testing.assert_array_equal(out[z], image[stop - 1])
            np.testing.assert_array_equal(lab[z], label[stop - 1])
        np.testing.assert_array_equal(lab[start:stop], label[start:stop])
        again, lab_again = data_loading._thin_slab(image, label, np.random.default_rng(seed))
        np.testing.assert_array_equal(again, out)
        np.testing.assert_array_equal(lab_again, lab)
    np.testing.assert_array_equal(image, np.random.default_rng(1).normal(size=(depth, 8, 8)).astype(np.float32))


@pytest.fixture(scope="module")
def blob_items(tmp_path_factory):
    from lorkd_core.data.manifest import read_manifest

    return read_manifest(make_blob_dataset(tmp_path_factory.mktemp("blobs"), cases_per_region=1,
                                           regions=("abdomen", "thorax")))


def test_training_slab_patches_are_edge_continued_and_pure_in_seed_and_step(blob_items, monkeypatch):
    monkeypatch.setattr(data_loading, "_SLAB_PROB", 1.0)  # every augmented 3D patch is a slab
    patch = (16, 16, 16)
    data = data_loading.TrainingSet(blob_items, task="segmentation", patch_size=patch, spacing=(3.0, 3.0, 3.0),
                                    seed=3)
    try:
        batch = data.batch(step=2, batch_size=4)
        again = data_loading.TrainingSet(blob_items, task="segmentation", patch_size=patch,
                                         spacing=(3.0, 3.0, 3.0), seed=3)
        try:
            replay = again.batch(step=2, batch_size=4)
        finally:
            again.close()
    finally:
        data.close()
    assert torch.equal(batch.image, replay.image) and torch.equal(batch.target, replay.target)
    keep_max = max(data_loading._SLAB_MIN + 1, patch[0] * 3 // 5)
    for image, target in zip(batch.image[:, 0].numpy(), batch.target[:, 0].numpy()):
        head, tail = _runs(image)
        # at least depth - keep_max slices are copies of an edge slice (the slab keeps < keep_max)
        assert (head - 1) + (tail - 1) >= patch[0] - keep_max
        # ...and they are copies of the slab's body, not uniform air (before the fix: the case minimum)
        for z in (0, -1):
            assert np.ptp(image[z]) > 1e-3
        lab_head, lab_tail = _runs(target)
        assert lab_head >= head and lab_tail >= tail
