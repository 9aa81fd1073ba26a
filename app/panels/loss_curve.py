"""A small live loss plot drawn with QPainter: one line per series (total, task, kd, per region).

Each series becomes one QPainterPath built from a numpy buffer in a single call (``path_from_xy``), and
is thinned to about one point per pixel column. Why: PySide6 releases the GIL around Qt calls, so while
a job's threads hold the GIL every Qt call of the UI thread can wait milliseconds for it; a point-by-point
path (two calls per point, 11 series x 500 steps) kept the UI from responding for 100-200 ms per repaint.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QByteArray, QDataStream, QIODevice, QPointF, QRectF, Qt
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

    def color(self, key: str, series: dict | None = None) -> QColor:
        if key in FIXED:
            return FIXED[key]
        names = sorted(k for k in (self.series() if series is None else series) if k.startswith("region/"))
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

        def to_plot(pts: list[tuple[float, float]]) -> np.ndarray:
            xy = np.asarray(thin(pts, int(plot.width())), dtype=np.float64)
            xy[:, 0] = plot.left() + (xy[:, 0] - x0) / (x1 - x0) * plot.width()
            xy[:, 1] = plot.bottom() - (xy[:, 1] - y0) / ((y1 - y0) or 1.0) * plot.height()
            return xy

        painter.setPen(QColor(170, 170, 176))
        painter.drawText(QRectF(0, plot.top() - 4, 38, 14), Qt.AlignmentFlag.AlignRight, f"{y1:.3g}")
        painter.drawText(QRectF(0, plot.bottom() - 10, 38, 14), Qt.AlignmentFlag.AlignRight, f"{y0:.3g}")
        painter.drawText(QRectF(plot.left(), plot.bottom() + 2, plot.width(), 14), Qt.AlignmentFlag.AlignRight,
                         f"step {int(x1)}")
        legend_x = plot.left() + 4
        for key, pts in series.items():
            path = path_from_xy(to_plot(pts))
            pen = QPen(self.color(key, series), 2.0 if key in FIXED else 1.0)
            if key.startswith("region/"):
                pen.setStyle(Qt.PenStyle.DashLine)
            painter.setPen(pen)
            painter.drawPath(path)
            label = key.removeprefix("region/")
            painter.drawText(QPointF(legend_x, plot.top() + 12), label)
            legend_x += 8 + painter.fontMetrics().horizontalAdvance(label)


def thin(pts: list[tuple[float, float]], columns: int) -> list[tuple[float, float]]:
    """At most about ``2 * columns`` points: per column of the plot its first and its extreme point,
    so spikes stay visible; the last point is always kept."""
    if len(pts) <= 2 * max(columns, 1):
        return pts
    per = len(pts) / max(columns, 1)
    out: list[tuple[float, float]] = []
    for c in range(max(columns, 1)):
        chunk = pts[int(c * per):int((c + 1) * per)]
        if chunk:
            out.append(chunk[0])
            peak = max(chunk, key=lambda p: abs(p[1] - chunk[0][1]))
            if peak is not chunk[0]:
                out.append(peak)
    if out[-1] != pts[-1]:
        out.append(pts[-1])
    return out


def path_from_xy(xy: np.ndarray) -> QPainterPath:
    """A polyline through the (n, 2) points as a QPainterPath, made by one QDataStream read.

    QDataStream's QPainterPath format: int32 element count, then per element int32 type (0 = move-to,
    1 = line-to) and two float64 coordinates, then int32 start of the current sub-path and int32 fill rule;
    all big-endian."""
    n = len(xy)
    elements = np.empty(n, dtype=[("type", ">i4"), ("x", ">f8"), ("y", ">f8")])
    elements["type"] = 1
    elements["type"][:1] = 0
    elements["x"], elements["y"] = xy[:, 0], xy[:, 1]
    data = np.array([n], ">i4").tobytes() + elements.tobytes() + np.array([0, 0], ">i4").tobytes()
    buffer = QByteArray(data)  # the stream reads from it: keep it referenced until then
    stream = QDataStream(buffer, QIODevice.OpenModeFlag.ReadOnly)
    path = QPainterPath()
    stream >> path
    return path
