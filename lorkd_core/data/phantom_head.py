"""Head and neck: skull with diploe and skull base, brain with cortex, sulci and ventricles, orbits,
sinuses, jaws, larynx, thyroid, carotids and jugular veins."""

from __future__ import annotations

import numpy as np

from lorkd_core.data.phantom_canvas import Canvas
from lorkd_core.data.phantom_patient import HEAD_Z, Patient, spine_y
from lorkd_core.data.phantom_shapes import (
    Arc,
    Capsule,
    Ellipsoid,
    F,
    Intersect,
    Lambda,
    Offset,
    Sphere,
    Tube,
    rotation,
)
from lorkd_core.data.phantom_spine import _paint_bone
from lorkd_core.data.phantom_tissues import T

_SOFT_NECK = (T.MUSCLE, T.FAT, T.SOFT)


def _base_fn(s: float):
    """z of the cranial floor as a function of y: anterior fossa high, posterior fossa low."""
    ys = np.array([-110, -55, -20, 15, 50, 110]) * s
    zs = HEAD_Z + np.array([-14, -20, -44, -52, -62, -50]) * s

    def fn(x, y, z):
        return F(0) + np.interp(y, ys, zs).astype(F) - z
    return fn


def paint_head(c: Canvas, p: Patient, rng: np.random.Generator) -> None:
    lo, hi = c.extent()
    if hi[2] < HEAD_Z - 170:
        return
    s = p.head_scale
    ctr = np.array([0.0, 0.0, HEAD_Z])
    outer = np.array([72, 92, 74]) * s
    thick = rng.uniform(5.5, 8.0)
    base = Lambda(_base_fn(s), ctr - outer, ctr + outer)
    cranium = Intersect(Ellipsoid(ctr, outer), base)
    shell = max(1.7, c.min_shell)
    c.paint(cranium, [(0.0, T.THIN), (shell, T.SPONGY), (max(thick - shell, shell), T.THIN), (thick, T.CSF)], "skull")
    for side in (-1, 1):  # petrous bones and mastoids
        c.paint(Ellipsoid((side * 38 * s, 18 * s, HEAD_Z - 46 * s), (26, 9, 9), rot=rotation(rz=side * 0.6)),
                T.BONE, "skull")  # petrous bone is dense throughout
        c.paint(Sphere((side * 55 * s, 30 * s, HEAD_Z - 55 * s), 11), [(0.0, T.THIN), (max(1.5, c.min_shell), T.GAS)],
                "skull")
    _paint_brain(c, p, ctr, outer, thick, rng)
    # The CSF between brain and inner table was painted as part of the skull's layers.
    c.struct[(c.tissue == T.CSF) & (c.struct == c.sid("skull"))] = 0
    _paint_face(c, p, rng)


def _paint_brain(c: Canvas, p: Patient, ctr: np.ndarray, outer: np.ndarray, thick: float,
                 rng: np.random.Generator) -> None:
    s = p.head_scale
    atrophy = float(np.clip((p.age - 40) / 45, 0, 1)) * rng.uniform(0.5, 1.0)
    csf = 1.5 + 3.0 * atrophy
    inner = Offset(Intersect(Ellipsoid(ctr, outer), Lambda(_base_fn(s), ctr - outer, ctr + outer)), -(thick + csf))
    c.paint(inner, [(0.0, T.GRAY), (rng.uniform(3.0, 4.5), T.WHITE)], "brain", only_tissue=(T.CSF, T.GRAY))
    cereb = Ellipsoid((0, 48 * s, HEAD_Z - 38 * s), np.array([50, 30, 22]) * s)
    c.paint(Intersect(cereb, inner), [(0.0, T.GRAY), (8.0, T.WHITE)], "brain", only_tissue=(T.GRAY, T.WHITE, T.CSF))
    c.paint(Tube([(0, 14 * s, HEAD_Z - 8), (0, 18 * s, HEAD_Z - 40 * s), (0, 24 * s, HEAD_Z - 68 * s)], [11, 10, 7]),
            T.WHITE, "brain", only_tissue=(T.GRAY, T.WHITE, T.CSF, T.BONE, T.THIN, T.SPONGY))
    for side in (-1, 1):
        c.paint(Ellipsoid((side * 22 * s, -4 * s, HEAD_Z - 4), (9, 17, 11)), T.GRAY, keep_struct=True,
                only_struct=("brain",))
        c.paint(Ellipsoid((side * 10 * s, 14 * s, HEAD_Z - 2), (9, 13, 10)), T.GRAY, keep_struct=True,
                only_struct=("brain",))
    # Sulci: a band-limited pattern thresholded to thin CSF lines in the cortex.
    k = rng.uniform(0.07, 0.11, 3)
    ph = rng.uniform(0, 2 * np.pi, 4)
    width = F(0.16 + 0.12 * atrophy)

    def sulci(x, y, z):
        v = np.sin(F(k[0]) * x + F(ph[0])) * np.sin(F(k[1]) * y + F(ph[1])) + np.sin(
            F(k[2]) * z + F(0.6 * k[0]) * y + F(ph[2]))
        return (np.abs(v) - width) * F(6.0)

    c.paint(Lambda(sulci, ctr - outer, ctr + outer), T.CSF, keep_struct=True, only_tissue=(T.GRAY,),
            only_struct=("brain",))
    falx = Lambda(lambda x, y, z: np.abs(x) - F(1.0 + atrophy), ctr - outer, ctr + outer)
    c.paint(Intersect(falx, Lambda(lambda x, y, z: F(HEAD_Z - 5) - z, ctr - outer, ctr + outer)), T.CSF,
            keep_struct=True, only_struct=("brain",))
    # Ventricles grow with age.
    vr = (1.0 + 1.2 * atrophy) * rng.uniform(0.8, 1.2)
    for side in (-1, 1):
        pts = [(side * 10, -32 * s, HEAD_Z + 6), (side * 13, -5 * s, HEAD_Z + 16), (side * 20, 22 * s, HEAD_Z + 10),
               (side * 22, 45 * s, HEAD_Z + 2)]
        c.paint(Tube(pts, np.array([5.5, 5.0, 6.5, 3.5]) * vr, smooth=3), T.CSF, "ventricles",
                only_struct=("brain",))
        temporal = [(side * 22, 22 * s, HEAD_Z + 8), (side * 30, 8 * s, HEAD_Z - 14), (side * 30, -12 * s, HEAD_Z - 26)]
        c.paint(Tube(temporal, np.array([3.5, 2.5, 2.0]) * vr, smooth=3), T.CSF, "ventricles", only_struct=("brain",))
    c.paint(Ellipsoid((0, 4 * s, HEAD_Z - 8), (2.0 * vr, 14, 9)), T.CSF, "ventricles", only_struct=("brain",))
    c.paint(Ellipsoid((0, 32 * s, HEAD_Z - 40 * s), (6 * vr, 4, 7)), T.CSF, "ventricles", only_struct=("brain",))


def _paint_face(c: Canvas, p: Patient, rng: np.random.Generator) -> None:
    s = p.head_scale
    z_eye = HEAD_Z - 36 * s
    # Maxilla and zygomas as one bony block, carved by the sinuses and the nasal cavity.
    c.paint(Ellipsoid((0, -58 * s, HEAD_Z - 68 * s), np.array([46, 26, 20]) * s), [(0.0, T.THIN), (c.min_shell + 1.5, T.SOFT)],
            "maxilla", only_tissue=_SOFT_NECK)
    for side, name in ((-1, "right"), (1, "left")):
        eye_c = np.array([side * 32 * s, -68 * s, z_eye])
        orbit = Ellipsoid(eye_c + (0, 14, 0), np.array([19, 30, 16]) * s)
        c.paint(Offset(orbit, max(2.5, c.min_shell)), T.THIN, "skull", only_tissue=(*_SOFT_NECK, T.SPONGY))
        c.paint(orbit, T.FAT)
        c.paint(Sphere(eye_c, 12 * s * rng.uniform(0.95, 1.05)), [(0.0, T.SOFT), (1.2, T.VITREOUS)], f"eye_{name}")
        c.paint(Ellipsoid(eye_c + (0, -8 * s, 0), (4.5, 2.0, 4.5)), T.LENS, keep_struct=True,
                only_struct=(f"eye_{name}",))
        c.paint(Tube([eye_c + (0, 11 * s, 0), (side * 14 * s, -22 * s, z_eye + 6)], 2.5), T.WHITE,
                f"optic_nerve_{name}", only_tissue=(T.FAT,))
        sinus = Ellipsoid((side * 31 * s, -52 * s, HEAD_Z - 64 * s), np.array([15, 19, 17]) * s)
        c.paint(sinus, [(0.0, T.THIN), (max(1.5, c.min_shell), T.GAS)], "sinus_maxillary")
        if rng.uniform() < 0.25:
            c.paint(sinus, [(1.5, T.SOFT)], keep_struct=True, only_tissue=(T.GAS,))
            c.paint(sinus, [(1.5 + rng.uniform(2, 6), T.GAS)], keep_struct=True, only_tissue=(T.SOFT,))
    nasal = Ellipsoid((0, -62 * s, HEAD_Z - 56 * s), np.array([13, 30, 30]) * s)
    c.paint(nasal, T.GAS, "nasal_cavity")
    septum = F(max(1.2, c.min_shell))
    c.paint(Intersect(nasal, Lambda(lambda x, y, z: np.abs(x) - septum, (-5, -120, 0), (5, 0, 1e3))), T.THIN,
            keep_struct=True)
    pharynx = [(0, -28 * s, HEAD_Z - 58 * s), (0, -12, HEAD_Z - 95 * s), (0, -10, 545), (0, -16, 528)]
    c.paint(Tube(pharynx, [10, 8, 7, 7], smooth=3), T.GAS, "pharynx", only_tissue=_SOFT_NECK)
    # Teeth on both arches and the mandible with its rami.
    flip = rotation(rz=np.pi)
    z_teeth = HEAD_Z - 92 * s
    for dz in (4.0, -6.0):
        c.paint(Arc((0, -28 * s, z_teeth + dz), 25 * s, 34 * s, -1.35, 1.35, 4.0, 4.5, rot=flip), T.TEETH, "teeth")
    z_m = HEAD_Z - 108 * s
    mand = [Arc((0, -22 * s, z_m), 44 * s, 58 * s, -1.65, 1.65, 4.5, 11.0, rot=flip)]
    for side in (-1, 1):
        mand.append(Capsule((side * 46 * s, 16 * s, z_m + 2), (side * 50 * s, 14 * s, HEAD_Z - 52 * s), 5.0, 4.0))
    _paint_bone(c, mand, "mandible", inset=1.6)


def paint_neck(c: Canvas, p: Patient, trachea_y, rng: np.random.Generator) -> None:
    lo, hi = c.extent()
    if hi[2] < 400 or lo[2] > HEAD_Z:
        return
    # Larynx: thyroid cartilage shield, hyoid.
    flip = rotation(rz=np.pi)
    ty = trachea_y(505)
    c.paint(Ellipsoid((0, ty - 4, 508), (9, 9, 20)), T.GAS, "larynx_air", only_tissue=_SOFT_NECK)
    c.paint(Arc((0, ty + 4, 510), 19, 24, -1.25, 1.25, 1.6, 13.0, rot=flip), T.CARTILAGE, "thyroid_cartilage")
    c.paint(Arc((0, ty + 8, 538), 18, 26, -1.3, 1.3, 2.5, 3.5, rot=flip), T.THIN, "hyoid")
    # Thyroid lobes either side of the trachea with the isthmus in front.
    g = rng.uniform(0.8, 1.35)
    zt = 468 + rng.uniform(-6, 6)
    for side in (-1, 1):
        ty = trachea_y(zt)
        lobe = Ellipsoid((side * 19, ty + 3, zt), np.array([9, 10, 22]) * g, rot=rotation(rz=side * 0.3))
        c.paint(lobe, T.THYROID, "thyroid_gland", only_tissue=_SOFT_NECK)
    c.paint(Capsule((-12, trachea_y(zt) - 10, zt - 10), (12, trachea_y(zt) - 10, zt - 10), 4.5 * g), T.THYROID,
            "thyroid_gland", only_tissue=_SOFT_NECK)
    # Carotid sheaths: common carotid (labelled), internal carotid, jugular vein.
    for side, name in ((-1, "right"), (1, "left")):
        pts = [(side * 14, trachea_y(430) + 5, 430), (side * 26, trachea_y(470) + 10, 470),
               (side * 30, trachea_y(520) + 14, 520), (side * 30, trachea_y(540) + 18, 540)]
        c.paint(Tube(pts, 3.8 * rng.uniform(0.85, 1.15), smooth=3), T.ARTERY, f"common_carotid_artery_{name}")
        ica = [(side * 30, trachea_y(540) + 18, 540), (side * 34, 20, 570), (side * 28, 18, HEAD_Z - 45)]
        c.paint(Tube(ica, 2.8, smooth=3), T.ARTERY, f"internal_carotid_artery_{name}", only_tissue=_SOFT_NECK)
        jug = [(side * 34, trachea_y(440) + 10, 440), (side * 40, trachea_y(500) + 18, 500),
               (side * 40, 24, 570), (side * 38, 28, HEAD_Z - 48)]
        c.paint(Tube(jug, [8, 7, 6, 5], smooth=3), T.VEIN, f"internal_jugular_vein_{name}", only_tissue=_SOFT_NECK)
        scm = Tube([(side * 52, 32, HEAD_Z - 55), (side * 46, 10, 520), (side * 24, -35, 430)], [9, 10, 8], smooth=3)
        c.paint(Offset(scm, 2.5), T.FAT, only_tissue=(T.MUSCLE,))
        c.paint(scm, T.MUSCLE, f"sternocleidomastoid_{name}", only_tissue=(T.MUSCLE, T.FAT))
        c.paint(Ellipsoid((side * 44, 30, 495), (12, 14, 40)), T.FAT, only_tissue=(T.MUSCLE,))
        c.paint(Ellipsoid((side * 36, -12, 548), (12, 10, 10)), T.SOFT, f"submandibular_gland_{name}",
                only_tissue=(T.MUSCLE, T.FAT))
    # Prevertebral fat stripe in front of the cervical spine.
    c.paint(Tube([(0, float(spine_y(450)) - 24, 450), (0, float(spine_y(560)) - 20, 560)], 3.0), T.FAT,
            only_tissue=(T.MUSCLE,))
