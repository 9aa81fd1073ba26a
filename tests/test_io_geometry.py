"""Canonical orientation and back: a prediction made in canonical space lands on the original grid."""

from __future__ import annotations

import numpy as np
import pytest

from lorkd_core.io import (
    CANONICAL_ORIENTATION,
    Geometry,
    Scan,
    from_canonical,
    labels_to_canonical,
    orientation_code,
    to_canonical,
)
from lorkd_core.io.geometry import canonical_to_scan_array


def physical_labels(points: np.ndarray) -> np.ndarray:
    """An asymmetric 'prediction' defined in LPS world space (mm)."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    out = np.zeros(len(points), np.int16)
    out[(x + 4) ** 2 / 64 + (y + 6) ** 2 / 36 + (z + 4) ** 2 / 81 < 1] = 1  # right, anterior, inferior
    out[(x - 10) ** 2 + (y - 8) ** 2 + (z - 10) ** 2 < 36] = 2  # patient's left, posterior, superior
    out[(x + 8) ** 2 / 25 + (y - 9) ** 2 / 36 + (z - 12) ** 2 / 49 < 1] = 3  # right, posterior, superior
    return out


def voxel_points(g: Geometry) -> np.ndarray:
    z, y, x = np.meshgrid(*[np.arange(n) for n in g.shape], indexing="ij")
    return g.index_to_physical(np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1))


def rotation(axis: str, degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    if axis == "z":
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


DIRECTIONS = {
    "LPS": np.eye(3),
    "RAS": np.diag([-1.0, -1.0, 1.0]),
    "permuted": np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]]),  # sagittal-like storage
    "oblique": rotation("z", 20) @ rotation("x", -15) @ np.diag([-1.0, 1, 1]),
}


def make_scan(direction: np.ndarray, spacing=(1.0, 1.2, 1.5), size=(34, 30, 26)) -> Scan:
    center = np.array([2.0, -1.0, 3.0])
    # centre the voxel grid on the same point whatever the direction, so LPS and RAS share voxel centres
    origin = center - direction @ ((np.asarray(size) - 1) * np.asarray(spacing) / 2)
    g = Geometry(size, spacing, tuple(origin), tuple(direction.ravel()))
    array = physical_labels(voxel_points(g)).reshape(g.shape).astype(np.float32) * 100 - 50
    return Scan(array, g.spacing, g.origin, g.direction, "CT")


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_round_trip_is_exact_without_resampling(name):
    scan = make_scan(DIRECTIONS[name])
    array, grid = to_canonical(scan)
    assert orientation_code(grid.grid.direction) == CANONICAL_ORIENTATION or name == "oblique"
    prediction = physical_labels(voxel_points(grid.grid)).reshape(grid.shape)
    # the canonical image and a prediction made in canonical space agree voxel for voxel
    np.testing.assert_array_equal(array > 0, prediction > 0)
    back = from_canonical(prediction, grid)
    truth = physical_labels(voxel_points(scan.geometry)).reshape(scan.array.shape)
    assert back.shape == scan.array.shape and back.dtype == prediction.dtype
    np.testing.assert_array_equal(back, truth)
    # and a label map on the scan's grid goes the other way for training
    np.testing.assert_array_equal(labels_to_canonical(truth, grid), prediction)


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_round_trip_with_resampling_stays_on_the_original_grid(name):
    scan = make_scan(DIRECTIONS[name])
    array, grid = to_canonical(scan, spacing=1.1)
    assert grid.resampled and array.shape == grid.shape
    np.testing.assert_allclose(grid.grid.spacing, (1.1, 1.1, 1.1))
    prediction = physical_labels(voxel_points(grid.grid)).reshape(grid.shape)
    back = from_canonical(prediction, grid)
    truth = physical_labels(voxel_points(scan.geometry)).reshape(scan.array.shape)
    assert back.shape == scan.array.shape
    assert (labels_to_canonical(truth, grid) == prediction).mean() > 0.95
    assert (back == truth).mean() > 0.95  # only boundary voxels may move by the resampling
    points = voxel_points(scan.geometry)
    for label in (1, 2, 3):
        assert abs(int((back == label).sum()) - int((truth == label).sum())) < 0.1 * (truth == label).sum()
        # no systematic shift: centroids agree to well under a voxel
        shift = points[(back == label).ravel()].mean(0) - points[(truth == label).ravel()].mean(0)
        assert np.abs(shift).max() < 0.5, (label, shift)


def test_lps_and_ras_storage_give_the_same_canonical_array():
    lps, _ = to_canonical(make_scan(DIRECTIONS["LPS"]))
    ras, grid = to_canonical(make_scan(DIRECTIONS["RAS"]))
    np.testing.assert_array_equal(lps, ras)
    assert grid.flips == (True, True, False)
    # canonical axes grow towards the patient's left, posterior, superior: label 2 sits at high indices
    g = grid.grid
    where = np.argwhere(physical_labels(voxel_points(g)).reshape(g.shape) == 2).mean(axis=0)
    assert np.all(where > np.asarray(g.shape) / 2)


def test_continuous_maps_go_back_too():
    scan = make_scan(DIRECTIONS["RAS"])
    array, grid = to_canonical(scan, spacing=(1.0, 1.2, 1.5))
    assert not grid.resampled
    np.testing.assert_array_equal(canonical_to_scan_array(array, grid), scan.array)


def test_shape_mismatch_is_refused():
    _, grid = to_canonical(make_scan(DIRECTIONS["LPS"]))
    with pytest.raises(ValueError, match="canonical grid"):
        from_canonical(np.zeros((2, 2, 2), np.int16), grid)
