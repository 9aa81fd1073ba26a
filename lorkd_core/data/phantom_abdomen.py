"""Abdominal organs, bowel and the abdominal vessels."""

from __future__ import annotations

import numpy as np

from lorkd_core.data.phantom_canvas import Canvas
from lorkd_core.data.phantom_patient import LEVELS, Patient, level_mid, spine_y
from lorkd_core.data.phantom_shapes import (
    Box,
    Ellipsoid,
    Intersect,
    Offset,
    Shape,
    Sphere,
    Tube,
    Union,
    rotation,
)
from lorkd_core.data.phantom_thorax import frame
from lorkd_core.data.phantom_tissues import T

# Tissues of the free abdominal space: an organ painted "only" over these stays inside the cavity and
# below the diaphragm, and later organs win over earlier bowel, as in the painting order.
ABD = (T.VFAT, T.GI_WALL, T.GI_FLUID, T.STOOL, T.GAS, T.STOMACH_FLUID, T.SOFT, T.LYMPH, T.BILE, T.CORTEX,
       T.MEDULLA, T.URINE)
_IN = {"only_tissue": ABD}


def _hollow(c: Canvas, shape: Shape, content: int, struct: str, rng: np.random.Generator, wall: float = 2.5,
            gas_bubbles: int = 0, gas_level: float | None = None, **kw) -> None:
    c.paint(shape, T.GI_WALL, struct, **kw)
    c.paint(shape, [(wall, content)], keep_struct=True, only_struct=(struct,))
    lo, hi = shape.bounds()
    if gas_level is not None:
        y_cut = lo[1] + (hi[1] - lo[1]) * gas_level
        c.paint(Intersect(Offset(shape, -wall), Box(lo, (hi[0], y_cut, hi[2]))), T.GAS, keep_struct=True,
                only_tissue=(content,), only_struct=(struct,))
    for _ in range(gas_bubbles):
        ctr = lo + (hi - lo) * rng.uniform(0.1, 0.9, 3)
        c.paint(Sphere(ctr, rng.uniform(4, 14)), T.GAS, keep_struct=True, only_tissue=(content,),
                only_struct=(struct,))


def paint_liver(c: Canvas, p: Patient, rng: np.random.Generator) -> None:
    s = rng.uniform(0.88, 1.15)
    d = p.dome_r
    right = Ellipsoid((-66, 4, d - 66 * s), np.array([84, 96, 80]) * s, rot=rotation(rx=rng.uniform(-0.1, 0.1)),
                      taper=rng.uniform(-0.25, 0.05))
    left = Ellipsoid((8 + rng.uniform(-10, 10), -42, d - 42), np.array([44, 40, 76]) * s,
                     rot=rotation(ry=np.pi / 2 + rng.uniform(-0.15, 0.15)), taper=-0.35)
    caudate = Ellipsoid((-14, 30, d - 62), (20, 18, 34))
    c.paint(Union(right, left, caudate, k=25), T.LIVER, "liver", only_tissue=(*ABD, T.SPLEEN))
    # Hepatic veins to the IVC and portal branches from the hilum, inside the liver only.
    ivc_top = np.array([-20.0, 28.0, d - 18])
    for tgt in ((-95, 10, d - 55), (-45, -45, d - 60), (20, -40, d - 45)):
        c.paint(Tube([ivc_top, tgt], [6, 2]), T.VEIN, keep_struct=True, only_struct=("liver",))
    hilum = np.array([-38.0, 5.0, d - 80])
    for tgt in ((-100, 15, d - 85), (-80, -30, d - 110), (-70, 50, d - 95), (-5, -35, d - 70), (30, -45, d - 55)):
        c.paint(Tube([hilum, tgt], [7, 2]), T.PORTAL, keep_struct=True, only_struct=("liver",))
    gb = Ellipsoid((-46, -42, d - 108), np.array([15, 15, 36]) * rng.uniform(0.5, 1.15),
                   rot=rotation(rx=0.5, ry=-0.3))
    c.paint(gb, T.GI_WALL, "gallbladder", only_tissue=(*ABD, T.LIVER))
    c.paint(gb, [(1.5, T.BILE)], keep_struct=True, only_struct=("gallbladder",))


def paint_spleen(c: Canvas, p: Patient, rng: np.random.Generator) -> None:
    s = rng.uniform(0.8, 1.3)
    axes = np.array([22, 40, 56]) * s
    if p.realism >= 2:  # real spleens reach ~70 cm² in one axial slice: larger, broader in-plane
        axes = np.array([27, 50, 56]) * (0.9 + (s - 0.8) * 1.5)
    axis = (0.28 + rng.uniform(-0.1, 0.1), -0.55, -0.8)
    rot = frame(axis) @ rotation(rz=rng.uniform(-0.3, 0.3))
    spleen = Ellipsoid((86, 48, p.dome_l - 58), axes, rot=rot, bend=(0.25, 0.0))
    c.paint(spleen, T.SPLEEN, "spleen", **_IN)


def paint_stomach(c: Canvas, p: Patient, rng: np.random.Generator) -> None:
    d = p.dome_l
    fill = rng.uniform(0.6, 1.25)
    pts = [(55, 38, d - 22), (70, 0, d - 58), (56, -42, d - 98), (26, -60, d - 120), (-10, -58, d - 110),
           (-32, -40, d - 100)]
    rad = np.array([40, 38, 32, 24, 18, 11]) * fill
    gas = rng.uniform(0.0, 0.4)
    # realism >= 2: more gas, as in real supine scans (about 10% of the stomach below -500 HU)
    gas_level = gas**1.5 if p.realism < 2 else 0.1 + 0.6 * gas
    _hollow(c, Tube(pts, rad, smooth=3), T.STOMACH_FLUID, "stomach", rng, wall=4.0, gas_level=gas_level, **_IN)


def paint_pancreas(c: Canvas, p: Patient, rng: np.random.Generator) -> None:
    zl1 = level_mid("L1")
    pts = [(-34, -12, zl1 - 32), (-30, -22, zl1 - 12), (-6, -32, zl1 - 2), (30, -20, zl1 + 6), (66, 14, zl1 + 14),
           (84, 34, zl1 + 22)]
    atrophy = rng.uniform(0.7, 1.15) * (1.0 - max(0.0, p.age - 60) / 150)
    rad = np.array([15, 14, 11, 11, 10, 8]) * atrophy
    c.paint(Tube(pts, rad, smooth=3), T.PANCREAS, "pancreas", **_IN)
    for _ in range(int(rng.integers(6, 16))):
        i = int(rng.integers(0, len(pts)))
        ctr = np.asarray(pts[i], float) + rng.normal(0, 6, 3)
        c.paint(Sphere(ctr, rng.uniform(1.5, 3.0)), T.FAT, keep_struct=True, only_struct=("pancreas",))
    # Splenic vein along its back, joining the SMV behind the neck into the portal vein.
    conf = np.array([-12.0, -14.0, zl1 - 6])
    c.paint(Tube([(80, 44, zl1 + 20), (40, -4, zl1 + 8), conf], 4.5, smooth=3), T.PORTAL,
            "portal_vein_and_splenic_vein")
    c.paint(Tube([conf, (-30, -2, zl1 + 20), (-38, 5, p.dome_r - 80)], [7, 7, 7], smooth=3), T.PORTAL,
            "portal_vein_and_splenic_vein")


def paint_kidneys(c: Canvas, p: Patient, rng: np.random.Generator) -> None:
    zl1 = level_mid("L1")
    for side, name in ((-1, "right"), (1, "left")):
        z = zl1 - 8 - (14 if side < 0 else 0) + rng.uniform(-12, 12)
        ctr = np.array([side * 70.0 * p.muscle, float(spine_y(z)) + 18, z])
        radii = np.array([25, 21, 52]) * rng.uniform(0.85, 1.12)
        axis = np.array([-side * 0.22, 0.2, 1.0])
        rot = frame(axis)
        # Turn the frame so local +x points medially and anteriorly (towards the hilum).
        medial = np.array([-side * 0.85, -0.55, 0.0])
        xl = rot.T @ medial
        rot = rot @ rotation(rz=float(np.arctan2(xl[1], xl[0])))
        kidney = Ellipsoid(ctr, radii, rot, bend=(0.22, 0.0))
        c.paint(Offset(kidney, 10), T.VFAT, only_tissue=ABD)
        c.paint(Offset(kidney, 3), T.VFAT, only_tissue=(T.LIVER, T.SPLEEN, T.MUSCLE))
        c.paint(kidney, [(0.0, T.CORTEX), (6.0, T.MEDULLA)], f"kidney_{name}", only_tissue=(*ABD, T.LIVER, T.SPLEEN,
                                                                                          T.MUSCLE))
        hil = ctr + rot @ np.array([radii[0] * 0.75, 0, 0])
        c.paint(Ellipsoid(hil, radii * np.array([0.55, 0.45, 0.45]), rot), T.FAT, keep_struct=True,
                only_struct=(f"kidney_{name}",))
        c.paint(Ellipsoid(hil + rot @ np.array([3.0, 0, 0]), radii * np.array([0.25, 0.22, 0.25]), rot),
                T.URINE, keep_struct=True, only_struct=(f"kidney_{name}",))
        ureter = [hil + rot @ np.array([8.0, 0, 0]), (side * 45, 10, 0), (side * 40, 25, -90), (side * 25, -25, -140)]
        c.paint(Tube(ureter, 2.5, smooth=3), T.SOFT, only_tissue=(T.VFAT,))
        adrenal = Tube([ctr + rot @ np.array([8.0, 0, radii[2] + 5]), ctr + (-side * 12, 5, radii[2] + 30)], 3.0)
        c.paint(adrenal, T.SOFT, f"adrenal_gland_{name}", only_tissue=(T.VFAT,))


def paint_bowel(c: Canvas, p: Patient, rng: np.random.Generator) -> None:
    d = p.dome_l
    zl1 = level_mid("L1")
    colon = [(-82, -18, -55), (-92, -5, 20), (-88, -20, 80), (-60, -60, 95), (0, -72, 70 + rng.uniform(-25, 15)),
             (55, -55, 105), (84, 2, d - 72), (96, 30, 70), (92, 28, -10), (66, -12, -62), (22, -25, -78),
             (0, 8, -95)]
    crad = np.array([28, 24, 22, 22, 21, 21, 19, 17, 17, 15, 15, 17]) * rng.uniform(0.8, 1.15)
    _hollow(c, Tube(colon, crad, smooth=3), T.STOOL, "colon", rng, gas_bubbles=int(rng.integers(3, 12)),
            gas_level=rng.uniform(0.0, 0.35), **_IN)
    rsy = float(spine_y(-120))
    rectum = [(0, 8, -95), (0, rsy - 18, -112), (0, rsy - 14, -140), (0, rsy - 25, -165), (0, rsy - 30, -188)]
    _hollow(c, Tube(rectum, np.array([17, 22, 24, 15, 8]) * rng.uniform(0.8, 1.15), smooth=3), T.STOOL, "rectum",
            rng, gas_bubbles=int(rng.integers(0, 4)), only_tissue=(*ABD, T.FAT, T.MUSCLE))
    duo = [(-32, -40, d - 100), (-55, -22, zl1 + 5), (-56, -8, zl1 - 30), (-40, -12, zl1 - 60), (0, -16, zl1 - 58),
           (24, -24, zl1 - 35), (30, -32, zl1 - 15)]
    _hollow(c, Tube(duo, 12 * rng.uniform(0.8, 1.15), smooth=3), T.GI_FLUID, "duodenum", rng,
            gas_bubbles=int(rng.integers(0, 3)), **_IN)


def paint_small_bowel(c: Canvas, p: Patient, rng: np.random.Generator) -> None:
    """Loops packed into the visceral fat that is left after the organs (painted over fat only)."""
    n_loops = int(round(6 + 12 * (1.0 - p.visceral) * rng.uniform(0.7, 1.2)))
    lo = np.array([-80, -75, -85])
    hi = np.array([80, 15, 75])
    for _ in range(n_loops):
        pos = lo + (hi - lo) * rng.uniform(0, 1, 3)
        heading = rng.normal(size=3)
        pts = [pos.copy()]
        for _ in range(int(rng.integers(6, 12))):
            heading = heading / np.linalg.norm(heading) + rng.normal(0, 0.7, 3)
            pos = np.clip(pos + heading / np.linalg.norm(heading) * rng.uniform(22, 34), lo, hi)
            pts.append(pos.copy())
        _hollow(c, Tube(pts, rng.uniform(9, 14)), T.GI_FLUID, "small_bowel", rng, wall=2.0,
                gas_bubbles=int(rng.integers(0, 2)), only_tissue=(T.VFAT,))


def paint_abdominal_vessels(c: Canvas, p: Patient, aorta_pts: np.ndarray, aorta_r: np.ndarray,
                            rng: np.random.Generator) -> None:
    zl1 = level_mid("L1")
    bif = aorta_pts[-1]
    ivc = [(-20, 30, p.dome_r + 8), (-22, 32, p.dome_r - 40), (-24, float(spine_y(zl1)) - 18, zl1),
           (-22, float(spine_y(60)) - 22, 60), (-16, float(spine_y(0)) - 20, LEVELS["L5"][0])]
    ivc_r = 12 * rng.uniform(0.8, 1.2)
    for side, name in ((-1, "right"), (1, "left")):
        art = [bif, (side * 38, bif[1] + 5, -30), (side * 62, -12, -85), (side * 74, -45, -140),
               (side * 72, -40, -220)]
        c.paint(Tube(art, [8, 6.5, 6, 5.5, 5], smooth=3), T.ARTERY, f"iliac_artery_{name}")
        vein = [ivc[-1], (side * 36, bif[1] + 15, -35), (side * 62, -2, -90), (side * 82, -42, -140),
                (side * 80, -35, -220)]
        c.paint(Tube(vein, [ivc_r * 0.7, 8, 7, 6.5, 6], smooth=3), T.VEIN, f"iliac_vena_{name}")
        renal_z = zl1 - 8 - (14 if side < 0 else 0)
        c.paint(Tube([(side * 8, float(spine_y(renal_z)) - 20, renal_z + 6),
                      (side * 50, float(spine_y(renal_z)) + 10, renal_z)], 3.0), T.ARTERY, only_tissue=(T.VFAT,))
    c.paint(Tube([(48, float(spine_y(zl1)) + 4, zl1 - 8), (0, float(spine_y(zl1)) - 48, zl1 - 2), ivc[2]], 5.0,
                 smooth=3), T.VEIN, "renal_vein_left", only_tissue=(T.VFAT, T.SOFT, T.PANCREAS))
    c.paint(Tube(ivc, ivc_r, smooth=3), T.VEIN, "inferior_vena_cava")
    sma = [(6, float(spine_y(zl1)) - 40, zl1 + 5), (5, -38, zl1 - 30), (8, -48, 40), (12, -55, -10)]
    c.paint(Tube(sma, [4.5, 4, 3.5, 3], smooth=3), T.ARTERY, only_tissue=(T.VFAT, T.PANCREAS, T.SOFT))
    smv = [(-12, -14, zl1 - 6), (-10, -40, zl1 - 30), (-6, -52, 40), (-4, -60, -10)]
    c.paint(Tube(smv, [6, 5.5, 5, 4], smooth=3), T.PORTAL, only_tissue=(T.VFAT, T.SOFT))
    for _ in range(int(rng.integers(4, 10))):  # mesenteric and retroperitoneal lymph nodes
        ctr = np.array([rng.uniform(-60, 60), rng.uniform(-50, 40), rng.uniform(-60, 130)])
        c.paint(Ellipsoid(ctr, rng.uniform(3, 6, 3)), T.LYMPH, only_tissue=(T.VFAT,))


def paint_pelvic_organs(c: Canvas, p: Patient, rng: np.random.Generator) -> None:
    fill = rng.uniform(0.35, 1.25)
    radii = np.array([44, 36, 36]) * fill ** 0.6
    bladder = Ellipsoid((0, -50 + 8 * (1 - fill), -138 + radii[2] * 0.75), radii, taper=-0.2 * (1 - fill))
    c.paint(bladder, T.SOFT, "urinary_bladder", only_tissue=(*ABD, T.FAT, T.MUSCLE))
    c.paint(bladder, [(2.5, T.URINE)], keep_struct=True, only_struct=("urinary_bladder",))
    if p.female:
        ut = Ellipsoid((0, -12, -98), np.array([32, 22, 42]) * rng.uniform(0.7, 1.1), rot=rotation(rx=-0.7))
        c.paint(ut, T.SOFT, "uterus", only_tissue=ABD)
    else:
        c.paint(Ellipsoid((0, -28, -162), np.array([20, 16, 18]) * rng.uniform(0.85, 1.4)), T.SOFT, "prostate")
    for side in (-1, 1):  # obturator internus lining the lateral pelvic wall
        c.paint(Tube([(side * 62, -8, -110), (side * 58, 5, -160)], 11), T.MUSCLE, only_tissue=(T.VFAT,))
