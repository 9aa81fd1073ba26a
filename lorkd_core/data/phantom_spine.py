"""Vertebral column: C1-L5 with posterior elements, discs, the canal with thecal sac and cord, sacrum."""

from __future__ import annotations

import numpy as np

from lorkd_core.data.phantom_canvas import Canvas
from lorkd_core.data.phantom_patient import LEVELS, Patient, spine_y
from lorkd_core.data.phantom_shapes import Arc, Capsule, Ellipsoid, Group, Shape, Tube, ZColumn, rotation
from lorkd_core.data.phantom_tissues import T

# Half-width, half-depth of the body and the canal half-axes, per level group.
_DIMS = {"C": (10, 8, 11, 7.5), "T": (17, 14, 8.5, 8), "L": (24, 17, 11, 9)}


def _dims(level: str) -> tuple[float, float, float, float]:
    g, i = level[0], int(level[1:])
    w, d, crx, cry = _DIMS[g]
    if g == "T":  # thoracic bodies grow downwards
        f = (i - 1) / 11
        w, d = 14 + 8 * f, 12 + 5 * f
    if g == "L":
        w += (i - 1) * 0.6
    return w, d, crx, cry


def canal_center(z: float) -> tuple[float, float]:
    """(y, canal half-depth) of the spinal canal at height z."""
    level = _level_at(z)
    _, d, _, cry = _dims(level)
    return float(spine_y(z) + d + cry + 1), cry


def _level_at(z: float) -> str:
    best, dist = "L5", 1e9
    for name, (b, t) in LEVELS.items():
        dz = 0.0 if b <= z <= t else min(abs(z - b), abs(z - t))
        if dz < dist:
            best, dist = name, dz
    return best


def _vertebra(level: str, rng: np.random.Generator) -> list[Shape]:
    b, t = LEVELS[level]
    zm = (b + t) / 2
    yc = float(spine_y(zm))
    w, d, crx, cry = (v * rng.uniform(0.95, 1.05) for v in _dims(level))
    g = level[0]
    parts: list[Shape] = []
    if level == "C1":
        parts.append(Arc((0, yc + 4, zm), crx + 9, cry + 13, -np.pi, np.pi, 3.0, 5.0))
        parts += [Ellipsoid((s * (crx + 5), yc + 3, zm), (7, 9, 7)) for s in (-1, 1)]
        return parts
    parts.append(ZColumn([b, t], 0.0, yc, w, d, d * 0.9, n=2.6))
    if level == "C2":
        parts.append(Capsule((0, yc - 1, t), (0, yc - 1, t + 16), 5.0))
    yc_canal = yc + d + cry + 1
    y_lam = yc_canal + cry + 3
    ped_r = {"C": 3.2, "T": 4.0, "L": 5.5}[g]
    for s in (-1, 1):
        root = (s * w * 0.55, yc + d * 0.75, zm)
        joint = (s * (crx + ped_r * 0.8), yc_canal + cry * 0.4, zm)
        parts.append(Capsule(root, joint, ped_r))
        parts.append(Capsule(joint, (0, y_lam, zm - 2), ped_r * 0.85))
        tlen = {"C": 14, "T": 24, "L": 30}[g]
        tdir = {"C": (1.0, -0.3), "T": (0.8, 0.6), "L": (1.0, 0.05)}[g]
        tip = (s * (crx + tlen * tdir[0]), yc_canal + tlen * tdir[1] * 0.6, zm)
        parts.append(Capsule(joint, tip, ped_r * 0.8, ped_r * 0.6))
        # Facet joints (articular processes) above and below the pedicle-lamina junction.
        parts.append(Capsule((joint[0], joint[1] + 2, b - 1), (joint[0], joint[1] + 2, t + 1), ped_r * 0.8))
    sp_len = {"C": 18, "T": 26, "L": 26}[g] + (12 if level == "C7" else 0)
    sp_drop = {"C": 4, "T": 18, "L": 4}[g]
    sp_r = {"C": 3.0, "T": 3.5, "L": 4.5}[g]
    tip = (0, y_lam + sp_len, zm - sp_drop)
    if g == "L":  # lumbar spinous processes are tall plates
        parts.append(Ellipsoid((0, y_lam + sp_len / 2, zm - 2), (sp_r * 0.8, sp_len / 2 + 2, 10)))
    else:
        parts.append(Capsule((0, y_lam, zm - 2), tip, sp_r, sp_r * 0.9))
    return parts


def _paint_bone(c: Canvas, parts: list[Shape], struct: str, inner: int = T.SPONGY, inset: float = 1.3) -> None:
    """Cortical shell (at least ``c.min_shell`` thick, see T.THIN) around spongy bone; the parts form
    one union (all shells first, then all interiors)."""
    c.paint(Group(*parts), [(0.0, T.THIN), (max(inset, c.min_shell), inner)], struct)


def paint_spine(c: Canvas, p: Patient, rng: np.random.Generator) -> None:
    lo, hi = c.extent()
    zmin, zmax = lo[2] - 60, hi[2] + 60
    levels = [lv for lv, (b, t) in LEVELS.items() if t > zmin and b < zmax]
    for level in levels:
        _paint_bone(c, _vertebra(level, rng), f"vertebrae_{level}")
    # Discs between consecutive bodies (none between C1 and C2).
    names = list(LEVELS)
    for upper, lower in zip(names[1:-1], names[2:]):
        zb = LEVELS[upper][0]
        zt = LEVELS[lower][1]
        if zt > zmax or zb < zmin:
            continue
        w, d, _, _ = _dims(lower)
        y = float(spine_y((zb + zt) / 2))
        c.paint(ZColumn([zt - 0.5, zb + 0.5], 0.0, y, w + 1.5, d + 1.5, d, n=2.6), T.DISC, "intervertebral_discs")
    lowest = LEVELS["L5"][0]
    disc = ZColumn([-41, lowest + 0.5], 0.0, float(spine_y(-35)), 24, 18, 17, n=2.6)
    c.paint(disc, T.DISC, "intervertebral_discs")
    paint_sacrum(c, p, rng)
    paint_canal(c, rng)


def paint_canal(c: Canvas, rng: np.random.Generator) -> None:
    zs = np.linspace(-80, LEVELS["C1"][1] + 15, 40)
    ys, rads = zip(*(canal_center(float(z)) for z in zs))
    pts = np.stack([np.zeros_like(zs), np.array(ys), zs], axis=1)
    canal = np.array(rads) + 0.5
    c.paint(Tube(pts, canal), T.FAT)
    c.paint(Tube(pts, canal - 1.5), T.CSF)
    cord_top = LEVELS["C1"][1] + 15
    cz = np.linspace(LEVELS["L1"][0] + 5, cord_top, 24)
    cy = np.array([canal_center(float(z))[0] for z in cz])
    cr = np.interp(cz, [120, 160, 300, 450, 500, 600], [2.5, 4.0, 4.2, 5.2, 5.8, 6.0]) * rng.uniform(0.9, 1.1)
    c.paint(Tube(np.stack([np.zeros_like(cz), cy, cz], axis=1), cr), T.WHITE, "spinal_cord")


def paint_sacrum(c: Canvas, p: Patient, rng: np.random.Generator) -> None:
    y0 = float(spine_y(-40))
    centers = [(0, y0, -52), (0, y0 + 12, -80), (0, y0 + 24, -106), (0, y0 + 32, -130), (0, y0 + 34, -150),
               (0, y0 + 28, -168)]
    half_w = [50, 40, 28, 18, 12, 8]
    half_d = [17, 14, 11, 9, 7, 5]
    half_h = [16, 15, 14, 12, 10, 9]
    tilt = [0.35, 0.5, 0.65, 0.8, 0.95, 1.1]
    s = rng.uniform(0.93, 1.07)
    parts: list[Shape] = []
    for ctr, w, d, h, a in zip(centers, half_w, half_d, half_h, tilt):
        parts.append(Ellipsoid(ctr, (w * s * p.muscle, d, h), rot=rotation(rx=a)))
    # S1 body and alae reaching the sacroiliac joints.
    parts.append(ZColumn([-62, -41], 0.0, y0, 25, 18, 16, n=2.6))
    for side in (-1, 1):
        parts.append(Ellipsoid((side * 42 * p.muscle, y0 + 12, -62), (20, 18, 24), rot=rotation(rx=0.4)))
    _paint_bone(c, parts, "sacrum", inset=1.5)
    canal = Tube([(0, y0 + 26, -42), (0, y0 + 33, -80), (0, y0 + 40, -120)], [7, 5, 3])
    c.paint(canal, T.FAT)
