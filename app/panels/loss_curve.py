"""A small live loss plot drawn with QPainter: one line per series (total, task, kd, per region)."""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

FIXED = {"loss": QColor(230, 230, 230), "task": QColor(90, 170, 250), "kd": QColor(250, 170, 60)}
REGION_COLORS = [QColor(c) for c in ("#e15759", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7",
                                     "#9c755f", "#bab0ac")]


class LossCurve(QWidget):
    """``set_history(points)`` with points ``{"step": s, "loss": ..., "task": ..., "region/abdomen": ...}``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("lossCurve")
        self.setMinimumSize(240, 140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.points: list[dict[str, float]] = []
        self.show_regions = True

    def set_history(self, points: list[dict[str, float]]) -> None:
        self.points = list(points)
        self.update()

    def series(self) -> dict[str, list[tuple[float, float]]]:
        out: dict[str, list[tuple[float, float]]] = {}
        for p in self.points:
            for key, value in p.items():
                if key == "step" or not math.isfinite(value) or (key.startswith("region/") and not self.show_regions):
                    continue
                out.setdefault(key, []).append((p["step"], value))
        return out

    def color(self, key: str) -> QColor:
        if key in FIXED:
            return FIXED[key]
        names = sorted(k for k in self.series() if k.startswith("region/"))
        return REGION_COLORS[names.index(key) % len(REGION_COLORS)] if key in names else QColor("gray")

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        try:
            self._paint(painter)
        finally:
            painter.end()

    def _paint(self, painter: QPainter) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor(30, 30, 34))
        series = self.series()
        plot = QRectF(40, 8, max(10, self.width() - 48), max(10, self.height() - 30))
        painter.setPen(QPen(QColor(90, 90, 96)))
        painter.drawRect(plot)
        if not series:
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, "no steps yet")
            return
        xs = [x for pts in series.values() for x, _ in pts]
        ys = [y for pts in series.values() for _, y in pts]
        x0, x1 = min(xs), max(max(xs), min(xs) + 1)
        y0, y1 = min(0.0, min(ys)), max(ys) or 1.0

        def at(x: float, y: float) -> QPointF:
            return QPointF(plot.left() + (x - x0) / (x1 - x0) * plot.width(),
                           plot.bottom() - (y - y0) / ((y1 - y0) or 1.0) * plot.height())

        painter.setPen(QColor(170, 170, 176))
        painter.drawText(QRectF(0, plot.top() - 4, 38, 14), Qt.AlignmentFlag.AlignRight, f"{y1:.3g}")
        painter.drawText(QRectF(0, plot.bottom() - 10, 38, 14), Qt.AlignmentFlag.AlignRight, f"{y0:.3g}")
        painter.drawText(QRectF(plot.left(), plot.bottom() + 2, plot.width(), 14), Qt.AlignmentFlag.AlignRight,
                         f"step {int(x1)}")
        legend_x = plot.left() + 4
        for key, pts in series.items():
            path = QPainterPath(at(*pts[0]))
            for x, y in pts[1:]:
                path.lineTo(at(x, y))
            pen = QPen(self.color(key), 2.0 if key in FIXED else 1.0)
            if key.startswith("region/"):
                pen.setStyle(Qt.PenStyle.DashLine)
            painter.setPen(pen)
            painter.drawPath(path)
            label = key.removeprefix("region/")
            painter.drawText(QPointF(legend_x, plot.top() + 12), label)
            legend_x += 8 + painter.fontMetrics().horizontalAdvance(label)
