"""Body wall: skin, subcutaneous fat, muscle, the trunk cavity split by the diaphragm, trunk muscles
with their fat planes, and the scanner table."""

from __future__ import annotations

import numpy as np

from lorkd_core.data.phantom_canvas import Canvas
from lorkd_core.data.phantom_patient import Patient, body_outline, spine_y, trunk_axes
from lorkd_core.data.phantom_shapes import (
    Ellipsoid,
    F,
    Intersect,
    Lambda,
    Offset,
    Shape,
    Tube,
    ZColumn,
    rotation,
)
from lorkd_core.data.phantom_tissues import T

_CAV_Z = np.array([-178, -120, -60, 0, 60, 150, 230, 320, 400, 440, 462, 478])
_CAV_A = np.array([70, 100, 128, 130, 128, 132, 136, 136, 122, 96, 62, 22])
_CAV_B = np.array([58, 72, 82, 86, 86, 90, 93, 88, 78, 62, 46, 22])
_CAV_P = np.array([30, 32, 42, 58, 64, 70, 72, 73, 70, 64, 52, 22])


def cavity(p: Patient) -> ZColumn:
    """The trunk cavity inside the body wall (thorax above the diaphragm, abdomen and pelvis below)."""
    return ZColumn(_CAV_Z, 0.0, 0.0, _CAV_A * p.muscle, _CAV_B * p.muscle, _CAV_P * p.muscle, n=2.0)


def cavity_axes(p: Patient, z: float) -> tuple[float, float, float]:
    """(half-width, anterior half-depth, posterior half-depth) of the trunk cavity at height z."""
    return (float(np.interp(z, _CAV_Z, _CAV_A)) * p.muscle, float(np.interp(z, _CAV_Z, _CAV_B)) * p.muscle,
            float(np.interp(z, _CAV_Z, _CAV_P)) * p.muscle)


def dome(p: Patient):
    """z of the diaphragm surface as a function of (x, y): two domes, lower at the back and sides."""
    def fn(x, y):
        yy = np.maximum(y + F(10), F(0)) * F(1.0) + np.minimum(y + F(10), F(0)) * F(0.8)
        right = F(p.dome_r) - F(0.0065) * (x + F(62)) ** 2 - F(0.0055) * yy * yy
        left = F(p.dome_l) - F(0.0065) * (x - F(62)) ** 2 - F(0.0055) * yy * yy
        return np.maximum(right, left)
    return fn


def above_dome(p: Patient, offset: float = 0.0) -> Lambda:
    fn = dome(p)
    return Lambda(lambda x, y, z: (fn(x, y) + F(offset)) - z, (-300, -300, p.dome_r - 160), (300, 300, 1e3))


def paint_wall(c: Canvas, p: Patient) -> None:
    """Skin, subcutaneous fat and muscle; inside the trunk cavity the lungs above the diaphragm and
    visceral fat (T.VFAT, the free space organs are painted into) below it."""
    # A supine patient's back and buttocks flatten against the table.
    y_cut = float(trunk_axes(150.0)[1]) * p.muscle + 0.55 * p.fat - p.back_flattening
    table = Lambda(lambda x, y, z: np.where((z > F(-260)) & (z < F(470)), y - F(y_cut), F(-1e3)),
                   (-1e3, -1e3, -1e3), (1e3, 1e3, 1e3))
    c.paint(Intersect(body_outline(p, True), table), [(0.0, T.SKIN), (2.0, T.FAT)])
    c.paint(Intersect(body_outline(p, False), table), T.MUSCLE)
    hit = c.evaluate(cavity(p))
    if hit is None:
        return
    box, d = hit
    inside = d <= 0
    if not inside.any():
        return
    x, y, z = c.X[box], c.Y[box], c.Z[box]
    dz = z - dome(p)(x, y)
    c.fill(box, inside & (dz < 0), T.VFAT)
    lung = inside & (dz > 4.0)
    # Above the first rib the apices sit behind and beside the trachea, not in front of it.
    apex = (z > F(400)) & ((np.abs(x) < F(20)) | (y < np.interp(z, [400, 440, 480], [-200, -40, 0]).astype(F)))
    lung &= ~apex
    c.fill(box, lung & (x < F(8.0)), T.LUNG, "lung_right")
    c.fill(box, lung & (x >= F(8.0)), T.LUNG, "lung_left")
    c.fill(box, inside & (np.abs(dz - F(2.0)) <= F(3.5)), T.MUSCLE)


def _with_fat_plane(c: Canvas, shape: Shape, struct: str | None, plane: float = 1.3, tissue: int = T.MUSCLE) -> None:
    """A muscle with the thin fat plane that separates it from its neighbours on CT."""
    c.paint(Offset(shape, plane), [(0.0, T.FAT), (plane, tissue)], struct,
            only_tissue=(T.MUSCLE, T.VFAT, T.FAT, T.BACK_MUSCLE))


def paint_trunk_muscles(c: Canvas, p: Patient, rng: np.random.Generator) -> None:
    m = p.muscle
    for side, name in ((-1, "right"), (1, "left")):
        # Erector spinae (TotalSegmentator "autochthon"), from the sacrum to the upper neck.
        zs = np.array([-120, -60, 0, 80, 160, 260, 360, 440, 500, 560])
        sy = spine_y(zs)
        cx = side * np.array([22, 30, 32, 32, 30, 27, 26, 24, 20, 18]) * m
        cy = sy + np.array([42, 46, 50, 50, 48, 46, 46, 42, 36, 32])
        ax = np.array([16, 24, 28, 29, 26, 21, 19, 17, 15, 13]) * m * rng.uniform(0.9, 1.1)
        ay = np.array([15, 20, 23, 24, 22, 18, 16, 16, 15, 13]) * rng.uniform(0.9, 1.1)
        _with_fat_plane(c, ZColumn(zs, cx, cy, ax, ay, ay, n=2.0), f"autochthon_{name}", tissue=T.BACK_MUSCLE)
        # Psoas into iliacus: along the lumbar spine, over the pelvic brim to the lesser trochanter.
        pts = [(side * 20, spine_y(165) - 5, 165), (side * 30, spine_y(100), 100), (side * 42, 15, 30),
               (side * 55, 8, -20), (side * 72, -20, -70), (side * 82, -50, -115), (side * 92, -30, -165)]
        rad = np.array([5, 11, 18, 21, 22, 17, 11]) * m * rng.uniform(0.85, 1.15)
        _with_fat_plane(c, Tube(pts, rad, smooth=3), f"iliopsoas_{name}")
        # Quadratus lumborum, between the twelfth rib and the iliac crest.
        ql = Tube([(side * 40, spine_y(150) + 30, 150), (side * 58, 58, 70), (side * 70, 62, 10)],
                  np.array([6, 13, 9]) * m, smooth=3)
        c.paint(ql, T.MUSCLE, only_tissue=(T.VFAT, T.MUSCLE))
        # Gluteus maximus under the buttock fat, from the sacrum to below the trochanter.
        gm = Intersect(body_outline(p, False),
                       Ellipsoid((side * 95 * m, 100, -125), (72 * m, 30, 80), rot=rotation(rz=side * 0.45),
                                 taper=-0.15))
        _with_fat_plane(c, gm, f"gluteus_maximus_{name}", plane=2.0, tissue=T.BACK_MUSCLE)
        # Gluteus medius on the outer face of the iliac wing (unlabelled, fat plane to maximus).
        gmed = Ellipsoid((side * 122 * m, 22, -45), (30 * m, 42, 55), taper=0.2)
        c.paint(Offset(gmed, 1.5), T.FAT, only_tissue=(T.MUSCLE,), keep_struct=True)
        c.paint(gmed, T.MUSCLE, only_tissue=(T.FAT,))


def paint_table(c: Canvas, rng: np.random.Generator, width: float = 230.0) -> None:
    """Carbon-fibre table under the patient: two dense shells with foam between, slightly curved.
    It is fixed to the scanner, so it stays level when the patient lies rotated."""
    body = c.tissue != T.AIR
    if not body.any():
        return
    sx, sy, _ = c.scanner_axes()
    rows = np.nonzero(body.any(axis=(0, 2)))[0]
    cols = np.nonzero(body.any(axis=(0, 1)))[0]
    y_top = float(sy[rows.max()]) + c.spacing[1] / 2 + rng.uniform(0, 8)
    x_mid = float(sx[cols].mean())
    curve = 1.0 / (2 * rng.uniform(600, 1400))
    thick = rng.uniform(30, 55)
    shell = max(rng.uniform(1.5, 3.5), 0.6 * c.spacing[1])
    surf = y_top - curve * (sx - x_mid) ** 2  # per column
    depth = sy[:, None] - surf[None, :]  # (y, x)
    inside_x = np.abs(sx - x_mid)[None, :] <= width
    slab = (depth >= 0) & (depth <= thick) & inside_x
    foam = (depth >= shell) & (depth <= thick - shell) & inside_x
    free = c.tissue == T.AIR
    c.tissue[free & slab[None]] = T.TABLE
    c.tissue[free & foam[None]] = T.FOAM
