"""Keeps the viewer showing the state: scan, overlay, difference, saliency; cursor readout to the status bar."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Signal

from ..services.backend import Backend
from ..services.stats import relabel_by_name
from ..services.types import ClassificationResult, LoadedScan, SegmentationResult
from ..state import StudioState
from ..viewer import ViewerWidget
from .display_panel import DisplayPanel

SALIENCY_LEVELS = 8


class ViewerLink(QObject):
    cursor_text = Signal(str)

    def __init__(self, state: StudioState, backend: Backend, viewer: ViewerWidget, display: DisplayPanel,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._state, self._backend, self._viewer, self._display = state, backend, viewer, display
        self.show_difference = False
        self.show_saliency = False
        self._auto_window: tuple[float, float] | None = None  # the default we set, until the user changes it
        state.scan_changed.connect(self._on_scan)
        state.region_changed.connect(self._on_region)
        state.result_changed.connect(lambda _r: self.refresh_overlay())
        state.comparison_changed.connect(lambda _c: self.refresh_overlay())
        viewer.cursor_info.connect(self._on_cursor)

    def _on_scan(self, loaded: LoadedScan | None) -> None:
        if loaded is None:
            return
        scan = loaded.scan
        window = self._backend.default_window(loaded, loaded.suggested_region or self._state.region)
        presets = self._backend.window_presets(loaded)
        self._viewer.set_volume(scan.array, tuple(scan.spacing), tuple(scan.origin), tuple(scan.direction),
                                loaded.modality, window)
        self._viewer.add_presets(presets)
        self._display.set_presets(presets, window)
        self._auto_window = window

    def _on_region(self, region: str) -> None:
        """A region's default window follows the region, unless the user has chosen another window."""
        loaded = self._state.scan
        if loaded is None or self._auto_window is None:
            return
        current = self._viewer.window()
        if tuple(round(v, 3) for v in current) != tuple(round(v, 3) for v in self._auto_window):
            return
        window = self._backend.default_window(loaded, region)
        if window != self._auto_window:
            self._viewer.set_window(*window)
            self._auto_window = window

    def set_difference(self, on: bool) -> None:
        self.show_difference = on
        self.refresh_overlay()

    def set_saliency(self, on: bool) -> None:
        self.show_saliency = on
        self.refresh_overlay()

    def set_structure_visible(self, label_id: int, visible: bool) -> None:
        self._viewer.set_structure_visible(label_id, visible)

    def set_surface_visible(self, label_id: int, visible: bool) -> None:
        self._viewer.set_surface_visible(label_id, visible)

    def refresh_overlay(self) -> None:
        result, comparison = self._state.result, self._state.comparison
        if self._state.scan is None:
            return
        if isinstance(result, SegmentationResult):
            other = comparison.result if comparison is not None else None
            if self.show_difference and isinstance(other, SegmentationResult):
                b = relabel_by_name(other.labels, other.label_names, result.label_names)
                self._viewer.set_difference(result.labels, b)
                return
            self._viewer.set_labels(result.labels, self._backend.colors_for(result.label_names), result.label_names)
        elif isinstance(result, ClassificationResult) and self.show_saliency and result.saliency is not None:
            self._show_saliency(result.saliency)
        else:
            self._viewer.set_labels(None, {}, {})

    def _show_saliency(self, saliency: np.ndarray) -> None:
        # The viewer has no heat-map layer: quantise into a label overlay with a heat colour ramp.
        s = np.asarray(saliency, dtype=np.float32)
        lo, hi = float(s.min()), float(s.max())
        levels = np.zeros(s.shape, np.int16) if hi <= lo else np.ceil((s - lo) / (hi - lo) * SALIENCY_LEVELS)
        levels = levels.astype(np.int16)
        levels[levels <= 1] = 0  # the coolest eighth stays transparent
        colors = {i: _heat(i / SALIENCY_LEVELS) for i in range(1, SALIENCY_LEVELS + 1)}
        names = {i: f"saliency {100 * (i - 1) // SALIENCY_LEVELS}-{100 * i // SALIENCY_LEVELS}%" for i in colors}
        self._viewer.set_labels(levels, colors, names)

    def _on_cursor(self, voxel, value: float, label_id: int, label_name: str) -> None:
        scan = self._state.scan
        unit = " HU" if scan is not None and scan.modality == "CT" else ""
        z, y, x = (int(v) for v in voxel)
        text = f"Voxel ({x}, {y}, {z})   {value:.0f}{unit}"
        if label_id:
            text += f"   {label_id}: {self._backend.structure_display_name(label_name) if label_name else ''}"
        self.cursor_text.emit(text)


def _heat(t: float) -> tuple[int, int, int]:
    return int(255 * min(1.0, 2 * t)), int(255 * max(0.0, min(1.0, 2 * t - 0.6))), int(255 * max(0.0, 2 * t - 1.6))
