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
