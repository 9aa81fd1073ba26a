"""Assemble a scene on a canvas: the whole body (every region but the upper limb is a field of view on
it, so neighbouring anatomy shows up naturally) or an isolated arm. Painting order matters: later
structures win where shapes overlap, so organs come after the fat they sit in and bones last."""

from __future__ import annotations

import numpy as np

from lorkd_core.data import phantom_abdomen as abd
from lorkd_core.data.phantom_bones import (
    paint_femurs,
    paint_hips,
    paint_ribs,
    paint_shoulder_girdle,
    paint_sternum,
)
from lorkd_core.data.phantom_canvas import Canvas
from lorkd_core.data.phantom_head import paint_head, paint_neck
from lorkd_core.data.phantom_limbs import arm_path, paint_arm, paint_legs
from lorkd_core.data.phantom_patient import Patient
from lorkd_core.data.phantom_spine import paint_spine
from lorkd_core.data.phantom_thorax import paint_aorta, paint_thorax
from lorkd_core.data.phantom_torso import paint_table, paint_trunk_muscles, paint_wall


def build_body(c: Canvas, p: Patient, rng: np.random.Generator) -> None:
    paint_wall(c, p)
    paint_trunk_muscles(c, p, rng)
    lm = paint_thorax(c, p, rng)
    abd.paint_bowel(c, p, rng)
    abd.paint_stomach(c, p, rng)
    abd.paint_liver(c, p, rng)
    abd.paint_spleen(c, p, rng)
    abd.paint_pancreas(c, p, rng)
    abd.paint_kidneys(c, p, rng)
    abd.paint_pelvic_organs(c, p, rng)
    aorta_pts, aorta_r = paint_aorta(c, p, lm, rng)
    abd.paint_abdominal_vessels(c, p, aorta_pts, aorta_r, rng)
    abd.paint_small_bowel(c, p, rng)
    paint_spine(c, p, rng)
    paint_ribs(c, p, rng)
    paint_sternum(c, p, rng)
    paint_shoulder_girdle(c, p, rng)
    paint_hips(c, p, rng)
    paint_femurs(c, p, rng)
    paint_head(c, p, rng)
    paint_neck(c, p, lm.trachea_y, rng)
    paint_legs(c, p, rng)
    if p.arms == "down":
        for side in (-1, 1):
            paint_arm(c, p, side, arm_path(p, side), rng)
    paint_table(c, rng)


def build_arm(c: Canvas, p: Patient, rng: np.random.Generator) -> None:
    """An arm stretched above the head, scanned on its own (elbow at z = 0)."""
    side = 1 if rng.uniform() < 0.5 else -1
    x = rng.uniform(-10, 10)
    path = np.array([[x + side * 4, 8, 300], [x, 10, 0], [x - side * 6, 2, -270]])
    paint_arm(c, p, side, path, rng)
    paint_table(c, rng, width=160.0)
