"""Predictor: canonicalise -> sliding window -> back on the scan's grid; cache, progress, cancel, Grad-CAM."""

from __future__ import annotations

import time

import numpy as np
import pytest
from test_inference_tiny import build_classifier, build_models, write_case

from lorkd_core.engine.catalog import entries_for_folder
from lorkd_core.engine.inference import Predictor
from lorkd_core.errors import JobCancelled, ModelError
from lorkd_core.io import load_scan
from lorkd_core.progress import CancelToken

OBLIQUE = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # permuted and flipped axes


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("inference")
    build_models(root, regions=["abdomen", "thorax"])
    build_classifier(root)
    return root


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    image, _ = write_case(tmp_path_factory.mktemp("scan"), "abdomen", 3, shape_zyx=(12, 40, 50),
                          direction=OBLIQUE)
    return load_scan(image)


def _entry(models, name, region="abdomen"):
    return next(e for e in entries_for_folder(models / name) if e.region == region)


@pytest.mark.parametrize("name", ["teacher", "experts", "baseline"])
def test_segment_on_the_scan_grid_with_region_labels(models, scan, name):
    entry = _entry(models, name)
    steps = []
    result = Predictor("cpu").segment(scan, entry, progress=steps.append)
    assert result.labels.shape == scan.array.shape and result.labels.dtype == np.int16
    assert set(np.unique(result.labels)) <= {0, 1, 2}
    assert result.label_names == {1: "liver", 2: "spleen"}
    assert result.region == "abdomen" and result.model_id == entry.id
    totals = {p.total for p in steps if p.total > 1}
    assert totals and max(totals) > 1  # the 40 x 50 in-plane grid needs several windows
    assert steps[-1].step == steps[-1].total
    volumes = result.volumes_ml()
    voxel_ml = np.prod(scan.spacing) / 1000
    assert volumes["liver"] == pytest.approx(float((result.labels == 1).sum()) * voxel_ml)


def test_experts_differ_per_region_and_from_baseline(models, scan):
    p = Predictor("cpu")
    a = p.segment(scan, _entry(models, "experts", "abdomen")).labels
    t = p.segment(scan, _entry(models, "experts", "thorax")).labels
    b = p.segment(scan, _entry(models, "baseline", "abdomen")).labels
    assert not np.array_equal(a, t) or not np.array_equal(a, b)


def test_switching_between_cached_experts_is_instant(models, scan):
    p = Predictor("cpu")
    abdomen, thorax = _entry(models, "experts", "abdomen"), _entry(models, "experts", "thorax")
    start = time.perf_counter()
    first = p.prepare(abdomen)
    p.prepare(thorax)
    cold = time.perf_counter() - start
    switches = []
    for entry in (abdomen, thorax) * 5:
        start = time.perf_counter()
        module = p.prepare(entry)
        switches.append(time.perf_counter() - start)
    assert p.prepare(abdomen) is first and p.is_cached(thorax)
    assert max(switches) < 0.1, f"switch took {max(switches) * 1000:.1f} ms (first use {cold * 1000:.0f} ms)"
    assert module is p.prepare(thorax)


def test_cancel_stops_between_windows(models, scan):
    token = CancelToken()
    seen = []

    def progress(p):
        seen.append(p.step)
        if p.step >= 1 and p.total > 1:
            token.cancel()

    with pytest.raises(JobCancelled):
        Predictor("cpu").segment(scan, _entry(models, "experts"), progress=progress, cancel=token)
    assert len([s for s in seen if s >= 1]) <= 2


def test_classify_probabilities_and_gradcam(models, scan):
    entry = _entry(models, "classifier")
    result = Predictor("cpu").classify(scan, entry)
    assert set(result.probabilities) == {"none", "cyst"}
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert result.saliency is not None and result.saliency.shape == scan.array.shape
    assert 0.0 <= result.saliency.min() and result.saliency.max() <= 1.0 + 1e-6
    assert result.top in result.probabilities


def test_task_mismatch_is_a_model_error(models, scan):
    with pytest.raises(ModelError, match="not a segmentation model"):
        Predictor("cpu").segment(scan, _entry(models, "classifier"))
