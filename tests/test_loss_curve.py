"""The job panel's loss curve: paths built in one call, thinned to the plot's width, drawn."""

from __future__ import annotations

import math

import numpy as np
from lorkd_studio.panels.loss_curve import LossCurve, path_from_xy, thin
from PySide6.QtCore import QPointF
from PySide6.QtGui import QPainterPath


def test_path_from_xy_equals_the_point_by_point_path(qapp):
    xy = np.random.default_rng(0).random((57, 2)) * 300
    expected = QPainterPath(QPointF(*xy[0]))
    for x, y in xy[1:]:
        expected.lineTo(QPointF(x, y))
    path = path_from_xy(xy)
    assert path.elementCount() == 57
    assert path == expected
    assert path_from_xy(xy[:1]).elementCount() == 1


def test_thin_keeps_spikes_the_ends_and_short_series():
    pts = [(float(i), math.sin(i / 50)) for i in range(5000)]
    pts[2345] = (2345.0, 40.0)  # a loss spike must stay visible
    out = thin(pts, 200)
    assert len(out) <= 2 * 200 + 1
    assert out[0] == pts[0] and out[-1] == pts[-1]
    assert (2345.0, 40.0) in out
    assert [p[0] for p in out] == sorted(p[0] for p in out)
    short = pts[:300]
    assert thin(short, 200) == short


def test_curve_draws_a_long_history_of_every_series(qtbot):
    curve = LossCurve()
    qtbot.addWidget(curve)
    curve.resize(400, 200)
    regions = ["abdomen", "brain", "thorax"]
    curve.set_history([{"step": s, "loss": 2 / (1 + s), "task": 1 / (1 + s), "kd": 0.5,
                        **{f"region/{r}": 1 + i / (1 + s) for i, r in enumerate(regions)}} for s in range(1, 3001)])
    image = curve.grab().toImage()
    assert image.width() == 400
    # the distillation line (orange, 2 px, constant 0.5 on a 0..2 axis) runs across the whole plot
    orange = {x for x in range(44, 392) for y in range(30, 178)
              if abs(image.pixelColor(x, y).red() - 250) < 30 and abs(image.pixelColor(x, y).green() - 170) < 30
              and image.pixelColor(x, y).blue() < 110}
    assert len(orange) > 300  # nearly every pixel column of the plot
    assert set(curve.series()) == {"loss", "task", "kd", *(f"region/{r}" for r in regions)}
