"""Reorient a (z, y, x) volume for display in the patient's anatomical frame.

ITK stores a direction matrix whose column ``c`` is the LPS world direction of index axis ``c``
(x, y, z). The viewer shows every scan on one *display grid* whose numpy axes run
(inferior->superior, anterior->posterior, right->left), i.e. an LPS-aligned grid. From that grid the
three views follow the radiological convention with plain slicing (see ``model.VIEWS``).

Oblique scans are shown on the nearest orthogonal axes (as ITK-SNAP does by default): the permutation
that best matches the direction matrix is used and ``oblique`` is set so the UI can say so.
Everything here returns numpy views, never copies, so a 512^3 CT costs no memory to reorient.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Voxel = tuple[int, int, int]


@dataclass(frozen=True)
class Reorientation:
    """Maps between a source array (z, y, x) and the LPS-aligned display grid (S, P, L)."""

    axes: tuple[int, int, int]  # display numpy axis -> source numpy axis
    flips: tuple[bool, bool, bool]  # per display numpy axis
    source_shape: tuple[int, int, int]
    spacing: tuple[float, float, float]  # display grid spacing, (x, y, z) = (L, P, S) in mm
    origin: tuple[float, float, float]  # LPS position of display voxel (0, 0, 0)
    oblique: bool

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.source_shape[a] for a in self.axes)  # type: ignore[return-value]

    def to_display(self, array: np.ndarray) -> np.ndarray:
        """The display-grid view of a source array (no copy)."""
        if array.shape != self.source_shape:
            raise ValueError(f"array shape {array.shape} does not match the volume {self.source_shape}")
        out = np.transpose(array, self.axes)
        return out[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)]

    def voxel_to_display(self, voxel: Sequence[int]) -> Voxel:
        out = []
        for axis, flip in zip(self.axes, self.flips):
            v = int(voxel[axis])
            out.append(self.source_shape[axis] - 1 - v if flip else v)
        return tuple(out)  # type: ignore[return-value]

    def voxel_from_display(self, voxel: Sequence[int]) -> Voxel:
        out = [0, 0, 0]
        for d, (axis, flip) in enumerate(zip(self.axes, self.flips)):
            v = int(voxel[d])
            out[axis] = self.source_shape[axis] - 1 - v if flip else v
        return tuple(out)  # type: ignore[return-value]


def _best_permutation(d: np.ndarray) -> tuple[int, int, int]:
    """world axis assigned to each index axis, maximising the matched cosines (handles 45-degree ties)."""
    best = max(itertools.permutations(range(3)), key=lambda p: sum(abs(d[p[c], c]) for c in range(3)))
    return best  # type: ignore[return-value]


def compute_reorientation(
    shape: Sequence[int],
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    direction: Sequence[float] | None = None,
) -> Reorientation:
    """Work out how to show ``array`` (shape (z, y, x)) with spacing/origin/direction in ITK (x, y, z) order."""
    if len(shape) != 3:
        raise ValueError(f"expected a 3D (z, y, x) volume, got shape {tuple(shape)}")
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float).reshape(3, 3)
    world_of_index = _best_permutation(d)
    axes = [0, 0, 0]
    flips = [False, False, False]
    disp_spacing = [1.0, 1.0, 1.0]
    corner_index = np.zeros(3)
    for c in range(3):  # c: ITK index axis (x, y, z); numpy axis is 2 - c
        w = world_of_index[c]
        flip = bool(d[w, c] < 0)
        axes[2 - w] = 2 - c
        flips[2 - w] = flip
        disp_spacing[w] = float(spacing[c])
        corner_index[c] = (shape[2 - c] - 1) if flip else 0
    corner = np.asarray(origin, dtype=float) + d @ (corner_index * np.asarray(spacing, dtype=float))
    oblique = bool(min(abs(d[world_of_index[c], c]) for c in range(3)) < 0.999)
    return Reorientation(
        axes=tuple(axes),  # type: ignore[arg-type]
        flips=tuple(flips),  # type: ignore[arg-type]
        source_shape=tuple(int(s) for s in shape),  # type: ignore[arg-type]
        spacing=tuple(disp_spacing),  # type: ignore[arg-type]
        origin=tuple(float(v) for v in corner),  # type: ignore[arg-type]
        oblique=oblique,
    )
