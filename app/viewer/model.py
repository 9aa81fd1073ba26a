"""The viewer's Qt-free state: display-grid volume and labels, window, overlay table and crosshair.

Widgets read slices from here and write user intent back; keeping the geometry here (pixel <-> voxel,
which slice each view shows) lets the tests check orientation without painting anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .colormaps import auto_window, blend, build_lut, default_color, normalize_color, window_to_uint8
from .orientation import Reorientation, Voxel, compute_reorientation


@dataclass(frozen=True)
class ViewSpec:
    name: str
    axis: int  # display numpy axis held fixed: 0 = S, 1 = P, 2 = L
    row_axis: int
    col_axis: int
    flip_rows: bool  # True when rows must run superior -> inferior
    letters: tuple[str, str, str, str]  # top, bottom, left, right
    color: str


# Radiological convention on the LPS display grid: axial has anterior up and patient left on the right.
VIEWS: dict[str, ViewSpec] = {
    "axial": ViewSpec("axial", 0, 1, 2, False, ("A", "P", "R", "L"), "#e2504a"),
    "coronal": ViewSpec("coronal", 1, 0, 2, True, ("S", "I", "R", "L"), "#6cb04b"),
    "sagittal": ViewSpec("sagittal", 2, 0, 1, True, ("S", "I", "A", "P"), "#e8cf4a"),
}


class ViewerModel:
    def __init__(self) -> None:
        self.source: np.ndarray | None = None
        self.volume: np.ndarray | None = None  # display-grid view of source
        self.reo: Reorientation | None = None
        self.modality = "CT"
        self.window = (400.0, 40.0)
        self.value_range = (0.0, 1.0)
        self.labels: np.ndarray | None = None  # display-grid view of the shown overlay
        self.source_labels: np.ndarray | None = None
        self.colors: dict[int, tuple[int, int, int]] = {}
        self.names: dict[int, str] = {}
        self.hidden: set[int] = set()
        self.opacity = 0.5
        self.outline = True
        self.crosshair: Voxel = (0, 0, 0)
        self._max_label = 0
        self.labels_version = 0  # bumps whenever the overlay voxels change (3D surfaces key on it)
        self._lut: np.ndarray | None = None

    # --- data -----------------------------------------------------------------------------------------
    def set_volume(
        self,
        array: np.ndarray,
        spacing: Sequence[float],
        origin: Sequence[float],
        direction: Sequence[float] | None,
        modality: str,
        window: tuple[float, float] | None,
    ) -> None:
        array = np.asarray(array)
        self.reo = compute_reorientation(array.shape, spacing, origin, direction)
        self.source = array
        self.volume = self.reo.to_display(array)
        self.modality = modality
        step = max(1, round((array.size / 2e6) ** (1 / 3)))  # the range only scales window drags: sample it
        sample = array[::step, ::step, ::step]
        lo, hi = float(sample.min()), float(sample.max())
        self.value_range = (lo, hi if hi > lo else lo + 1.0)
        if window is None:
            window = (350.0, 40.0) if modality == "CT" else auto_window(array)
        self.window = (max(float(window[0]), 1.0), float(window[1]))
        self.crosshair = tuple(s // 2 for s in self.volume.shape)  # type: ignore[assignment]
        self.set_overlay(None, {}, {})

    def set_overlay(
        self, labels: np.ndarray | None, colors: Mapping[int, Sequence[float]], names: Mapping[int, str]
    ) -> None:
        if labels is not None and (self.reo is None or labels.shape != self.reo.source_shape):
            shape = None if self.reo is None else self.reo.source_shape
            raise ValueError(f"label map shape {labels.shape} does not match the volume {shape}")
        if labels is not None and labels.dtype.kind not in "iu":
            labels = labels.astype(np.int16)  # bool masks and float maps would index the colour table wrongly
        self.source_labels = labels
        self.labels = None if labels is None else self.reo.to_display(labels)  # type: ignore[union-attr]
        self.colors = {int(k): normalize_color(v) for k, v in colors.items()}
        self.names = {int(k): str(v) for k, v in names.items()}
        self._max_label = int(labels.max()) if labels is not None and labels.size else 0
        self.labels_version += 1
        self.invalidate_lut()

    def color_of(self, label_id: int) -> tuple[int, int, int]:
        return self.colors.get(label_id) or default_color(label_id)

    def invalidate_lut(self) -> None:
        self._lut = None

    def lut(self) -> np.ndarray | None:
        if self.labels is None:
            return None
        if self._lut is None:
            top = max([self._max_label, *self.colors, *self.names, 0])
            self._lut = build_lut(top, self.colors, self.hidden, self.opacity)
        return self._lut

    # --- geometry -----------------------------------------------------------------------------------
    def n_slices(self, view: str) -> int:
        return 0 if self.volume is None else self.volume.shape[VIEWS[view].axis]

    def slice_index(self, view: str) -> int:
        return int(self.crosshair[VIEWS[view].axis])

    def slice_shape(self, view: str) -> tuple[int, int]:
        spec, shape = VIEWS[view], self.volume.shape  # type: ignore[union-attr]
        return shape[spec.row_axis], shape[spec.col_axis]

    def pixel_spacing(self, view: str) -> tuple[float, float]:
        """(row, column) pixel size in mm; the display grid's numpy axis a has spacing (x, y, z)[2 - a]."""
        spec, sp = VIEWS[view], self.reo.spacing  # type: ignore[union-attr]
        return sp[2 - spec.row_axis], sp[2 - spec.col_axis]

    def voxel_at_pixel(self, view: str, row: int, col: int) -> Voxel | None:
        """Display voxel under image pixel (row, col) of ``view``, or None outside the image."""
        rows, cols = self.slice_shape(view)
        if not (0 <= row < rows and 0 <= col < cols):
            return None
        spec = VIEWS[view]
        voxel = list(self.crosshair)
        voxel[spec.row_axis] = rows - 1 - row if spec.flip_rows else row
        voxel[spec.col_axis] = col
        return tuple(voxel)  # type: ignore[return-value]

    def pixel_of_voxel(self, view: str, voxel: Sequence[int]) -> tuple[int, int]:
        spec = VIEWS[view]
        rows = self.slice_shape(view)[0]
        row = int(voxel[spec.row_axis])
        return (rows - 1 - row if spec.flip_rows else row), int(voxel[spec.col_axis])

    def set_crosshair(self, voxel: Sequence[int]) -> list[str]:
        """Move the crosshair (display voxel, clamped); returns the views whose slice changed."""
        shape = self.volume.shape  # type: ignore[union-attr]
        new = tuple(int(min(max(int(v), 0), s - 1)) for v, s in zip(voxel, shape))
        changed = [name for name, spec in VIEWS.items() if new[spec.axis] != self.crosshair[spec.axis]]
        self.crosshair = new  # type: ignore[assignment]
        return changed

    def set_slice(self, view: str, index: int) -> bool:
        voxel = list(self.crosshair)
        voxel[VIEWS[view].axis] = index
        return bool(self.set_crosshair(voxel))

    # --- pixels -------------------------------------------------------------------------------------
    def _take(self, array: np.ndarray, view: str) -> np.ndarray:
        spec = VIEWS[view]
        index: list[object] = [slice(None)] * 3
        index[spec.axis] = self.slice_index(view)
        plane = array[tuple(index)]
        return plane[::-1] if spec.flip_rows else plane

    def slice_rgb(self, view: str) -> np.ndarray:
        """The composed (rows, cols, 3) uint8 image of ``view`` at its current slice."""
        gray = window_to_uint8(self._take(self.volume, view), *self.window)  # type: ignore[arg-type]
        labels = None if self.labels is None else self._take(self.labels, view)
        return np.ascontiguousarray(blend(gray, labels, self.lut(), self.outline))

    def sample(self, display_voxel: Sequence[int]) -> tuple[Voxel, float, int, str]:
        """(source voxel (z, y, x), value, label id, label name) at a display voxel."""
        voxel = self.reo.voxel_from_display(display_voxel)  # type: ignore[union-attr]
        value = float(self.source[voxel])  # type: ignore[index]
        label = 0 if self.source_labels is None else int(self.source_labels[voxel])
        name = self.names.get(label, "" if label == 0 else f"label {label}")
        return voxel, value, label, name
