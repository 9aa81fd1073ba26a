"""A plain axial slice view behind the ViewerWidget's method names.

Used while app/viewer is not importable (it is built in parallel) or cannot start (no OpenGL), so the
rest of the app never has to care which one it got.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QWidget


class FallbackViewer(QWidget):
    cursor_info = Signal(object, float, int, str)  # voxel (z, y, x), value, label id, label name
    window_changed = Signal(float, float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(320, 240)
        self.setMouseTracking(True)
        self._volume: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        self._colors: dict[int, tuple[int, int, int]] = {}
        self._names: dict[int, str] = {}
        self._hidden: set[int] = set()
        self._opacity = 0.5
        self._window = (400.0, 40.0)
        self._presets: dict[str, tuple[float, float]] = {}
        self._aspect = 1.0
        self._z = 0
        self.hint = "Open a scan: File > Open, or drop a file or DICOM folder here"

    # ---------------------------------------------------------------- ViewerWidget API

    def set_volume(self, array, spacing=(1.0, 1.0, 1.0), origin=None, direction=None, modality="CT",
                   window=None) -> None:
        self._volume = np.asarray(array)
        self._labels = None
        self._aspect = float(spacing[1]) / float(spacing[0]) if spacing[0] else 1.0
        self._z = self._volume.shape[0] // 2
        if window is not None:
            self._window = (float(window[0]), float(window[1]))
        self.update()

    def set_labels(self, labels, colors=None, names=None) -> None:
        self._labels = None if labels is None else np.asarray(labels)
        self._colors = dict(colors or {})
        self._names = dict(names or {})
        if self._labels is not None and self._volume is not None and self._labels.any():
            counts = np.bincount(np.nonzero(self._labels.reshape(self._labels.shape[0], -1))[0],
                                 minlength=self._labels.shape[0])
            self._z = int(np.argmax(counts))
        self.update()

    def set_difference(self, a, b) -> None:
        if a is None or b is None:
            return
        diff = np.zeros(np.shape(a), dtype=np.int16)
        diff[(np.asarray(a) > 0) & (np.asarray(b) == 0)] = 1
        diff[(np.asarray(b) > 0) & (np.asarray(a) == 0)] = 2
        diff[(np.asarray(a) > 0) & (np.asarray(b) > 0) & (np.asarray(a) != np.asarray(b))] = 3
        self.set_labels(diff, {1: (255, 99, 71), 2: (30, 144, 255), 3: (255, 215, 0)},
                        {1: "only A", 2: "only B", 3: "A and B differ"})

    def set_opacity(self, opacity: float) -> None:
        self._opacity = float(opacity)
        self.update()

    def set_structure_visible(self, label_id: int, visible: bool) -> None:
        (self._hidden.discard if visible else self._hidden.add)(int(label_id))
        self.update()

    def window(self) -> tuple[float, float]:
        return self._window

    def set_window(self, width: float, level: float) -> None:
        self._window = (float(width), float(level))
        self.window_changed.emit(*self._window)
        self.update()

    def add_presets(self, presets: dict[str, tuple[float, float]]) -> None:
        self._presets.update(presets)

    def set_preset(self, name: str) -> None:
        if name in self._presets:
            self.set_window(*self._presets[name])

    def show_surfaces(self, visible: bool = True) -> None:
        """No 3D view here."""

    # ---------------------------------------------------------------- drawing and interaction

    def _image_rect(self) -> QRectF:
        assert self._volume is not None
        h, w = self._volume.shape[1] * self._aspect, self._volume.shape[2]
        scale = min(self.width() / w, self.height() / h)
        return QRectF((self.width() - w * scale) / 2, (self.height() - h * scale) / 2, w * scale, h * scale)

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#0c0d0f"))
        if self._volume is None:
            p.setPen(QColor("#8b95a1"))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.hint)
            return
        width, level = self._window
        gray = np.clip((self._volume[self._z] - (level - width / 2)) / max(width, 1e-6) * 255, 0, 255)
        rgb = np.repeat(gray.astype(np.uint8)[:, :, None], 3, axis=2)
        if self._labels is not None:
            lab = self._labels[self._z]
            for label_id, color in self._colors.items():
                mask = lab == label_id
                if label_id in self._hidden or not mask.any():
                    continue
                rgb[mask] = (rgb[mask] * (1 - self._opacity) + np.array(color) * self._opacity).astype(np.uint8)
        rgb = np.ascontiguousarray(rgb)
        image = QImage(rgb.data, rgb.shape[1], rgb.shape[0], rgb.strides[0], QImage.Format.Format_RGB888)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.drawImage(self._image_rect(), image)
        p.setPen(QColor("#c8d0da"))
        p.drawText(QPointF(10, 20), f"Axial {self._z + 1}/{self._volume.shape[0]}   W {width:.0f} L {level:.0f}")

    def wheelEvent(self, event) -> None:
        if self._volume is not None:
            step = 1 if event.angleDelta().y() > 0 else -1
            self._z = int(np.clip(self._z + step, 0, self._volume.shape[0] - 1))
            self.update()

    def mouseMoveEvent(self, event) -> None:
        if self._volume is None:
            return
        r = self._image_rect()
        pos = event.position()
        if not r.contains(pos):
            return
        x = int((pos.x() - r.x()) / r.width() * self._volume.shape[2])
        y = int((pos.y() - r.y()) / r.height() * self._volume.shape[1])
        x, y = min(x, self._volume.shape[2] - 1), min(y, self._volume.shape[1] - 1)
        label = int(self._labels[self._z, y, x]) if self._labels is not None else 0
        self.cursor_info.emit((self._z, y, x), float(self._volume[self._z, y, x]), label, self._names.get(label, ""))
