"""Horizontal bar chart of class probabilities (QtCharts is not part of PySide6-Essentials)."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget

from ..theme import ACCENT

ROW = 26


class BarChart(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._values: list[tuple[str, float]] = []
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_values(self, values: dict[str, float]) -> None:
        self._values = sorted(values.items(), key=lambda kv: -kv[1])
        self.setFixedHeight(max(ROW, ROW * len(self._values) + 8))
        self.update()

    def values(self) -> list[tuple[str, float]]:
        return list(self._values)

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        label_w = min(150, self.width() // 3)
        bar_w = max(10, self.width() - label_w - 60)
        for i, (name, value) in enumerate(self._values):
            y = 4 + i * ROW
            p.setPen(QColor("#dfe5ec"))
            p.drawText(QRectF(0, y, label_w - 6, ROW - 6), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                       name.replace("_", " "))
            p.fillRect(QRectF(label_w, y + 3, bar_w, ROW - 12), QColor("#2b2e34"))
            p.fillRect(QRectF(label_w, y + 3, bar_w * max(0.0, min(1.0, value)), ROW - 12),
                       QColor(ACCENT if i == 0 else "#5b6573"))
            p.drawText(QRectF(label_w + bar_w + 6, y, 54, ROW - 6), Qt.AlignmentFlag.AlignVCenter,
                       f"{100 * value:.1f}%")
