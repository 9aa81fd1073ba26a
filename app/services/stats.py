"""Per-structure measurements of a label map (numpy only; runs on the worker with the inference)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .types import StructureStat, VolumeChange


def structure_stats(labels: np.ndarray, image: np.ndarray, spacing_xyz: Sequence[float],
                    names: Mapping[int, str]) -> list[StructureStat]:
    """Volume (mL), mean intensity and border contact of every label present in ``labels``."""
    flat = labels.ravel().astype(np.int64, copy=False)
    if flat.size == 0 or flat.max(initial=0) <= 0:
        return []
    n = int(flat.max()) + 1
    counts = np.bincount(flat, minlength=n)
    sums = np.bincount(flat, weights=image.ravel().astype(np.float64, copy=False), minlength=n)
    voxel_ml = float(np.prod([float(s) for s in spacing_xyz])) / 1000.0
    border = _border_labels(labels)
    out = []
    for label_id in range(1, n):
        count = int(counts[label_id])
        if count == 0:
            continue
        out.append(StructureStat(label_id, names.get(label_id, f"label {label_id}"), count,
                                 count * voxel_ml, float(sums[label_id] / count), label_id in border))
    return out


def _border_labels(labels: np.ndarray) -> set[int]:
    """Labels on any face of the volume; a single-slice axis has no meaningful border, so it is skipped."""
    found: set[int] = set()
    for axis in range(labels.ndim):
        if labels.shape[axis] < 2:
            continue
        for index in (0, -1):
            found.update(int(v) for v in np.unique(np.take(labels, index, axis=axis)))
    found.discard(0)
    return found


def volume_changes(a: Sequence[StructureStat], b: Sequence[StructureStat]) -> list[VolumeChange]:
    """Matched by structure name, since two experts may number the same structure differently."""
    vol_a = {s.name: s.volume_ml for s in a}
    vol_b = {s.name: s.volume_ml for s in b}
    names = list(vol_a) + [n for n in vol_b if n not in vol_a]
    return [VolumeChange(n, vol_a.get(n, 0.0), vol_b.get(n, 0.0)) for n in names]


def relabel_by_name(labels: np.ndarray, names: Mapping[int, str], target: Mapping[int, str]) -> np.ndarray:
    """Renumber ``labels`` into ``target``'s ids (unknown structures become 0) for a voxelwise difference."""
    by_name = {n: i for i, n in target.items()}
    lut = np.zeros(max([0, *names]) + 1, dtype=np.int16)
    for i, n in names.items():
        lut[i] = by_name.get(n, 0)
    return lut[np.clip(labels, 0, len(lut) - 1)]
