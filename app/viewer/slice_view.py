"""One 2D slice view: a QWidget that paints the composed numpy slice as a QImage.

Why QImage painting rather than a VTK image renderer per view: under Xvfb/llvmpipe every VTK view
is a full OpenGL context whose renders cost tens of milliseconds, while a QImage of a 512x512 slice
is composed (window + label blend) and drawn in ~2 ms on the CPU, needs no GL at all (tests run
with the offscreen platform too), and QWidget.grab() returns exactly what the user sees. Only the
3D view uses VTK.

Mouse (3D Slicer / ITK-SNAP habits): left click/drag sets the linked crosshair, Shift+left drag (or
the window/level mouse mode) drags window (horizontal) and level (vertical), right drag zooms,
middle drag pans, wheel / PageUp / PageDown / arrows scroll slices, Ctrl+wheel zooms about the
cursor, double click maximises the view, R resets zoom and pan.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QMouseEvent, QPainter, QPen, QWheelEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QSlider, QVBoxLayout, QWidget

from .header import ViewHeader
from .model import VIEWS, ViewerModel


class SliceCanvas(QWidget):
    voxel_clicked = Signal(object)  # display voxel (z, y, x) under a left click / drag
    voxel_hovered = Signal(object)
    scrolled = Signal(int)
    window_dragged = Signal(float, float)  # dx, dy in screen pixels
    maximize_requested = Signal()

    def __init__(self, model: ViewerModel, view: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model, self.view, self.spec = model, view, VIEWS[view]
        self.mouse_mode = "crosshair"  # or "window_level"
        self.interpolate = True
        self.zoom, self.pan = 1.0, QPointF(0.0, 0.0)
        self._drag: str | None = None
        self._last = QPointF()
        self._buffer = None  # keeps the numpy memory behind the QImage alive while painting
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(120, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    # --- geometry -----------------------------------------------------------------------------------
    def reset_view(self) -> None:
        self.zoom, self.pan = 1.0, QPointF(0.0, 0.0)
        self.update()

    def image_rect(self) -> QRectF:
        """Where the slice lands on screen; physical mm aspect so anisotropic voxels look right."""
        rows, cols = self.model.slice_shape(self.view)
        row_mm, col_mm = self.model.pixel_spacing(self.view)
        w_mm, h_mm = cols * col_mm, rows * row_mm
        scale = min(self.width() / w_mm, self.height() / h_mm) * self.zoom
        w, h = w_mm * scale, h_mm * scale
        cx, cy = self.width() / 2 + self.pan.x(), self.height() / 2 + self.pan.y()
        return QRectF(cx - w / 2, cy - h / 2, w, h)

    def pixel_at(self, pos: QPointF) -> tuple[int, int]:
        rect, (rows, cols) = self.image_rect(), self.model.slice_shape(self.view)
        col = math.floor((pos.x() - rect.left()) / rect.width() * cols)
        row = math.floor((pos.y() - rect.top()) / rect.height() * rows)
        return row, col

    def screen_pos(self, display_voxel: tuple[int, int, int]) -> QPointF:
        """Widget coordinates of the centre of a display voxel (tests click here)."""
        rect, (rows, cols) = self.image_rect(), self.model.slice_shape(self.view)
        row, col = self.model.pixel_of_voxel(self.view, display_voxel)
        return QPointF(
            rect.left() + (col + 0.5) * rect.width() / cols, rect.top() + (row + 0.5) * rect.height() / rows
        )

    def _voxel_at(self, pos: QPointF) -> tuple[int, int, int] | None:
        if self.model.volume is None:
            return None
        return self.model.voxel_at_pixel(self.view, *self.pixel_at(pos))

    # --- painting -----------------------------------------------------------------------------------
    def paintEvent(self, event: object) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#000000"))
        if self.model.volume is None:
            p.setPen(QColor("#6b7280"))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No volume loaded")
            return
        self._buffer = rgb = self.model.slice_rgb(self.view)
        image = QImage(rgb.data, rgb.shape[1], rgb.shape[0], rgb.strides[0], QImage.Format.Format_RGB888)
        rect = self.image_rect()
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.interpolate)
        p.drawImage(rect, image)
        self._paint_crosshair(p, rect)
        self._paint_annotations(p)

    def _paint_crosshair(self, p: QPainter, rect: QRectF) -> None:
        centre = self.screen_pos(self.model.crosshair)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        # Each line is the trace of another view's plane, drawn in that view's colour (Slicer's habit).
        others = [VIEWS[n] for n in VIEWS if n != self.view]
        for spec in others:
            color = QColor(spec.color)
            color.setAlpha(170)
            p.setPen(QPen(color, 1))
            if spec.axis == self.spec.col_axis:  # that plane holds one column fixed: vertical line
                p.drawLine(QPointF(centre.x(), rect.top()), QPointF(centre.x(), rect.bottom()))
            else:
                p.drawLine(QPointF(rect.left(), centre.y()), QPointF(rect.right(), centre.y()))

    def _paint_annotations(self, p: QPainter) -> None:
        font = QFont(self.font())
        font.setPointSizeF(max(8.0, min(13.0, self.height() / 40)))
        font.setBold(True)
        p.setFont(font)
        top, bottom, left, right = self.spec.letters
        r, m = self.rect(), 6
        flags = Qt.AlignmentFlag
        _shadow_text(p, r.adjusted(0, m, 0, 0), flags.AlignHCenter | flags.AlignTop, top, "#f6c453")
        _shadow_text(p, r.adjusted(0, 0, 0, -m), flags.AlignHCenter | flags.AlignBottom, bottom, "#f6c453")
        _shadow_text(p, r.adjusted(m, 0, 0, 0), flags.AlignLeft | flags.AlignVCenter, left, "#f6c453")
        _shadow_text(p, r.adjusted(0, 0, -m, 0), flags.AlignRight | flags.AlignVCenter, right, "#f6c453")
        font.setBold(False)
        font.setPointSizeF(max(7.5, font.pointSizeF() - 2))
        p.setFont(font)
        width, level = self.model.window
        _shadow_text(
            p,
            r.adjusted(m, 0, 0, -m),
            flags.AlignLeft | flags.AlignBottom,
            f"W {width:.0f}  L {level:.0f}",
            "#d1d5db",
        )
        if self.model.reo is not None and self.model.reo.oblique:
            _shadow_text(
                p,
                r.adjusted(0, m, -m, 0),
                flags.AlignRight | flags.AlignTop,
                "oblique: nearest axes",
                "#f87171",
            )

    # --- interaction --------------------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._last = event.position()
        button, mods = event.button(), event.modifiers()
        if button == Qt.MouseButton.LeftButton:
            wl = mods & Qt.KeyboardModifier.ShiftModifier or self.mouse_mode == "window_level"
            self._drag = "window" if wl else "crosshair"
        elif button == Qt.MouseButton.RightButton:
            self._drag = "zoom"
        elif button == Qt.MouseButton.MiddleButton:
            self._drag = "pan"
        if self._drag == "crosshair":
            self._emit_voxel(event.position(), self.voxel_clicked)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        pos = event.position()
        dx, dy = pos.x() - self._last.x(), pos.y() - self._last.y()
        self._last = pos
        if self._drag == "crosshair":
            self._emit_voxel(pos, self.voxel_clicked)
        elif self._drag == "window":
            self.window_dragged.emit(dx, dy)
        elif self._drag == "zoom":
            self._zoom_about(pos, math.exp(-dy * 0.01))
        elif self._drag == "pan":
            self.pan += QPointF(dx, dy)
            self.update()
        else:
            self._emit_voxel(pos, self.voxel_hovered)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._drag = None

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self.maximize_requested.emit()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120.0
        if not steps:
            return
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self._zoom_about(event.position(), 1.15**steps)
        else:
            self.scrolled.emit(1 if steps > 0 else -1)
        event.accept()

    def keyPressEvent(self, event: object) -> None:  # noqa: N802
        key = event.key()  # type: ignore[attr-defined]
        if key in (Qt.Key.Key_PageUp, Qt.Key.Key_Up):
            self.scrolled.emit(1)
        elif key in (Qt.Key.Key_PageDown, Qt.Key.Key_Down):
            self.scrolled.emit(-1)
        elif key == Qt.Key.Key_R:
            self.reset_view()
        else:
            super().keyPressEvent(event)  # type: ignore[arg-type]

    def _zoom_about(self, pos: QPointF, factor: float) -> None:
        new_zoom = min(max(self.zoom * factor, 0.2), 40.0)
        factor = new_zoom / self.zoom
        centre = QPointF(self.width() / 2, self.height() / 2)
        self.pan = pos - centre - (pos - centre - self.pan) * factor
        self.zoom = new_zoom
        self.update()

    def _emit_voxel(self, pos: QPointF, signal: Signal) -> None:
        voxel = self._voxel_at(pos)
        if voxel is not None:
            signal.emit(voxel)


def _shadow_text(p: QPainter, rect: object, flags: object, text: str, color: str) -> None:
    p.setPen(QColor(0, 0, 0, 200))
    p.drawText(rect.translated(1, 1), flags, text)  # type: ignore[attr-defined]
    p.setPen(QColor(color))
    p.drawText(rect, flags, text)  # type: ignore[arg-type]


class SliceView(QWidget):
    """A Slicer-style slice panel: coloured header with slice slider, then the canvas."""

    slider_moved = Signal(int)

    def __init__(self, model: ViewerModel, view: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        spec = VIEWS[view]
        self.canvas = SliceCanvas(model, view, self)
        header = ViewHeader(spec.name.capitalize(), spec.color, self)
        header.maximize_clicked.connect(self.canvas.maximize_requested)
        self.slider = QSlider(Qt.Orientation.Horizontal, header)
        self.slider.valueChanged.connect(self.slider_moved)
        self.index_label = QLabel("", header)
        self.index_label.setMinimumWidth(64)
        self.index_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        header.insert(self.slider, 1)
        header.insert(self.index_label)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(header)
        column.addWidget(self.canvas, 1)

    def sync(self, slider_value: int) -> None:
        """Pull slice count and position from the model without re-emitting slider_moved."""
        model, view = self.canvas.model, self.canvas.view
        n = model.n_slices(view)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(n - 1, 0))
        self.slider.setValue(slider_value if n else 0)
        self.slider.blockSignals(False)
        self.index_label.setText(f"{model.slice_index(view) + 1} / {n}" if n else "")
        self.canvas.update()
