"""Mediastinum, heart, great vessels, airways, oesophagus and the pulmonary vessel tree."""

from __future__ import annotations

import numpy as np

from lorkd_core.data.phantom_bones import sternum_y
from lorkd_core.data.phantom_canvas import Canvas
from lorkd_core.data.phantom_patient import LEVELS, Patient, spine_y
from lorkd_core.data.phantom_shapes import Capsule, Ellipsoid, Intersect, Sphere, Tube, ZColumn
from lorkd_core.data.phantom_tissues import T
from lorkd_core.data.phantom_torso import above_dome


def frame(axis) -> np.ndarray:
    """A rotation whose local z axis is ``axis``."""
    zax = np.asarray(axis, float)
    zax = zax / np.linalg.norm(zax)
    helper = np.array([1.0, 0, 0]) if abs(zax[0]) < 0.9 else np.array([0, 1.0, 0])
    xax = np.cross(helper, zax)
    xax /= np.linalg.norm(xax)
    yax = np.cross(zax, xax)
    return np.stack([xax, yax, zax], axis=1)


class ThoraxLandmarks:
    def __init__(self, p: Patient, rng: np.random.Generator) -> None:
        self.z_carina = LEVELS["T5"][1] + rng.uniform(-8, 8)
        self.z_arch = LEVELS["T4"][1] + rng.uniform(-6, 10)
        zc = p.dome_r + rng.uniform(10, 22)
        self.heart_c = np.array([22 + rng.uniform(-8, 8), sternum_y(p, zc) + 58, zc])
        self.heart_r = np.array([58, 48, 68]) * rng.uniform(0.9, 1.12)
        self.heart_axis = np.array([0.55 + rng.uniform(-0.1, 0.1), -0.5, -0.65])
        self.trachea_y = lambda z: float(np.interp(z, [self.z_carina, 470, 530], [spine_y(self.z_carina) - 38,
                                                                                      -12, -20]))


def aorta_path(p: Patient, lm: ThoraxLandmarks, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h = lm.heart_c
    za = lm.z_arch
    pts = [(h[0] - 12, h[1] - 8, h[2] + 38), (h[0] - 26, h[1] - 22, h[2] + 80), (-8, h[1] - 30, za - 22),
           (2, h[1] - 16, za + 2), (16, spine_y(za) - 28, za + 4), (24, spine_y(za - 30) - 20, za - 30)]
    zs = np.linspace(za - 70, LEVELS["L4"][1] - 6, 9)
    for z in zs:
        x = float(np.interp(z, [p.dome_r - 40, za - 70], [7, 22]))
        dy = 30 if z < p.dome_r - 30 else 22
        pts.append((x, float(spine_y(z)) - dy, z))
    rad = np.concatenate([[15, 16, 15, 14, 13, 13], np.interp(zs, [0, p.dome_r - 40, za], [9, 11, 12.5])])
    return np.array(pts), rad * rng.uniform(0.9, 1.0 + max(0.0, p.age - 50) / 250)


def paint_thorax(c: Canvas, p: Patient, rng: np.random.Generator) -> ThoraxLandmarks:
    lm = ThoraxLandmarks(p, rng)
    zs = np.array([p.dome_r - 30, lm.heart_c[2], lm.z_arch, 440, 470])
    y_ant = np.array([sternum_y(p, z) + 8 for z in zs])
    y_post = np.array([spine_y(z) - 5 for z in zs])
    c.paint(ZColumn(zs, np.array([18, 15, 10, 5, 2]), (y_ant + y_post) / 2, np.array([38, 40, 34, 26, 20]),
                    (y_post - y_ant) / 2), T.FAT, only_tissue=(T.LUNG, T.MUSCLE, T.FAT))
    # Heart with epicardial fat, resting on the diaphragm.
    rot = frame(lm.heart_axis)
    floor = above_dome(p, 4.0)
    c.paint(Intersect(Ellipsoid(lm.heart_c, lm.heart_r + 7, rot), floor), T.FAT)
    c.paint(Intersect(Ellipsoid(lm.heart_c, lm.heart_r, rot), floor), T.MYOCARDIUM, "heart")
    r = lm.heart_r
    chambers = [((0.25, 0.1, -0.2), (0.42, 0.45, 0.55), T.ARTERY), ((-0.35, -0.25, -0.1), (0.35, 0.4, 0.55), T.VEIN),
                ((0.15, 0.35, 0.5), (0.45, 0.35, 0.3), T.ARTERY), ((-0.4, 0.15, 0.45), (0.35, 0.4, 0.35), T.VEIN)]
    for off, rad, tis in chambers:
        ctr = lm.heart_c + rot @ (np.array(off) * r)
        c.paint(Ellipsoid(ctr, np.array(rad) * r, rot), tis, keep_struct=True, only_struct=("heart",))
    # Pulmonary arteries, superior vena cava, left brachiocephalic vein (the aorta comes later, over
    # the abdominal organs).
    h = lm.heart_c
    za = lm.z_arch
    c.paint(Tube([(h[0] - 5, h[1] - 40, h[2] + 30), (12, h[1] - 40, za - 40), (22, spine_y(za) - 50, lm.z_carina - 8),
                  (55, spine_y(za) - 35, lm.z_carina - 14)], [13, 13, 11, 8], smooth=3), T.ARTERY, "pulmonary_artery")
    c.paint(Tube([(10, h[1] - 40, za - 40), (-20, spine_y(za) - 45, lm.z_carina - 10),
                  (-55, spine_y(za) - 32, lm.z_carina - 18)], [11, 10, 8], smooth=3), T.ARTERY, "pulmonary_artery")
    c.paint(Tube([(-30, h[1] - 20, za + 45), (-26, h[1] - 18, za - 10), (-24, h[1] - 2, h[2] + 45)], [9, 10, 11],
                 smooth=3), T.VEIN, "superior_vena_cava")
    c.paint(Tube([(32, h[1] - 30, za + 38), (-22, h[1] - 22, za + 42)], 6), T.VEIN, "brachiocephalic_vein_left")
    paint_airways(c, p, lm, rng)
    paint_esophagus(c, p, lm, rng)
    paint_lung_trees(c, lm, rng)
    return lm


def paint_airways(c: Canvas, p: Patient, lm: ThoraxLandmarks, rng: np.random.Generator) -> None:
    zc = lm.z_carina
    zs = np.linspace(zc, 540, 8)
    pts = np.stack([np.full_like(zs, 1.0), [lm.trachea_y(z) for z in zs], zs], axis=1)
    r = 9.0 * rng.uniform(0.85, 1.15)
    c.paint(Tube(pts, r), [(0.0, T.SOFT), (2.0, T.GAS)], "trachea")
    carina = pts[0]
    for side, drop in ((-1, 22), (1, 34)):
        end = carina + (side * 34, 8, -drop)
        c.paint(Capsule(carina, end, r * 0.8, r * 0.65), [(0.0, T.SOFT), (1.8, T.GAS)], "bronchus")


def paint_esophagus(c: Canvas, p: Patient, lm: ThoraxLandmarks, rng: np.random.Generator) -> None:
    zs = [530, 470, lm.z_carina + 20, lm.z_carina - 40, p.dome_l - 10, p.dome_l - 32]
    xs = [4, 6, 10, 12, 22, 40]
    ys = [lm.trachea_y(530) + 16, lm.trachea_y(470) + 15, spine_y(lm.z_carina + 20) - 28,
          spine_y(lm.z_carina - 40) - 38, spine_y(p.dome_l - 10) - 50, spine_y(p.dome_l) - 70]
    pts = np.stack([xs, ys, zs], axis=1)
    tube = Tube(pts, 7.5 * rng.uniform(0.85, 1.2), smooth=4)
    layers = [(0.0, T.GI_WALL)] + ([(5.0, T.GAS)] if rng.uniform() < 0.4 else [])
    c.paint(tube, layers, "esophagus")


def paint_lung_trees(c: Canvas, lm: ThoraxLandmarks, rng: np.random.Generator) -> None:
    """Bronchovascular bundles radiating from each hilum to points sampled inside the painted lung, so
    every branch lands in lung; painted over lung only, they keep the lung labels (TotalSegmentator
    lung masks include the intrapulmonary vessels). Vessels thinner than the voxel are painted
    wider with diluted HU (T.TWIG)."""
    for side, name in ((-1, "right"), (1, "left")):
        lung = np.argwhere(c.struct == c.names.get(f"lung_{name}", -1))
        if len(lung) < 50:
            continue
        hilum = np.array([side * 48.0, spine_y(lm.z_carina) - 22, lm.z_carina - 22])
        pts = lung[rng.integers(0, len(lung), 64)]
        anat = np.stack([c.X[tuple(pts.T)], c.Y[tuple(pts.T)], c.Z[tuple(pts.T)]], axis=1)
        primaries = anat[:12]
        for i, tgt in enumerate(primaries):
            mid = hilum + (tgt - hilum) * 0.45 + rng.normal(0, 6, 3)
            _vessel(c, [hilum, mid, tgt], [4.5, 3.5, 2.2])
            if i < 5:
                off = np.cross(tgt - hilum, (0, 0, 1.0))
                off = off / (np.linalg.norm(off) + 1e-6) * 6
                c.paint(Tube([hilum + off, mid + off], [3.5, 2.5]), [(0.0, T.SOFT), (1.0, T.GAS)], keep_struct=True,
                        only_tissue=(T.LUNG, T.SOFT, T.GAS))
            for leaf in anat[12 + 4 * i: 16 + 4 * i]:
                if np.linalg.norm(leaf - tgt) < 90:
                    _vessel(c, [tgt, leaf], [2.0, 0.9])


def _vessel(c: Canvas, pts, radii) -> None:
    floor = 0.8 * c.min_shell
    for a, b, ra, rb in zip(pts[:-1], pts[1:], radii[:-1], radii[1:]):
        if rb >= floor:
            c.paint(Capsule(a, b, ra, rb), T.ARTERY, keep_struct=True, only_tissue=(T.LUNG, T.TWIG))
        else:
            c.paint(Capsule(a, b, max(ra, floor), floor), T.TWIG, keep_struct=True, only_tissue=(T.LUNG,))


def paint_aorta(c: Canvas, p: Patient, lm: ThoraxLandmarks, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    pts, rad = aorta_path(p, lm, rng)
    c.paint(Tube(pts, rad, smooth=4), T.ARTERY, "aorta")
    if p.age > 55:  # calcified plaques in the wall
        for _ in range(int(rng.integers(0, 6))):
            i = int(rng.integers(4, len(pts)))
            d = rng.normal(size=3)
            d /= np.linalg.norm(d)
            c.paint(Sphere(pts[i] + d * rad[i] * 0.9, rng.uniform(1.5, 3.5)), T.PLAQUE, keep_struct=True,
                    only_struct=("aorta",))
    za = lm.z_arch
    for x, r in ((-8, 6.5), (4, 4.5), (16, 5.0)):  # arch branches up into the neck
        c.paint(Capsule((x, lm.heart_c[1] - 16 + x * 0.8, za + 4), (x * 1.4, lm.heart_c[1] - 14 + x, za + 40), r),
                T.ARTERY, only_tissue=(T.FAT, T.LUNG, T.MUSCLE))
    return pts, rad
