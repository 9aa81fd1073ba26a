"""Legs below the hip and arms: long bones with cortex and marrow, muscle compartments with fat septa."""

from __future__ import annotations

import numpy as np

from lorkd_core.data.phantom_canvas import Canvas
from lorkd_core.data.phantom_patient import Patient, trunk_axes
from lorkd_core.data.phantom_shapes import Box, Capsule, Ellipsoid, F, Intersect, Lambda, Shape, Sphere, Tube
from lorkd_core.data.phantom_spine import _paint_bone
from lorkd_core.data.phantom_tissues import T


def sector(axis_a, axis_b, side: int, theta0: float, theta1: float, r_min: float = 0.0) -> Lambda:
    """Wedge around the line a-b (roughly along z): angle of (lateral, posterior) in [theta0, theta1]
    degrees, 0 = lateral, -90 = anterior; distances beyond the wedge edges in mm."""
    a, b = np.asarray(axis_a, float), np.asarray(axis_b, float)
    t0, t1 = np.radians(theta0), np.radians(theta1)

    def fn(x, y, z):
        t = np.clip((z - F(a[2])) / F(b[2] - a[2]), F(0), F(1))
        u = (x - (F(a[0]) + t * F(b[0] - a[0]))) * F(side)
        v = y - (F(a[1]) + t * F(b[1] - a[1]))
        r = np.sqrt(u * u + v * v)
        ang = np.arctan2(v, u)
        mid, half = F((t0 + t1) / 2), F((t1 - t0) / 2)
        dang = np.abs(np.mod(ang - mid + F(np.pi), F(2 * np.pi)) - F(np.pi)) - half
        d = r * np.sin(np.clip(dang, F(-1.5), F(1.5)))
        return np.maximum(d, F(r_min) - r)

    lo = np.minimum(a, b) - 150
    hi = np.maximum(a, b) + 150
    return Lambda(fn, lo, hi)


def _long_bone(c: Canvas, top, bottom, r_top: float, r_bottom: float, struct: str, ends: list[Shape],
               cortex: float) -> None:
    shaft = Capsule(top, bottom, r_top, r_bottom)
    for part in ends:
        c.paint(part, T.THIN, struct)
    c.paint(shaft, T.BONE, struct)
    for part in ends:
        c.paint(part, [(max(1.5, c.min_shell), T.SPONGY)], keep_struct=True, only_tissue=(T.THIN, T.BONE),
                only_struct=(struct,))
    c.paint(Capsule(top, bottom, r_top - cortex, r_bottom - cortex), T.MARROW, keep_struct=True,
            only_struct=(struct,))


def paint_legs(c: Canvas, p: Patient, rng: np.random.Generator) -> None:
    lo, hi = c.extent()
    if lo[2] > -150:
        return
    m = p.muscle
    from lorkd_core.data.phantom_patient import _legs  # the same outline the body used

    muscles = _legs(p, 0.0)
    for side, name, leg in ((-1, "right", muscles[0]), (1, "left", muscles[1])):
        top = np.array([side * 118 * m, 6, -165])
        knee = np.array([side * 66 * m, 14, -548])
        # Thigh compartments: fat septa between quadriceps, adductors and hamstrings.
        zone = Intersect(leg, Box((-400, -400, -520), (400, 400, -215)))
        c.paint(zone, T.FAT, only_tissue=(T.MUSCLE,))
        fat = {"only_tissue": (T.FAT,)}
        c.paint(Intersect(zone, sector(top, knee, side, -168, 12)), T.MUSCLE, f"quadriceps_femoris_{name}", **fat)
        c.paint(Intersect(zone, sector(top, knee, side, 38, 148)), T.MUSCLE, f"thigh_posterior_compartment_{name}",
                **fat)
        c.paint(Intersect(zone, sector(top, knee, side, 156, 188)), T.MUSCLE, f"thigh_medial_compartment_{name}",
                **fat)
        c.paint(Intersect(zone, sector(top, knee, side, 17, 33)), T.MUSCLE, f"thigh_posterior_compartment_{name}",
                **fat)
        # Popliteal fat and vessels behind the knee, femoral vessels in the adductor canal.
        c.paint(Ellipsoid(knee + (0, 36, -4), (22, 20, 45)), T.FAT, only_tissue=(T.MUSCLE,))
        art = [(side * 74, -40, -220), (side * 64 * m, -12, -400), (side * 62 * m, 38, -540), (side * 62 * m, 34, -660)]
        c.paint(Tube(art, 4.5, smooth=3), T.ARTERY, only_tissue=(T.MUSCLE, T.FAT))
        vein = [(p_[0] + side * -6, p_[1] + 6, p_[2]) for p_ in art]
        c.paint(Tube(vein, 5.5, smooth=3), T.VEIN, only_tissue=(T.MUSCLE, T.FAT))
        # Calf: fat septa between the anterior, lateral and posterior compartments.
        tib_top, ankle = knee + (0, 4, -52), knee + (side * -4, 8, -385)
        calf = Intersect(leg, Box((-400, -400, -900), (400, 400, -610)))
        c.paint(Intersect(calf, sector(tib_top, ankle, side, -80, -70)), T.FAT, only_tissue=(T.MUSCLE,))
        c.paint(Intersect(calf, sector(tib_top, ankle, side, 10, 20)), T.FAT, only_tissue=(T.MUSCLE,))
        # Bones: distal femur is painted with the hip; tibia, fibula, patella here.
        plateau = Ellipsoid(knee + (0, 4, -44), (36, 27, 16))
        tuberosity = Ellipsoid(knee + (0, -24, -62), (10, 8, 16))
        malleolus = Ellipsoid(ankle + (side * -4, 0, -10), (16, 18, 14))
        r_tib = 13.5 * rng.uniform(0.9, 1.1)
        _long_bone(c, tib_top, ankle, r_tib, r_tib - 2, f"tibia_{name}", [plateau, tuberosity, malleolus], 4.5)
        fib_top, fib_bot = knee + (side * 34, 20, -58), ankle + (side * 28, 20, -12)
        _long_bone(c, fib_top, fib_bot, 6.5, 6.0, f"fibula_{name}",
                   [Sphere(fib_top, 10), Ellipsoid(fib_bot, (8, 10, 16))], 2.5)
        patella = Ellipsoid(knee + (0, -34, 26), np.array([22, 10, 22]) * rng.uniform(0.9, 1.1))
        _paint_bone(c, [patella], f"patella_{name}", inset=1.5)
        c.paint(Capsule(knee + (0, -40, 0), knee + (0, -30, -58), 4.5), T.CARTILAGE, "patellar_tendon",
                only_tissue=(T.MUSCLE, T.FAT))


def arm_path(p: Patient, side: int) -> np.ndarray:
    """Shoulder joint, elbow and wrist of an arm hanging beside the trunk."""
    x = 150 * p.muscle + 0.9 * p.fat + 30
    if p.arm_gap is None:
        return np.array([[side * (x - 8), 14, 440], [side * (x + 4), 26, 150], [side * (x - 2), 0, -80]])
    # Elbow and wrist clear of the trunk by ``arm_gap``: trunk half-width + arm radius (+ union bulge).
    arm_fat = 0.35 * p.fat + 3
    elbow = trunk_axes(150)[0] * p.muscle + 0.9 * p.fat + 44 * p.muscle + arm_fat + 3 + p.arm_gap
    wrist = trunk_axes(-80)[0] * p.muscle + 0.9 * p.fat + 40 * p.muscle + arm_fat + 3 + p.arm_gap
    return np.array([[side * (x - 8), 14, 440], [side * elbow, 26, 150], [side * wrist, 0, -80]])


def paint_arm(c: Canvas, p: Patient, side: int, path: np.ndarray, rng: np.random.Generator) -> None:
    """One arm along shoulder -> elbow -> wrist (roughly along z), with its own skin and fat."""
    name = "left" if side > 0 else "right"
    sh, el, wr = (np.asarray(q, float) for q in path)
    s = rng.uniform(0.9, 1.1) * p.muscle
    fat = 0.35 * p.fat + 3
    rads = np.array([44, 40, 36, 30]) * s
    hand = wr + (wr - el) * 0.3
    axis_pts = [sh + (0, 0, 30), sh, el, wr, hand]
    outline_r = np.concatenate([[rads[0] * 0.8], rads])
    c.paint(Tube(axis_pts, outline_r + fat), [(0.0, T.SKIN), (2.0, T.FAT)], "arm_soft",
            only_tissue=(T.AIR,))
    inside = {"only_struct": ("arm_soft",)}
    arm = Tube(axis_pts, outline_r)
    c.paint(arm, T.MUSCLE, "arm_soft", **inside)
    # Upper arm compartments separated by fat septa.
    upper = Intersect(arm, Box(np.minimum(sh, el) - (200, 200, -20), np.maximum(sh, el) + (200, 200, -25)))
    c.paint(upper, T.FAT, keep_struct=True, **inside)
    c.paint(Intersect(upper, sector(sh, el, side, -160, -20)), T.MUSCLE, keep_struct=True, **inside)
    c.paint(Intersect(upper, sector(sh, el, side, -160, -20, r_min=13 * s + 9)), T.MUSCLE, f"biceps_brachii_{name}",
            **inside)
    c.paint(Intersect(upper, sector(sh, el, side, 8, 172)), T.MUSCLE, f"triceps_brachii_{name}", **inside)
    c.paint(Intersect(upper, sector(sh, el, side, -14, 2)), T.MUSCLE, keep_struct=True, **inside)
    c.paint(Intersect(upper, sector(sh, el, side, 176, 196)), T.MUSCLE, keep_struct=True, **inside)
    # Forearm: a fat septum between flexors and extensors.
    fore = Intersect(arm, Box(np.minimum(el, wr) - (200, 200, -35), np.maximum(el, wr) + (200, 200, -30)))
    c.paint(Intersect(fore, sector(el, wr, side, -10, -2)), T.FAT, keep_struct=True, **inside)
    # Bones.
    r_h = 11.0 * s
    head = Sphere(sh, 22 * s)
    epic = Ellipsoid(el + (0, 4, 10), np.array([30, 11, 12]) * s)
    _long_bone(c, sh + (0, 0, -20), el + (0, 2, 28), r_h, r_h * 0.9, f"humerus_{name}", [head, epic], 4.0)
    lat = np.array([side * 13.0 * s, -2, 0])
    rad_top, rad_bot = el + lat + (0, 0, -16), wr + lat * 1.3 + (0, 0, 8)
    _long_bone(c, rad_top, rad_bot, 7.0 * s, 8.5 * s, f"radius_{name}",
               [Ellipsoid(rad_top, np.array([10, 10, 6]) * s), Ellipsoid(rad_bot, np.array([14, 10, 10]) * s)], 2.5)
    med = np.array([-side * 9.0 * s, 6, 0])
    uln_top, uln_bot = el + med + (0, 4, -10), wr + med * 1.2 + (0, 0, 8)
    olecranon = Ellipsoid(el + med + (0, 14, 0), np.array([11, 11, 16]) * s)
    _long_bone(c, uln_top, uln_bot, 8.0 * s, 5.5 * s, f"ulna_{name}", [olecranon, Sphere(uln_bot, 7 * s)], 2.5)
