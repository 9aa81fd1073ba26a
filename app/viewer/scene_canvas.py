"""The 3D view's drawing surface: shows the last offscreen frame and turns mouse moves into camera
moves (left rotate, middle pan, right drag or wheel zoom, double click maximise, R resets)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QWheelEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

if TYPE_CHECKING:
    from .volume_view import VolumeView


class SceneCanvas(QWidget):
    """Shows the last rendered frame; mouse moves the camera like Slicer's 3D view."""

    def __init__(self, view: VolumeView) -> None:
        super().__init__(view)
        self.view = view
        self.image: QImage | None = None
        self._drag: Qt.MouseButton | None = None
        self._last = QPointF()
        self.setMinimumSize(120, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)

    def set_pixels(self, pixels: np.ndarray) -> None:
        h, w = pixels.shape[:2]
        self.image = QImage(pixels.data, w, h, pixels.strides[0], QImage.Format.Format_RGB888).copy()
        self.image.setDevicePixelRatio(self.devicePixelRatioF())
        self.update()

    def paintEvent(self, event: object) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#0d1016"))
        if self.image is not None:
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            p.drawImage(self.rect(), self.image)  # stretched only until the resize re-render lands
            return
        p.setPen(QColor("#6b7280"))
        text = "3D view" if self.view.available else f"3D view unavailable\n{self.view.error}"
        p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, text)

    def resizeEvent(self, event: object) -> None:  # noqa: N802
        self.view.request_render()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._drag, self._last = event.button(), event.position()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._drag = None

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        scene = self.view.scene
        if scene is None or self._drag is None:
            return
        delta = event.position() - self._last
        self._last = event.position()
        if self._drag == Qt.MouseButton.LeftButton:
            scene.rotate(delta.x(), delta.y())
        elif self._drag == Qt.MouseButton.MiddleButton:
            scene.pan(delta.x(), delta.y())
        elif self._drag == Qt.MouseButton.RightButton:
            scene.zoom(float(np.exp(-delta.y() * 0.01)))
        self.view.request_render()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        if self.view.scene is not None and event.angleDelta().y():
            self.view.scene.zoom(1.1 ** (event.angleDelta().y() / 120.0))
            self.view.request_render()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self.view.header.maximize_clicked.emit()

    def keyPressEvent(self, event: object) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_R:  # type: ignore[attr-defined]
            self.view.reset_camera()
        else:
            super().keyPressEvent(event)  # type: ignore[arg-type]
