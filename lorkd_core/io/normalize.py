"""Per-volume MR intensity normalisation used at inference (MR has no absolute scale like HU)."""

from __future__ import annotations

import numpy as np

_MAX_SAMPLES = 1 << 21


def _sample(values: np.ndarray) -> np.ndarray:
    """A strided subset for percentiles: exact enough, and fast on 500-slice volumes."""
    flat = values.reshape(-1)
    step = max(1, flat.size // _MAX_SAMPLES)
    return flat[::step]


def foreground_mask(array: np.ndarray) -> np.ndarray:
    """Voxels brighter than 10% of the robust range: drops air/background noise, keeps dark tissue (CSF)."""
    lo, hi = np.percentile(_sample(array), [0.5, 99.5])
    if hi <= lo:
        return np.ones(array.shape, dtype=bool)
    mask = array > lo + 0.1 * (hi - lo)
    return mask if mask.any() else np.ones(array.shape, dtype=bool)


def normalize_mr(
    array: np.ndarray, method: str = "zscore", mask: np.ndarray | None = None, clip: float = 5.0
) -> np.ndarray:
    """Normalise one MR volume; statistics come from the foreground only.

    ``zscore``: (x - mean) / std within the foreground, clipped to +-``clip``; background voxels get
    the foreground's minimum so they stay darkest. ``percentile``: the
    foreground's 0.5..99.5th percentiles map to 0..1 (clipped).
    """
    data = np.asarray(array, dtype=np.float32)
    fg = foreground_mask(data) if mask is None else np.asarray(mask, dtype=bool)
    values = data[fg]
    if values.size == 0:
        return np.zeros_like(data)
    if method == "zscore":
        mean, std = float(values.mean()), float(values.std())
        out = (data - mean) / (std if std > 1e-6 else 1.0)
        floor = (float(values.min()) - mean) / (std if std > 1e-6 else 1.0)
        out[~fg] = floor
        return np.clip(out, -clip, clip).astype(np.float32)
    if method == "percentile":
        lo, hi = (float(v) for v in np.percentile(_sample(values), [0.5, 99.5]))
        out = (data - lo) / (hi - lo if hi > lo else 1.0)
        return np.clip(out, 0.0, 1.0).astype(np.float32)
    raise ValueError(f"unknown MR normalisation {method!r} (zscore or percentile)")
