"""Label-map clean-up after the argmax: organs that are one piece keep only their largest piece.

A network trained on phantoms leaves small islands on real scans (e.g. liver voxels in the arm's
soft tissue); an organ that is a single connected body in every patient cannot be more than one piece,
so its smaller 3D components are set to background. Structures that can be several pieces in one label
(vertebrae, ribs, bowel, both patellae, thyroid lobes, vessels that leave the field of view) are left alone.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

SINGLE_PIECE = frozenset({
    "liver", "spleen", "kidney_left", "kidney_right", "gallbladder", "stomach", "pancreas",
    "urinary_bladder", "prostate", "uterus", "heart", "brain",
})


def keep_largest_pieces(labels: np.ndarray, names: Mapping[int, str]) -> np.ndarray:
    """``labels`` with every SINGLE_PIECE structure reduced to its largest 26-connected component."""
    out = labels.copy()
    structure = np.ones((3,) * labels.ndim, dtype=bool)
    for value, name in names.items():
        if name not in SINGLE_PIECE:
            continue
        mask = labels == value
        if not mask.any():
            continue
        pieces, count = ndimage.label(mask, structure=structure)
        if count <= 1:
            continue
        sizes = np.bincount(pieces.ravel())
        sizes[0] = 0
        out[mask & (pieces != int(sizes.argmax()))] = 0
    return out
