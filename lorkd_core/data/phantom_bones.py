"""Thoracic cage, shoulder girdle, hip bones and femurs."""

from __future__ import annotations

import numpy as np

from lorkd_core.data.phantom_canvas import Canvas
from lorkd_core.data.phantom_patient import LEVELS, Patient, level_mid, spine_y
from lorkd_core.data.phantom_shapes import (
    Capsule,
    Ellipsoid,
    Intersect,
    Lambda,
    Shape,
    Sphere,
    Subtract,
    SweptArc,
    Tube,
    ZColumn,
    rotation,
)
from lorkd_core.data.phantom_spine import _paint_bone
from lorkd_core.data.phantom_tissues import T
from lorkd_core.data.phantom_torso import cavity_axes

_RIB_DROP = (25, 40, 50, 60, 68, 75, 80, 84, 84, 78, 55, 35)


def rib_path(p: Patient, k: int, side: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Centre line of rib ``k`` (1..12) and of its costal cartilage.

    From the costovertebral joint the neck runs back and out to the tubercle, then the shaft follows
    the trunk cavity just outside it, descending towards its anterior end; ribs 1-10 continue as
    cartilage towards the sternum."""
    zk = level_mid(f"T{k}") + 6
    drop = _RIB_DROP[k - 1] * rng.uniform(0.9, 1.1)
    sy = float(spine_y(zk))
    head = np.array([side * 20.0, sy + 6, zk + 2])
    tubercle = np.array([side * 34.0, sy + 28, zk])
    end = {11: 1.75, 12: 1.25}.get(k, np.pi - 0.42 - 0.05 * min(k, 8))
    if k == 1:
        end = np.pi - 0.7
    phis = np.linspace(0.42, end, 9)
    pts = [head, tubercle]
    for i, phi in enumerate(phis):
        frac = i / (len(phis) - 1)
        z = zk - drop * frac**0.9
        a, b_ant, b_post = cavity_axes(p, z)
        if k == 1:
            a *= 0.85
        r_y = b_post if np.cos(phi) > 0 else b_ant
        pts.append(np.array([side * (a + 5) * np.sin(phi), (r_y + 5) * np.cos(phi), z]))
    bone = np.array(pts)
    cart = np.zeros((0, 3))
    if k <= 10:
        last = bone[-1]
        target_z = last[2] + (6 if k <= 5 else 18 + 4 * (k - 6))
        target = np.array([side * (14 + 4 * max(0, k - 7)), sternum_y(p, min(target_z, LEVELS["T2"][0])) + 2,
                           target_z])
        if k >= 8:
            target = np.array([side * (40 + 8 * (k - 8)), last[1] + 10, last[2] + 28])
        mid = (last + target) / 2 + np.array([side * 8.0, -6.0, -4.0])
        cart = np.array([last, mid, target])
    return bone, cart


def paint_ribs(c: Canvas, p: Patient, rng: np.random.Generator) -> None:
    for k in range(1, 13):
        r = (4.0 if k in (1, 12) else 4.8) * rng.uniform(0.9, 1.1)
        for side, name in ((-1, "right"), (1, "left")):
            bone, cart = rib_path(p, k, side, rng)
            if len(cart):
                c.paint(Tube(cart, r * 0.85, smooth=3), T.CARTILAGE, "costal_cartilages")
            radii = np.full(len(bone), r)
            radii[0] = r * 1.1
            _paint_bone(c, [Tube(bone, radii)], f"rib_{name}_{k}", inset=1.1)


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
        blade = Ellipsoid((side * 90 * m, y_s, top - 45), (46 * m, 4.0, 60), rot=rotation(rz=-side * 0.5))
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
        # Iliac wing: a curved plate from the crest down to the acetabular roof, flaring laterally.
        crest = dict(cx=side * 36 * m, cy=-14, a=90 * m, b=68, t0=0.3, t1=2.05, thick=2.6)
        roof = dict(cx=side * 70 * m, cy=-6, a=26 * m, b=30, t0=0.35, t1=1.9, thick=7.0)
        parts.append(SweptArc(20 + rng.uniform(-5, 5), -92, crest, roof, side=side))
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
        for part in spongy:
            c.paint(part, T.THIN, struct)
        c.paint(shaft, T.BONE, struct)
        for part in spongy:
            c.paint(part, [(max(1.6, c.min_shell), T.SPONGY)], keep_struct=True, only_tissue=(T.THIN, T.BONE),
                    only_struct=(struct,))
        c.paint(shaft, [(r_shaft * 0.38, T.MARROW)], keep_struct=True, only_struct=(struct,))
