"""Thoracic cage, shoulder girdle, hip bones and femurs."""

from __future__ import annotations

import numpy as np

from lorkd_core.data.phantom_canvas import Canvas
from lorkd_core.data.phantom_patient import LEVELS, Patient, level_mid, spine_y
from lorkd_core.data.phantom_shapes import (
    Arc,
    Capsule,
    Ellipsoid,
    Intersect,
    Lambda,
    Shape,
    Sphere,
    Subtract,
    Tube,
    ZColumn,
    rotation,
)
from lorkd_core.data.phantom_spine import _paint_bone
from lorkd_core.data.phantom_tissues import T
from lorkd_core.data.phantom_torso import cavity_axes

_RIB_DROP = (25, 40, 50, 60, 68, 75, 80, 84, 84, 78, 55, 35)


def rib_arc(p: Patient, k: int, side: int, rng: np.random.Generator) -> tuple[Arc, float, float]:
    """The arc of rib ``k`` (1..12) and its bony and cartilage end parameters."""
    zk = level_mid(f"T{k}") + 8
    drop = _RIB_DROP[k - 1] * rng.uniform(0.9, 1.1)
    a_cav, b_ant, b_post = cavity_axes(p, zk - 0.5 * drop)
    a = a_cav + 6 if k > 1 else a_cav * 0.8
    y_post = float(spine_y(zk)) + 26
    y_ant = -(b_ant + 7)
    b_world = (y_post - y_ant) / 2
    alpha = float(np.arcsin(min(0.9, drop / (2 * b_world))))
    b_loc = b_world / np.cos(alpha)
    cz = zk - b_loc * np.sin(alpha)
    center = (0.0, y_post - b_world, cz)
    t0 = float(np.arcsin(min(0.95, 28 / a)))
    if k <= 7:
        t_bone, t_cart = np.pi - np.arcsin(min(0.95, (45 + 4 * k) / a)), np.pi - np.arcsin(min(0.95, 16 / a))
    elif k <= 10:
        t_bone, t_cart = np.pi - np.arcsin(min(0.95, (75 + 5 * (k - 8)) / a)), np.pi - np.arcsin(min(0.95, 45 / a))
    else:
        t_bone = t_cart = (1.95 if k == 11 else 1.45)
    thick, height = (3.2, 5.5) if k in (1, 12) else (3.6, 6.5)
    arc = Arc(center, a, b_loc, t0, t_bone, thick, height, rot=rotation(rx=alpha), side=side)
    return arc, float(t_bone), float(t_cart)


def paint_ribs(c: Canvas, p: Patient, rng: np.random.Generator) -> None:
    for k in range(1, 13):
        for side, name in ((-1, "right"), (1, "left")):
            arc, t_bone, t_cart = rib_arc(p, k, side, rng)
            if t_cart > t_bone + 0.01:
                cart = Arc(arc.c, arc.a, arc.b, t_bone - 0.02, t_cart, arc.thick, arc.height, arc.rot, side)
                c.paint(cart, T.CARTILAGE, "costal_cartilages")
            _paint_bone(c, [arc], f"rib_{name}_{k}", inset=1.1)


def sternum_y(p: Patient, z: float) -> float:
    return -(cavity_axes(p, z)[1] + 9)


def paint_sternum(c: Canvas, p: Patient, rng: np.random.Generator) -> None:
    top = LEVELS["T2"][0] + rng.uniform(-5, 5)
    zs = np.array([top - 165, top - 140, top - 120, top - 60, top - 45, top - 30, top])
    half_w = np.array([6, 9, 15, 17, 19, 27, 24]) * rng.uniform(0.9, 1.1)
    half_d = np.array([3.5, 5, 6, 6.5, 6.5, 8, 8])
    cy = np.array([sternum_y(p, z) for z in zs])
    _paint_bone(c, [ZColumn(zs, 0.0, cy, half_w, half_d, half_d, n=2.4)], "sternum", inset=1.2)


def paint_shoulder_girdle(c: Canvas, p: Patient, rng: np.random.Generator) -> None:
    top = LEVELS["T2"][0]
    m = p.muscle
    for side, name in ((-1, "right"), (1, "left")):
        sy = sternum_y(p, top)
        pts = [(side * 22, sy - 6, top + 4), (side * 70 * m, sy - 10, top + 14), (side * 118 * m, -12, top + 28),
               (side * 150 * m, 12, top + 30)]
        _paint_bone(c, [Tube(pts, [8, 6.5, 6, 7], smooth=3)], f"clavicula_{name}", inset=1.6)
        y_s = cavity_axes(p, top - 40)[2] + 14
        blade = Ellipsoid((side * 88 * m, y_s, top - 45), (44 * m, 4.0, 58), rot=rotation(rz=side * 0.55))
        spine = Capsule((side * 60 * m, y_s + 8, top - 2), (side * 140 * m, 12, top + 22), 5.0)
        glenoid = Ellipsoid((side * 138 * m, 10, top + 12), (10, 16, 18))
        _paint_bone(c, [blade, spine, glenoid], f"scapula_{name}", inset=1.3)


def femur_head(p: Patient, side: int) -> tuple[np.ndarray, float]:
    return np.array([side * 90.0 * p.muscle, -8.0, -108.0]), 23.0


def paint_hips(c: Canvas, p: Patient, rng: np.random.Generator) -> None:
    m = p.muscle
    for side, name in ((-1, "right"), (1, "left")):
        head, rh = femur_head(p, side)
        parts: list[Shape] = []
        # Iliac wing: stacked arcs from the crest down to the acetabular roof.
        for f in np.linspace(0, 1, 7):
            z = 18 - 88 * f
            cx, cy = side * (38 + 32 * f) * m, -18 + 10 * f
            a, b = (88 - 52 * f) * m, 70 - 30 * f
            t0, t1 = 0.22 + 0.25 * f, 1.95 - 0.45 * f
            parts.append(Arc((cx, cy, z), a, b, t0, t1, 3.0 + 6 * f, 8.5, side=side))
        cup = Subtract(Intersect(Sphere(head, rh + 13),
                                 Lambda(lambda x, y, z, h=head, s=side: (s * (x - h[0]) * 0.8 - (y - h[1]) * 0.35
                                                                         - (z - h[2]) * 0.45) - 6.0,
                                        head - 40, head + 40)),
                       Sphere(head, rh + 2.5))
        parts.append(cup)
        pubis = np.array([side * 16.0, -64.0, -140.0])
        parts.append(Tube([head + (side * -14, -22, 6), (side * 45 * m, -55, -124), pubis + (side * 4, 2, 6)],
                          [10, 8, 8], smooth=3))
        parts.append(Ellipsoid(pubis, (12, 12, 22)))
        tuber = np.array([side * 62.0 * m, 28.0, -178.0])
        parts.append(Tube([head + (side * -6, 24, -14), tuber], [13, 14]))
        parts.append(Tube([tuber, (side * 42 * m, -8, -185), pubis + (side * 6, 4, -16)], [9, 7, 7], smooth=3))
        _paint_bone(c, parts, f"hip_{name}", inset=1.5)


def paint_femurs(c: Canvas, p: Patient, rng: np.random.Generator) -> None:
    m = p.muscle
    for side, name in ((-1, "right"), (1, "left")):
        head, rh = femur_head(p, side)
        struct = f"femur_{name}"
        c.paint(Sphere(head, rh + 2.5), T.CARTILAGE, None, only_tissue=(T.MUSCLE, T.FAT))
        neck_base = np.array([side * 116 * m, 2, -132])
        knee = np.array([side * 66 * m, 14, -548])
        shaft_top = np.array([side * 118 * m, 6, -165])
        r_shaft = 13.5 * rng.uniform(0.92, 1.08)
        spongy = [Sphere(head, rh), Capsule(head, neck_base, 15, 16),
                  Ellipsoid((side * 128 * m, 10, -122), (16, 22, 30)),
                  Ellipsoid((side * 104 * m, 16, -160), (10, 10, 12)),
                  Capsule(shaft_top + (0, 0, 22), shaft_top, 20, r_shaft)]
        for s in (-1, 1):
            spongy.append(Ellipsoid(knee + (s * 22, 4, 0), (17, 28, 22)))
        spongy.append(Capsule(knee + (0, -2, 60), knee + (0, 2, 8), r_shaft + 3, 30))
        shaft = Capsule(shaft_top, knee + (0, -2, 60), r_shaft, r_shaft + 3)
        for part in [*spongy, shaft]:
            c.paint(part, T.BONE, struct)
        for part in spongy:
            c.paint(part, [(1.6, T.SPONGY)], keep_struct=True, only_tissue=(T.BONE,), only_struct=(struct,))
        c.paint(shaft, [(r_shaft * 0.38, T.MARROW)], keep_struct=True, only_struct=(struct,))
