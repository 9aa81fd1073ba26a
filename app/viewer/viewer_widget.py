"""ViewerWidget: axial, coronal and sagittal slice views plus a 3D view with a linked crosshair.

A pure view: numpy arrays and geometry in, Qt signals out; it never imports lorkd_core or torch.
Voxels in the public API are indices (z, y, x) of the arrays passed to set_volume/set_labels;
``slice_changed`` indices count along the display grid (inferior->superior, anterior->posterior,
right->left). Embedders must call ``close()`` (e.g. from the main window's closeEvent) so the VTK
scene is finalised and the surface worker stopped; child widgets get no close event of their own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PySide6.QtCore import QCoreApplication, Signal
from PySide6.QtGui import QCloseEvent, QImage
from PySide6.QtWidgets import QGridLayout, QWidget

from .colormaps import DIFF_COLORS, DIFF_CONFLICT, DIFF_ONLY_A, DIFF_ONLY_B, PRESETS, difference_labels
from .header import VIEWER_STYLE
from .model import VIEWS, ViewerModel
from .slice_view import SliceView
from .volume_view import VolumeView

LAYOUTS = ("2x2", "axial", "coronal", "sagittal", "3d")
# Wheel-up / slider-right moves toward superior, anterior and patient right, as 3D Slicer's offsets do.
_SCROLL_SIGN = {"axial": 1, "coronal": -1, "sagittal": -1}


class ViewerWidget(QWidget):
    cursor_info = Signal(object, float, int, str)  # voxel (z, y, x), value, label id, label name
    window_changed = Signal(float, float)  # width, level
    slice_changed = Signal(str, int)  # view name, display-grid slice index
    crosshair_changed = Signal(object)  # voxel (z, y, x)
    layout_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = ViewerModel()
        self._presets: dict[str, tuple[float, float]] = dict(PRESETS)
        self._base_overlay: tuple | None = None  # the expert's labels while a difference is shown
        self._layout_name = "2x2"
        self._closed = False
        self.slice_views = {name: SliceView(self.model, name, self) for name in VIEWS}
        self.volume_view = VolumeView(self.model, self)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(2)
        for (row, col), widget in zip(((0, 0), (0, 1), (1, 0), (1, 1)), self._panels().values()):
            grid.addWidget(widget, row, col)
        for name, view in self.slice_views.items():
            canvas = view.canvas
            canvas.voxel_clicked.connect(self._set_display_crosshair)
            canvas.voxel_clicked.connect(self._report_cursor)
            canvas.voxel_hovered.connect(self._report_cursor)
            canvas.scrolled.connect(
                lambda step, n=name: self.set_slice(n, self.model.slice_index(n) + step * _SCROLL_SIGN[n])
            )
            canvas.window_dragged.connect(self._drag_window)
            canvas.maximize_requested.connect(
                lambda n=name: self.set_layout("2x2" if self._layout_name == n else n)
            )
            view.slider_moved.connect(
                lambda value, n=name: self.set_slice(n, self._slider_to_index(n, value))
            )
        self.volume_view.header.maximize_clicked.connect(
            lambda: self.set_layout("2x2" if self._layout_name == "3d" else "3d")
        )
        self.setStyleSheet(VIEWER_STYLE)
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self._shutdown)

    def _panels(self) -> dict[str, QWidget]:
        return {
            "axial": self.slice_views["axial"],
            "3d": self.volume_view,
            "coronal": self.slice_views["coronal"],
            "sagittal": self.slice_views["sagittal"],
        }

    # --- data ---------------------------------------------------------------------------------------
    def set_volume(
        self,
        array: np.ndarray,
        spacing: Sequence[float] = (1.0, 1.0, 1.0),
        origin: Sequence[float] = (0.0, 0.0, 0.0),
        direction: Sequence[float] | None = None,
        modality: str = "CT",
        window: tuple[float, float] | None = None,
    ) -> None:
        """Show a (z, y, x) volume; spacing/origin are ITK (x, y, z), direction a row-major 9-tuple."""
        self._base_overlay = None
        self.model.hidden.clear()
        self.model.set_volume(array, spacing, origin, direction, modality, window)
        for view in self.slice_views.values():
            view.canvas.reset_view()
        self.volume_view.set_scene()
        self._refresh(slices=list(VIEWS))
        self.window_changed.emit(*self.model.window)

    def set_labels(
        self,
        labels: np.ndarray | None,
        colors: Mapping[int, Sequence[float]] | None = None,
        names: Mapping[int, str] | None = None,
    ) -> None:
        """Overlay a label map on the volume's grid (None clears it); leaves a difference view."""
        if self._base_overlay is not None:
            self.model.hidden = self._base_overlay[3]
            self._base_overlay = None
        self.model.set_overlay(None if labels is None else np.asarray(labels), colors or {}, names or {})
        self._labels_changed()

    def set_difference(
        self, labels_a: np.ndarray | None, labels_b: np.ndarray | None, names: tuple[str, str] = ("A", "B")
    ) -> None:
        """Compare two label maps: only-A, only-B and conflicting voxels in three colours (None, None restores)."""
        if labels_a is None or labels_b is None:
            self.clear_difference()
            return
        diff = difference_labels(np.asarray(labels_a), np.asarray(labels_b))
        if self._base_overlay is None:
            m = self.model
            self._base_overlay = (m.source_labels, m.colors, m.names, set(m.hidden))
        a, b = names
        self.model.hidden = set()
        self.model.set_overlay(
            diff,
            DIFF_COLORS,
            {DIFF_ONLY_A: f"only {a}", DIFF_ONLY_B: f"only {b}", DIFF_CONFLICT: f"{a} \u2260 {b}"},
        )
        self._labels_changed()

    def clear_difference(self) -> None:
        """Back to the label map shown before set_difference (with its hidden structures)."""
        if self._base_overlay is not None:
            labels, colors, names, _hidden = self._base_overlay
            self.set_labels(labels, colors, names)  # restores the hidden set too

    def _labels_changed(self) -> None:
        self.model.invalidate_lut()
        self.volume_view.hidden_structures = self.model.hidden
        self.volume_view.update_labels()
        self._refresh()

    def set_opacity(self, opacity: float) -> None:
        self.model.opacity = float(min(max(opacity, 0.0), 1.0))
        self.model.invalidate_lut()
        self._refresh()

    def set_outline(self, enabled: bool) -> None:
        self.model.outline = bool(enabled)
        self._refresh()

    def set_structure_visible(self, label_id: int, visible: bool) -> None:
        """Show/hide one structure in the slice overlays and its 3D surface."""
        (self.model.hidden.discard if visible else self.model.hidden.add)(int(label_id))
        self._labels_changed()

    def show_surfaces(self, enabled: bool) -> None:
        """Build (lazily, on a worker thread, cached per label map) and show smoothed 3D surfaces."""
        self.volume_view.set_surfaces_enabled(bool(enabled))

    def set_surface_visible(self, label_id: int, visible: bool) -> None:
        (self.volume_view.hidden_surfaces.discard if visible else self.volume_view.hidden_surfaces.add)(
            int(label_id)
        )
        self.volume_view.update_labels()

    # --- window / level -------------------------------------------------------------------------------
    def window(self) -> tuple[float, float]:
        return self.model.window

    def presets(self) -> dict[str, tuple[float, float]]:
        return dict(self._presets)

    def add_presets(self, presets: Mapping[str, tuple[float, float]]) -> None:
        """Extra (width, level) presets, e.g. from DICOM WindowCenter/WindowWidth."""
        self._presets.update({str(k): (float(v[0]), float(v[1])) for k, v in presets.items()})

    def set_preset(self, name: str) -> None:
        if name not in self._presets:
            raise KeyError(f"unknown window preset {name!r}; known: {sorted(self._presets)}")
        self.set_window(*self._presets[name])

    def set_window(self, width: float, level: float) -> None:
        new = (max(float(width), 1.0), float(level))
        if new != self.model.window:
            self.model.window = new
            self._refresh()
            self.window_changed.emit(*new)

    def _drag_window(self, dx: float, dy: float) -> None:
        lo, hi = self.model.value_range
        per_pixel = max((hi - lo) / 1000.0, 0.01)
        width, level = self.model.window
        self.set_window(width + dx * per_pixel, level - dy * per_pixel)

    # --- crosshair and slices ---------------------------------------------------------------------------
    def crosshair(self) -> tuple[int, int, int]:
        return self.model.reo.voxel_from_display(self.model.crosshair) if self.model.reo else (0, 0, 0)

    def set_crosshair(self, voxel: Sequence[int]) -> None:
        """Centre all views on a voxel (z, y, x) of the loaded arrays."""
        if self.model.reo is not None:
            clamped = [min(max(int(v), 0), s - 1) for v, s in zip(voxel, self.model.reo.source_shape)]
            self._set_display_crosshair(self.model.reo.voxel_to_display(clamped))

    def slice_index(self, view: str) -> int:
        return self.model.slice_index(view)

    def set_slice(self, view: str, index: int) -> None:
        if self.model.volume is not None:
            voxel = list(self.model.crosshair)
            voxel[VIEWS[view].axis] = index
            self._set_display_crosshair(voxel)

    def _set_display_crosshair(self, voxel: Sequence[int]) -> None:
        before = self.model.crosshair
        changed = self.model.set_crosshair(voxel)
        if self.model.crosshair != before:
            self._refresh(slices=changed)
            self.volume_view.update_crosshair()
            self.crosshair_changed.emit(self.crosshair())

    def _report_cursor(self, display_voxel: Sequence[int]) -> None:
        self.cursor_info.emit(*self.model.sample(display_voxel))

    def _slider_to_index(self, view: str, value: int) -> int:
        return value if _SCROLL_SIGN[view] > 0 else self.model.n_slices(view) - 1 - value

    def _refresh(self, slices: Sequence[str] = ()) -> None:
        for name, view in self.slice_views.items():
            view.sync(self._slider_to_index(name, self.model.slice_index(name)))
        for name in slices:
            self.slice_changed.emit(name, self.model.slice_index(name))

    # --- layout, interaction modes, grabs ---------------------------------------------------------------
    def set_layout(self, name: str) -> None:
        """'2x2' or one of 'axial', 'coronal', 'sagittal', '3d' maximised."""
        if name not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {name!r}")
        self._layout_name = name
        for key, panel in self._panels().items():
            panel.setVisible(name in ("2x2", key))
        self.volume_view.request_render()
        self.layout_changed.emit(name)

    def layout_name(self) -> str:
        return self._layout_name

    def set_mouse_mode(self, mode: str) -> None:
        """'crosshair' (default) or 'window_level' for the left button."""
        for view in self.slice_views.values():
            view.canvas.mouse_mode = mode

    def reset_views(self) -> None:
        for view in self.slice_views.values():
            view.canvas.reset_view()
        self.volume_view.reset_camera()

    def grab_views(self, include_3d: bool = True) -> dict[str, QImage]:
        """What each view shows now; the 3D view waits for pending surfaces and renders (null image without GL)."""
        images = {name: view.canvas.grab().toImage() for name, view in self.slice_views.items()}
        if not include_3d:
            return images
        self.volume_view.wait_for_surfaces()
        shot = self.volume_view.screenshot()
        images["3d"] = QImage() if shot is None else _to_qimage(shot)
        return images

    def grab_composite(self) -> QImage:
        """The whole widget as shown, 3D scene included once its surfaces are built (for --screenshot)."""
        if self.volume_view.isVisible():
            self.volume_view.wait_for_surfaces()
            self.volume_view.render_now()
        return self.grab().toImage()

    # --- lifecycle ------------------------------------------------------------------------------------
    def _shutdown(self) -> None:
        if not self._closed:
            self._closed = True
            self.volume_view.close_view()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self._shutdown()
        super().closeEvent(event)

    def close(self) -> bool:
        """Finalise the 3D scene, stop timers and the surface worker, then close the widget."""
        self._shutdown()
        return super().close()


def _to_qimage(rgb: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(rgb[:, :, :3], dtype=np.uint8)
    return QImage(rgb.data, rgb.shape[1], rgb.shape[0], rgb.strides[0], QImage.Format.Format_RGB888).copy()
