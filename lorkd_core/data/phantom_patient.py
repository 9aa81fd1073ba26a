"""The patient: body habitus, vertebral levels and the body outline, in reference-adult millimetres.

Anatomy coordinates are LPS (+x patient left, +y posterior, +z superior) with z = 0 near the L4/L5
disc and x = y = 0 on the trunk axis. Patient size enters through the canvas scaling, so all
anatomy below is written once for a reference adult and placed relative to these landmarks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lorkd_core.data.phantom_shapes import Ellipsoid, Shape, Union, ZColumn
from lorkd_core.data.phantom_tissues import Contrast, sample_contrast

# (name, body height, disc below) from C2 down to L5; C1 is a ring around the dens of C2.
_SEGMENTS = (
    [("C2", 20, 5)] + [(f"C{i}", 14, 5) for i in range(3, 8)]
    + [(f"T{i}", h, d) for i, h, d in zip(range(1, 13), (17, 17, 17, 18, 18, 19, 20, 20, 21, 22, 23, 24),
                                          (4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 7, 7))]
    + [(f"L{i}", h, d) for i, h, d in zip(range(1, 6), (26, 27, 27, 27, 27), (9, 10, 10, 11, 11))]
)
S1_TOP = -40.0


def vertebral_levels() -> dict[str, tuple[float, float]]:
    """Level -> (z bottom, z top) of the vertebral body, reference adult."""
    levels: dict[str, tuple[float, float]] = {}
    top = S1_TOP
    for name, height, disc in reversed(_SEGMENTS):
        bottom = top + disc
        top = bottom + height
        levels[name] = (bottom, top)
    c2b, c2t = levels["C2"]
    levels["C1"] = (c2t + 2, c2t + 14)
    return dict(sorted(levels.items(), key=lambda kv: -kv[1][0]))


LEVELS = vertebral_levels()

# Muscle outline of the trunk (half-width a, half-depth b) along z, reference adult.
_TRUNK_Z = np.array([-205, -150, -100, -40, 20, 80, 150, 230, 320, 400, 440, 462, 478])
_TRUNK_A = np.array([150, 165, 168, 160, 152, 148, 152, 156, 158, 156, 152, 142, 95])
_TRUNK_B = np.array([95, 100, 102, 103, 102, 102, 108, 110, 107, 100, 91, 80, 62])
# Centre of the vertebral bodies in y (kyphosis and lordosis).
_SPINE_Z = np.array([-170, -40, 0, 70, 150, 250, 330, 420, 470, 530, 600])
_SPINE_Y = np.array([50, 45, 30, 20, 30, 38, 42, 36, 25, 16, 14])
# Subcutaneous fat relative to the abdomen.
_FAT_Z = np.array([-205, -100, 60, 200, 350, 440, 480])
_FAT_F = np.array([1.0, 1.0, 1.0, 0.8, 0.55, 0.45, 0.3])


def trunk_axes(z) -> tuple[np.ndarray, np.ndarray]:
    return np.interp(z, _TRUNK_Z, _TRUNK_A), np.interp(z, _TRUNK_Z, _TRUNK_B)


def spine_y(z) -> np.ndarray:
    return np.interp(z, _SPINE_Z, _SPINE_Y)


def level_mid(name: str) -> float:
    b, t = LEVELS[name]
    return (b + t) / 2


@dataclass
class Patient:
    scale: tuple[float, float, float]  # reference -> patient (x, y, z)
    muscle: float  # muscle outline factor
    fat: float  # abdominal subcutaneous fat, mm
    visceral: float  # 0 lean .. 1 much visceral fat
    female: bool
    age: float
    arms: str  # "down" (beside the trunk) or "up" (out of the trunk's field of view)
    dome_r: float  # right diaphragm dome, z
    dome_l: float
    contrast: Contrast
    head_scale: float
    back_flattening: float  # mm of back and buttocks pressed flat by the table
    realism: int = 1  # generator realism level (see phantoms.generate_case)
    arm_gap: float | None = None  # realism >= 2: mm of air between arms hanging down and the trunk

    @property
    def width(self) -> float:
        """Half-width of the abdomen in mm (drives noise)."""
        return float(140 * self.muscle * self.scale[0] + self.fat)


def sample_patient(rng: np.random.Generator) -> Patient:
    sz = float(np.clip(rng.normal(1.0, 0.05), 0.88, 1.12))
    sxy = float(np.clip(rng.normal(1.02, 0.06), 0.9, 1.16))
    dome = float(LEVELS["T10"][1] + rng.uniform(-25, 20))
    return Patient(
        scale=(sxy * float(rng.uniform(0.96, 1.04)), sxy * float(rng.uniform(0.94, 1.06)), sz),
        muscle=float(rng.uniform(0.94, 1.08)),
        fat=float(rng.gamma(3.0, 6.0) + 4),
        visceral=float(rng.beta(2.0, 2.5)),
        female=bool(rng.uniform() < 0.5),
        age=float(rng.uniform(25, 85)),
        arms="down" if rng.uniform() < 0.4 else "up",
        dome_r=dome,
        dome_l=dome - float(rng.uniform(5, 25)),
        contrast=sample_contrast(rng),
        head_scale=float(rng.uniform(0.93, 1.06)),
        back_flattening=float(rng.uniform(3, 14)),
    )


HEAD_Z = LEVELS["C1"][1] + 80.0  # centre of the cranium


def _trunk(p: Patient, grow: float) -> ZColumn:
    a, b = trunk_axes(_TRUNK_Z)
    f = np.interp(_TRUNK_Z, _FAT_Z, _FAT_F) * p.fat * grow
    m = p.muscle
    return ZColumn(_TRUNK_Z, 0.0, 0.0, a * m + 0.9 * f, b * m + f, b * m + 0.55 * f, n=2.4)


def _neck(p: Patient, grow: float) -> ZColumn:
    zs = np.array([440, 500, 560, 600])
    f = 0.25 * p.fat * grow
    return ZColumn(zs, 0.0, 12.0, np.array([62, 57, 58, 62]) * p.muscle + f,
                   np.array([55, 52, 52, 55]) + f, np.array([58, 56, 58, 62]) + f, n=2.0)


def _head(p: Patient, grow: float) -> Shape:
    s = p.head_scale
    g = 0.15 * p.fat * grow
    skin = 6.0 * grow
    cranium = Ellipsoid((0, 0, HEAD_Z), (np.array([72, 92, 74]) * s + skin + g))
    face = Ellipsoid((0, -55 * s, HEAD_Z - 58 * s), np.array([56, 46, 58]) * s + skin + g)
    return Union(cranium, face, k=25)


def _legs(p: Patient, grow: float) -> list[ZColumn]:
    zs = np.array([-120, -200, -300, -440, -530, -580, -690, -850, -960])
    cx = np.array([80, 88, 86, 74, 66, 64, 63, 60, 58])
    cy = np.array([5, 8, 6, 6, 10, 12, 16, 14, 10])
    r = np.array([80, 80, 72, 60, 50, 47, 50, 38, 26]) * p.muscle
    f = np.array([0.8, 0.7, 0.6, 0.5, 0.35, 0.3, 0.3, 0.2, 0.15]) * p.fat * grow
    return [ZColumn(zs, side * cx, cy, r + f, r * 0.95 + f, r * 0.95 + 0.6 * f) for side in (-1, 1)]


def _shoulders(p: Patient, grow: float) -> list[Shape]:
    f = 0.4 * p.fat * grow
    return [Ellipsoid((side * 160 * p.muscle, 5, 448), (48 + f, 55 + f, 42 + f)) for side in (-1, 1)]


def body_outline(p: Patient, with_fat: bool = True) -> Shape:
    """Skin surface (``with_fat``) or the muscle/bone surface under the subcutaneous fat."""
    g = 1.0 if with_fat else 0.0
    parts: list[Shape] = [_trunk(p, g), _neck(p, g), _head(p, g), *_legs(p, g), *_shoulders(p, g)]
    return Union(*parts, k=30)
