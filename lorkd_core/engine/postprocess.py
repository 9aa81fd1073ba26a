"""Label-map clean-up after the argmax: organs that are one piece keep only their largest piece, and
nothing but air-filled structures is labelled in the air around the patient (CT).

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


# Structures that are (or may contain) air: their voxels may legitimately be air, even air that reaches the
# image border in a tightly cropped field of view.
_AIR_WORDS = ("lung", "trachea", "bronch", "airway", "stomach", "colon", "bowel", "duodenum", "esophagus",
              "sinus", "rectum")
AIR_HU = -500.0


def holds_air(name: str) -> bool:
    return any(word in name for word in _AIR_WORDS)


def clear_outside_air(labels: np.ndarray, hu: np.ndarray, names: Mapping[int, str]) -> np.ndarray:
    """``labels`` with every voxel of the air outside the patient set to background, except for air-filled
    structures. Outside air: per axial slice, the connected air (< -500 HU) that reaches the slice's border.

    On real CT the phantom-trained networks put small pieces of organs or vessels in front of the abdomen;
    no solid organ can be there. Air enclosed by the body (lungs, bowel gas) is never touched.
    """
    if labels.shape != hu.shape:
        raise ValueError(f"labels {labels.shape} and image {hu.shape} differ in shape")
    keep = [v for v, n in names.items() if holds_air(n)]
    air = hu < AIR_HU
    out = labels.copy()
    for z in range(labels.shape[0]):
        candidates = air[z] & (labels[z] > 0)
        if not candidates.any():
            continue
        pieces, _ = ndimage.label(air[z])
        edge = np.unique(np.concatenate([pieces[0], pieces[-1], pieces[:, 0], pieces[:, -1]]))
        outside = np.isin(pieces, edge[edge > 0])
        drop = candidates & outside & ~np.isin(labels[z], keep)
        out[z][drop] = 0
    return out
