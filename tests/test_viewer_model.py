"""The viewer's Qt-free parts: reorientation, window/level, blending, difference codes, surfaces."""

from __future__ import annotations

import numpy as np
import pytest
from lorkd_studio.viewer.colormaps import (
    DIFF_CONFLICT,
    DIFF_ONLY_A,
    DIFF_ONLY_B,
    PRESETS,
    blend,
    build_lut,
    difference_labels,
    normalize_color,
    window_to_uint8,
)
from lorkd_studio.viewer.model import ViewerModel
from lorkd_studio.viewer.orientation import compute_reorientation

RAS_LIKE = (-1, 0, 0, 0, -1, 0, 0, 0, 1)


def test_identity_direction_is_a_plain_view():
    reo = compute_reorientation((4, 5, 6), (0.5, 0.7, 3.0))
    array = np.arange(120).reshape(4, 5, 6)
    assert reo.axes == (0, 1, 2) and reo.flips == (False, False, False)
    assert np.shares_memory(reo.to_display(array), array)
    assert reo.spacing == (0.5, 0.7, 3.0) and not reo.oblique


def test_flipped_direction_lands_on_the_same_display_grid():
    lps = np.random.default_rng(0).normal(size=(4, 5, 6))
    ras_stored = lps[:, ::-1, ::-1]  # same anatomy, x and y index axes reversed
    reo = compute_reorientation(ras_stored.shape, (1, 1, 1), (5.0, 4.0, 0.0), RAS_LIKE)
    np.testing.assert_array_equal(reo.to_display(ras_stored), lps)
    assert reo.origin == (0.0, 0.0, 0.0)
    assert reo.voxel_to_display((1, 0, 0)) == (1, 4, 5)
    assert reo.voxel_from_display(reo.voxel_to_display((3, 2, 1))) == (3, 2, 1)


def test_permuted_direction_swaps_axes_and_spacing():
    # Index x runs superior, index z runs posterior (a sagittally stored series).
    direction = (0, 0, 1, 0, 1, 0, 1, 0, 0)
    reo = compute_reorientation((7, 5, 3), (2.0, 1.0, 0.5), direction=direction)
    assert reo.shape == (3, 5, 7)
    assert reo.spacing == (0.5, 1.0, 2.0)
    for voxel in [(0, 0, 0), (6, 4, 2), (3, 1, 2)]:
        assert reo.voxel_from_display(reo.voxel_to_display(voxel)) == voxel


def test_oblique_direction_uses_nearest_axes_and_says_so():
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    reo = compute_reorientation((3, 4, 5), direction=(c, -s, 0, s, c, 0, 0, 0, 1))
    assert reo.axes == (0, 1, 2) and reo.oblique


def test_presets_map_hounsfield_units_as_expected():
    hu = np.array([-1000.0, -500.0, 40.0, 400.0, 2000.0])
    assert window_to_uint8(hu, *PRESETS["lung"]).tolist() == [36, 127, 225, 255, 255]
    assert window_to_uint8(hu, *PRESETS["bone"]).tolist() == [0, 0, 35, 127, 255]
    assert window_to_uint8(hu, *PRESETS["soft_tissue"])[2] == 127


def test_blend_colours_labels_and_hides_invisible_ones():
    gray = np.full((6, 6), 100, np.uint8)
    labels = np.zeros((6, 6), np.int16)
    labels[1:5, 1:5] = 2
    lut = build_lut(2, {2: (255, 0, 0)}, set(), 1.0)
    rgb = blend(gray, labels, lut)
    assert rgb[2, 2].tolist() == [255, 0, 0] and rgb[0, 0].tolist() == [100, 100, 100]
    hidden = blend(gray, labels, build_lut(2, {2: (255, 0, 0)}, {2}, 1.0))
    assert (hidden == 100).all()
    half = blend(gray, labels, build_lut(2, {2: (255, 0, 0)}, set(), 0.5), outline=False)
    assert half[2, 2].tolist() == [178, 50, 50]


def test_colours_accept_unit_floats_and_bytes():
    assert normalize_color((1.0, 0.5, 0.0)) == (255, 128, 0)
    assert normalize_color((1, 0, 0)) == (1, 0, 0)
    assert normalize_color([200, 10, 300]) == (200, 10, 255)


def test_difference_codes():
    a = np.array([0, 1, 1, 2, 0])
    b = np.array([0, 1, 0, 1, 3])
    assert difference_labels(a, b).tolist() == [0, 0, DIFF_ONLY_A, DIFF_CONFLICT, DIFF_ONLY_B]
    with pytest.raises(ValueError):
        difference_labels(a, b[:3])


def test_model_pixels_follow_radiological_convention():
    model = ViewerModel()
    volume = np.zeros((4, 5, 6), np.float32)
    model.set_volume(volume, (1, 1, 1), (0, 0, 0), None, "CT", (100, 0))
    model.set_crosshair((3, 0, 5))  # superior, anterior, patient left
    assert model.pixel_of_voxel("axial", model.crosshair) == (0, 5)  # top right
    assert model.pixel_of_voxel("coronal", model.crosshair) == (0, 5)  # top right
    assert model.pixel_of_voxel("sagittal", model.crosshair) == (0, 0)  # top left (anterior on the left)
    assert model.voxel_at_pixel("coronal", 0, 5) == (3, 0, 5)
    assert model.voxel_at_pixel("axial", 9, 0) is None
    with pytest.raises(ValueError):
        model.set_overlay(np.zeros((2, 2, 2), np.int16), {}, {})


def test_surfaces_are_closed_and_placed_in_world_millimetres():
    from lorkd_studio.viewer.surfaces import build_surfaces

    z, y, x = np.mgrid[:20, :30, :30]
    labels = np.zeros((20, 30, 30), np.int16)
    labels[(z - 10) ** 2 / 4 + (y - 15) ** 2 / 9 + (x - 15) ** 2 / 9 < 8] = 3
    labels[0:3, 0:3, 0:3] = 1  # touches the border: must still close
    surfaces = build_surfaces(labels, (1.0, 1.0, 2.0), (10.0, 0.0, 0.0))
    assert sorted(surfaces) == [1, 3]
    for mesh in surfaces.values():
        assert mesh.n_cells > 0 and mesh.n_open_edges == 0
    x0, x1, _, _, z0, z1 = surfaces[3].bounds
    assert 10 + 15 - 9 < (x0 + x1) / 2 < 10 + 15 + 9
    assert abs((z0 + z1) / 2 - 20.0) < 1.5
