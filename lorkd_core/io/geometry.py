"""Canonical orientation for the networks, and the way back to the scan's own grid.

Canonical orientation is LPS, ITK's identity direction: in a canonical array (z, y, x), x runs to
the patient's Left, y to Posterior, z to Superior (the way an axial DICOM series of a supine
patient is usually stored). Reorientation only permutes and flips axes (exact, no interpolation),
choosing for each world axis the image axis closest to it; an oblique scan keeps its residual
rotation in the grid's direction rather than being resampled onto a tilted box. Optional
resampling to a target spacing is linear for images and nearest neighbour on the way back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from lorkd_core.errors import ScanError
from lorkd_core.io.scan import Geometry, Scan, max_voxels_default

CANONICAL_ORIENTATION = "LPS"


@dataclass(frozen=True)
class CanonicalGrid:
    """How a scan was brought to canonical form, enough to undo it exactly.

    ``axes[c]`` is the scan's index axis (0=x, 1=y, 2=z) that became canonical axis c, ``flips[c]``
    whether it was reversed. ``oriented`` is the permuted grid before resampling, ``grid`` the
    grid of the canonical array (equal to ``oriented`` when no spacing was asked for).
    """

    original: Geometry
    axes: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    oriented: Geometry
    grid: Geometry

    @property
    def resampled(self) -> bool:
        return self.grid != self.oriented

    @property
    def shape(self) -> tuple[int, int, int]:
        """Numpy shape (z, y, x) of the canonical array."""
        return self.grid.shape


def closest_axes(
    direction: tuple[float, ...] | np.ndarray,
) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """For each world axis (L, P, S) the index axis closest to it and whether it points the other way."""
    d = np.abs(np.asarray(direction, dtype=float).reshape(3, 3))  # d[world, index]
    signs = np.asarray(direction, dtype=float).reshape(3, 3)
    axes = [-1, -1, -1]
    # greedy on the largest cosines, so a 45-degree tie cannot give one index axis to two world axes
    for flat in np.argsort(-d, axis=None):
        world, index = divmod(int(flat), 3)
        if axes[world] < 0 and index not in axes:
            axes[world] = index
    flips = tuple(bool(signs[w, axes[w]] < 0) for w in range(3))
    return (axes[0], axes[1], axes[2]), flips  # type: ignore[return-value]


def _oriented_geometry(g: Geometry, axes: tuple[int, int, int], flips: tuple[bool, bool, bool]) -> Geometry:
    m = g.matrix
    size = tuple(g.size[a] for a in axes)
    spacing = tuple(g.spacing[a] for a in axes)
    cols = [m[:, a] * (-1.0 if f else 1.0) for a, f in zip(axes, flips)]
    corner = np.zeros(3)
    for a, f in zip(axes, flips):
        if f:
            corner[a] = g.size[a] - 1
    origin = g.index_to_physical(corner[None, :])[0]
    direction = tuple(float(v) for v in np.stack(cols, axis=1).reshape(-1))
    return Geometry(size, spacing, tuple(float(v) for v in origin), direction)  # type: ignore[arg-type]


def _numpy_order(axes: tuple[int, int, int]) -> list[int]:
    # canonical numpy axis b holds canonical index axis 2 - b, i.e. scan index axis axes[2 - b],
    # which is scan numpy axis 2 - axes[2 - b]
    return [2 - axes[2 - b] for b in range(3)]


def reorient_array(
    array: np.ndarray, axes: tuple[int, int, int], flips: tuple[bool, bool, bool]
) -> np.ndarray:
    """Scan-order (z, y, x) array -> canonical-order array (exact)."""
    out = np.transpose(array, _numpy_order(axes))
    for c, f in enumerate(flips):
        if f:
            out = np.flip(out, axis=2 - c)
    return np.ascontiguousarray(out)


def restore_array(
    array: np.ndarray, axes: tuple[int, int, int], flips: tuple[bool, bool, bool]
) -> np.ndarray:
    """Inverse of :func:`reorient_array`."""
    out = array
    for c, f in enumerate(flips):
        if f:
            out = np.flip(out, axis=2 - c)
    order = _numpy_order(axes)
    return np.ascontiguousarray(np.transpose(out, np.argsort(order)))


def resampled_geometry(g: Geometry, spacing: tuple[float, float, float]) -> Geometry:
    """Same physical box (voxel edges), new spacing; direction unchanged."""
    new_spacing = tuple(float(s) for s in spacing)
    size = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(g.size, g.spacing, new_spacing))
    # centre the new grid in the old box so the two extents line up symmetrically
    extent_old = np.asarray(g.size) * np.asarray(g.spacing)
    extent_new = np.asarray(size) * np.asarray(new_spacing)
    start = -0.5 * np.asarray(g.spacing) + 0.5 * (extent_old - extent_new) + 0.5 * np.asarray(new_spacing)
    origin = np.asarray(g.origin) + g.matrix @ start
    return Geometry(size, new_spacing, tuple(float(v) for v in origin), g.direction)  # type: ignore[arg-type]


def _check_resampled_size(grid: Geometry, oriented: Geometry, scan: Scan) -> None:
    """ScanError before allocating a resampled grid above the voxel limit (e.g. a header claiming 1e6 mm voxels)."""
    limit = max_voxels_default()
    count = math.prod(int(s) for s in grid.size)
    if count > limit:
        raise ScanError(
            f"resampling to {_mm(grid.spacing)} mm voxels would need {count:,} voxels "
            f"({' x '.join(str(s) for s in grid.size)}), above the limit of {limit:,}; "
            f"is the voxel spacing in the file ({_mm(oriented.spacing)} mm) right?",
            getattr(scan, "path", None),
        )


def _mm(values: tuple[float, ...]) -> str:
    return " x ".join(f"{float(v):g}" for v in values)


def _reference(g: Geometry) -> sitk.Image:
    ref = sitk.Image([int(s) for s in g.size], sitk.sitkUInt8)
    return g.apply_to(ref)


def to_canonical(
    scan: Scan, spacing: tuple[float, float, float] | float | None = None
) -> tuple[np.ndarray, CanonicalGrid]:
    """Return the scan as a float32 (z, y, x) array in LPS orientation, resampled to ``spacing``
    (x, y, z mm, or one number for isotropic) if given, plus the grid to map predictions back."""
    original = scan.geometry
    axes, flips = closest_axes(original.direction)
    oriented = _oriented_geometry(original, axes, flips)
    array = reorient_array(scan.array.astype(np.float32, copy=False), axes, flips)
    grid = oriented
    if spacing is not None:
        target = (float(spacing),) * 3 if np.isscalar(spacing) else tuple(float(s) for s in spacing)  # type: ignore[arg-type]
        if not np.allclose(target, oriented.spacing, rtol=1e-6, atol=1e-6):
            grid = resampled_geometry(oriented, target)  # type: ignore[arg-type]
            _check_resampled_size(grid, oriented, scan)
            image = oriented.apply_to(sitk.GetImageFromArray(array))
            image = sitk.Resample(
                image,
                _reference(grid),
                sitk.Transform(),
                sitk.sitkLinear,
                float(array.min()),
                sitk.sitkFloat32,
            )
            array = sitk.GetArrayFromImage(image)
    return array.astype(np.float32, copy=False), CanonicalGrid(original, axes, flips, oriented, grid)


def from_canonical(labels: np.ndarray, grid: CanonicalGrid) -> np.ndarray:
    """Map a canonical-grid label array back onto the scan's original grid (nearest neighbour)."""
    labels = np.asarray(labels)
    if labels.shape != grid.shape:
        raise ValueError(f"labels have shape {labels.shape}, the canonical grid is {grid.shape}")
    dtype = labels.dtype
    if grid.resampled:
        image = grid.grid.apply_to(sitk.GetImageFromArray(labels.astype(np.int32, copy=False)))
        image = sitk.Resample(image, _reference(grid.oriented), sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        labels = sitk.GetArrayFromImage(image).astype(dtype, copy=False)
    return restore_array(labels, grid.axes, grid.flips)


def labels_to_canonical(labels: np.ndarray, grid: CanonicalGrid) -> np.ndarray:
    """A label map on the scan's grid -> the canonical grid of ``grid`` (nearest neighbour), for training."""
    labels = np.asarray(labels)
    if labels.shape != grid.original.shape:
        raise ValueError(f"labels have shape {labels.shape}, the scan grid is {grid.original.shape}")
    out = reorient_array(labels, grid.axes, grid.flips)
    if grid.resampled:
        image = grid.oriented.apply_to(sitk.GetImageFromArray(out.astype(np.int32, copy=False)))
        image = sitk.Resample(image, _reference(grid.grid), sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        out = sitk.GetArrayFromImage(image).astype(labels.dtype, copy=False)
    return out


def canonical_to_scan_array(
    values: np.ndarray, grid: CanonicalGrid, interpolation: str = "linear"
) -> np.ndarray:
    """Like :func:`from_canonical` for continuous maps (probabilities, saliency): linear by default."""
    values = np.asarray(values, dtype=np.float32)
    if grid.resampled:
        mode = sitk.sitkLinear if interpolation == "linear" else sitk.sitkNearestNeighbor
        image = grid.grid.apply_to(sitk.GetImageFromArray(values))
        image = sitk.Resample(image, _reference(grid.oriented), sitk.Transform(), mode, 0.0, sitk.sitkFloat32)
        values = sitk.GetArrayFromImage(image)
    return restore_array(values, grid.axes, grid.flips)
