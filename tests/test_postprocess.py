"""Label-map clean-up: one-piece organs keep their largest component, multi-piece structures stay."""

from __future__ import annotations

import numpy as np

from lorkd_core.engine.postprocess import SINGLE_PIECE, keep_largest_pieces

NAMES = {1: "liver", 2: "vertebrae", 3: "spleen"}


def _labels() -> np.ndarray:
    a = np.zeros((20, 20, 20), np.int16)
    a[2:10, 2:10, 2:10] = 1  # the liver
    a[15:17, 15:17, 15:17] = 1  # a liver island elsewhere (e.g. in an arm)
    a[2:4, 15:18, 2:4] = 2  # two separate vertebrae: both are real
    a[6:8, 15:18, 2:4] = 2
    a[12:14, 2:5, 12:15] = 3  # one spleen piece: nothing to remove
    return a


def test_islands_of_one_piece_organs_go_to_background():
    a = _labels()
    out = keep_largest_pieces(a, NAMES)
    assert (out[15:17, 15:17, 15:17] == 0).all()
    assert (out[2:10, 2:10, 2:10] == 1).all()
    assert np.array_equal(out == 2, a == 2)
    assert np.array_equal(out == 3, a == 3)
    assert (a[15:17, 15:17, 15:17] == 1).all()  # the input is left as it was


def test_diagonal_neighbours_are_one_piece():
    a = np.zeros((6, 6, 6), np.int16)
    a[1, 1, 1] = a[2, 2, 2] = a[3, 3, 3] = 1  # touching only at corners: 26-connected
    assert np.array_equal(keep_largest_pieces(a, NAMES), a)


def test_only_anatomically_single_structures_are_cleaned():
    assert {"liver", "spleen", "stomach", "heart", "brain"} <= SINGLE_PIECE
    assert not {"vertebrae", "ribs", "patella", "colon", "small_bowel", "thyroid_gland"} & SINGLE_PIECE


# ---------------------------------------------------------------- air around the patient (CT)

AIR_NAMES = {1: "liver", 2: "inferior_vena_cava", 3: "lung_left", 4: "stomach"}


def _body() -> tuple[np.ndarray, np.ndarray]:
    """A 4-slice CT: air around a body (0 HU) that encloses an air pocket (stomach gas)."""
    hu = np.full((4, 30, 30), -1000.0)
    hu[:, 5:25, 5:25] = 0.0
    hu[:, 12:16, 12:16] = -900.0  # enclosed air
    return hu, np.zeros(hu.shape, np.int16)


def test_solid_structures_are_cleared_from_the_air_around_the_patient():
    from lorkd_core.engine.postprocess import clear_outside_air

    hu, labels = _body()
    labels[:, 8:11, 8:11] = 1  # liver inside the body: kept
    labels[:, 1:3, 1:3] = 2  # "vena cava" in front of the patient: cleared
    labels[:, 3:7, 20:22] = 1  # liver straddling the skin: only its part in the air goes
    out = clear_outside_air(labels, hu, AIR_NAMES)
    assert (out[:, 8:11, 8:11] == 1).all()
    assert (out[:, 1:3, 1:3] == 0).all()
    assert (out[:, 3:5, 20:22] == 0).all() and (out[:, 5:7, 20:22] == 1).all()
    assert (labels[:, 1:3, 1:3] == 2).all()  # the input is left as it was


def test_air_filled_structures_and_enclosed_air_are_kept():
    from lorkd_core.engine.postprocess import clear_outside_air, holds_air

    hu, labels = _body()
    labels[:, 12:16, 12:16] = 1  # a solid label on enclosed air: not outside, kept
    labels[:, 0:2, 10:20] = 3  # lung reaching the border of a tight field of view: kept
    labels[:, 28:30, 10:20] = 4  # stomach likewise
    out = clear_outside_air(labels, hu, AIR_NAMES)
    assert np.array_equal(out, labels)
    assert holds_air("lung_upper_lobe_left") and holds_air("trachea") and not holds_air("liver")


def test_predictor_cleans_up_by_default_and_can_be_told_not_to():
    from lorkd_core.engine.inference import Predictor

    assert Predictor("cpu").clean_up and not Predictor("cpu", clean_up=False).clean_up
