"""Window/level, label colour tables and alpha blending on uint8 numpy slices (no Qt, no VTK).

Blending works on whole slices with integer arithmetic and a dense id -> RGBA table, so a 512x512
slice with a 100-structure overlay composes in about a millisecond: fast enough to redraw on every
mouse move without caching tricks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

Color = tuple[int, int, int]

# Standard CT presets (width, level) in HU, named as the app's settings and the DICOM helpers do.
PRESETS: dict[str, tuple[float, float]] = {
    "soft_tissue": (350.0, 40.0),
    "lung": (1400.0, -500.0),
    "bone": (1000.0, 400.0),
    "brain": (100.0, 50.0),
}

# Comparison overlay codes produced by difference_labels().
DIFF_ONLY_A, DIFF_ONLY_B, DIFF_CONFLICT = 1, 2, 3
DIFF_COLORS: dict[int, Color] = {
    DIFF_ONLY_A: (255, 99, 71),
    DIFF_ONLY_B: (30, 144, 255),
    DIFF_CONFLICT: (255, 215, 0),
}

# A qualitative palette for ids that arrive without a colour (Slicer's GenericColors in spirit).
_PALETTE: tuple[Color, ...] = (
    (128, 174, 128),
    (241, 214, 145),
    (177, 122, 101),
    (111, 184, 210),
    (216, 101, 79),
    (221, 130, 101),
    (144, 238, 144),
    (192, 104, 88),
    (220, 245, 20),
    (78, 63, 0),
    (255, 250, 220),
    (230, 220, 70),
    (200, 200, 235),
    (250, 250, 210),
    (244, 214, 49),
    (0, 151, 206),
    (216, 191, 216),
    (183, 156, 220),
    (183, 214, 211),
    (152, 189, 207),
)


def default_color(label_id: int) -> Color:
    return _PALETTE[(int(label_id) - 1) % len(_PALETTE)]


def normalize_color(color: Sequence[float]) -> Color:
    """Accept (r, g, b) as 0-255 ints or 0-1 floats (VTK / matplotlib style)."""
    values = [float(c) for c in color[:3]]
    if all(v <= 1.0 for v in values) and any(isinstance(c, (float, np.floating)) for c in color[:3]):
        values = [v * 255.0 for v in values]
    return tuple(int(round(min(max(v, 0.0), 255.0))) for v in values)  # type: ignore[return-value]


def window_to_uint8(values: np.ndarray, width: float, level: float) -> np.ndarray:
    """Map intensities through a DICOM-style linear window to 0..255."""
    width = max(float(width), 1e-6)
    low = float(level) - width / 2.0
    out = (values.astype(np.float32, copy=False) - low) * np.float32(255.0 / width)
    return np.clip(out, 0.0, 255.0, out=out).astype(np.uint8)


def auto_window(volume: np.ndarray, sample: int = 200_000) -> tuple[float, float]:
    """(width, level) spanning the 1st..99th percentile, like Slicer's automatic window."""
    flat = volume.reshape(-1)
    step = max(1, flat.size // sample)
    lo, hi = np.percentile(flat[::step].astype(np.float32), [1.0, 99.0])
    if hi <= lo:
        lo, hi = float(flat.min()), float(flat.max())
    return max(float(hi - lo), 1.0), float((hi + lo) / 2.0)


def build_lut(
    max_id: int,
    colors: Mapping[int, Color],
    hidden: set[int],
    opacity: float,
) -> np.ndarray:
    """Dense (max_id + 1, 4) uint8 RGBA table; alpha carries opacity and visibility, id 0 is clear."""
    lut = np.zeros((max(int(max_id), 0) + 1, 4), dtype=np.uint8)
    alpha = int(round(255 * min(max(float(opacity), 0.0), 1.0)))
    for label_id in range(1, lut.shape[0]):
        lut[label_id, :3] = colors.get(label_id) or default_color(label_id)
        lut[label_id, 3] = 0 if label_id in hidden else alpha
    return lut


def _boundary(labels: np.ndarray) -> np.ndarray:
    """Pixels whose 4-neighbourhood holds another id: the structure outline."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return edge & (labels > 0)


def blend(
    gray: np.ndarray, labels: np.ndarray | None, lut: np.ndarray | None, outline: bool = True
) -> np.ndarray:
    """Greyscale uint8 (h, w) plus an optional label slice -> contiguous RGB uint8 (h, w, 3)."""
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    if labels is None or lut is None or not labels.any():
        return rgb
    ids = np.clip(labels, 0, lut.shape[0] - 1)
    rgba = lut[ids]
    alpha = rgba[:, :, 3].astype(np.uint16)
    if outline:
        # Outlines stay fully opaque so structures remain findable at low fill opacity (Slicer does the same).
        alpha = np.where(_boundary(ids) & (alpha > 0), np.uint16(255), alpha)
    a = alpha[:, :, None]
    mixed = (rgb.astype(np.uint16) * (255 - a) + rgba[:, :, :3].astype(np.uint16) * a + 127) // 255
    return mixed.astype(np.uint8)


def difference_labels(labels_a: np.ndarray, labels_b: np.ndarray) -> np.ndarray:
    """Per voxel: 0 agree, 1 only A labelled, 2 only B labelled, 3 both labelled with different ids."""
    if labels_a.shape != labels_b.shape:
        raise ValueError(f"label maps differ in shape: {labels_a.shape} vs {labels_b.shape}")
    a, b = labels_a > 0, labels_b > 0
    out = np.zeros(labels_a.shape, dtype=np.uint8)
    out[a & ~b] = DIFF_ONLY_A
    out[b & ~a] = DIFF_ONLY_B
    out[a & b & (labels_a != labels_b)] = DIFF_CONFLICT
    return out
