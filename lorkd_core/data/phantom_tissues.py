"""Tissue classes and their CT numbers per contrast phase.

Ranges are the mean HU of the tissue before blur and noise, calibrated on published values and on the
real portal-venous abdomen series in tests/data (liver 89, spleen 80, aorta 164, IVC 98, portal vein
140, vertebral spongiosa 160-190, subcutaneous fat -80, muscle 25-57). One per-case enhancement
level drives all enhancing tissues together, as a real bolus does.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

PHASES = ("native", "arterial", "venous")
PHASE_WEIGHTS = (0.25, 0.25, 0.5)


class T(IntEnum):
    AIR = 0
    GAS = 1
    LUNG = 2
    FAT = 3
    MARROW = 4
    SKIN = 5
    MUSCLE = 6
    LIVER = 7
    SPLEEN = 8
    CORTEX = 9
    MEDULLA = 10
    URINE = 11
    BILE = 12
    PANCREAS = 13
    GI_WALL = 14
    GI_FLUID = 15
    STOOL = 16
    ORAL = 17
    ARTERY = 18
    VEIN = 19
    PORTAL = 20
    MYOCARDIUM = 21
    BONE = 22
    SPONGY = 23
    CARTILAGE = 24
    DISC = 25
    CSF = 26
    GRAY = 27
    WHITE = 28
    VITREOUS = 29
    LENS = 30
    THYROID = 31
    TEETH = 32
    TABLE = 33
    FOAM = 34
    PLAQUE = 35
    SOFT = 36
    STOMACH_FLUID = 37
    LYMPH = 38
    CYST = 39
    SOLID = 40
    CALC = 41
    BLEED = 42
    EDEMA = 43
    SCLEROTIC = 44
    LYTIC = 45
    BULLA = 46
    VFAT = 47  # visceral fat: same CT numbers as FAT, marks the free space of the abdomen
    THIN = 48  # cortical shell of flat and short bones, diluted when thinner than the voxel
    TWIG = 49  # pulmonary vessel thinner than the voxel: blood diluted with lung
    BACK_MUSCLE = 50  # paraspinal and gluteal muscle: fatty infiltration grows with age


@dataclass(frozen=True)
class Tissue:
    native: tuple[float, float]
    enhanced: tuple[float, float] | None = None  # venous-phase range; None = does not enhance
    arterial: tuple[float, float] | None = None  # when it differs from venous
    texture: float = 5.0  # std (HU) of the smooth parenchymal texture


TISSUES: dict[T, Tissue] = {
    T.AIR: Tissue((-1005, -995), texture=0),
    T.GAS: Tissue((-1000, -960), texture=6),
    T.LUNG: Tissue((-885, -835), texture=28),
    T.FAT: Tissue((-108, -72), texture=9),
    T.MARROW: Tissue((-70, -10), texture=20),
    T.SKIN: Tissue((25, 50), texture=5),
    T.MUSCLE: Tissue((40, 55), (50, 68), texture=7),
    T.LIVER: Tissue((50, 66), (78, 118), (62, 85), texture=7),
    T.SPLEEN: Tissue((40, 52), (75, 122), (85, 135), texture=8),
    T.CORTEX: Tissue((28, 40), (140, 200), (150, 230), texture=8),
    T.MEDULLA: Tissue((25, 35), (125, 185), (50, 95), texture=8),
    T.URINE: Tissue((0, 15), texture=2),
    T.BILE: Tissue((0, 20), texture=2),
    T.PANCREAS: Tissue((35, 50), (75, 115), (90, 130), texture=14),
    T.GI_WALL: Tissue((35, 48), (65, 105), (70, 110), texture=6),
    T.GI_FLUID: Tissue((2, 30), texture=6),
    T.STOOL: Tissue((-180, 10), texture=70),
    T.ORAL: Tissue((180, 380), texture=25),
    T.ARTERY: Tissue((35, 50), (130, 200), (250, 420), texture=4),
    T.VEIN: Tissue((35, 50), (105, 165), (50, 110), texture=5),
    T.PORTAL: Tissue((35, 50), (135, 195), (95, 150), texture=4),
    T.MYOCARDIUM: Tissue((35, 50), (85, 130), (85, 140), texture=6),
    T.BONE: Tissue((850, 1350), texture=90),
    T.SPONGY: Tissue((140, 260), texture=35),
    T.CARTILAGE: Tissue((80, 140), texture=15),
    T.DISC: Tissue((70, 110), texture=8),
    T.CSF: Tissue((2, 14), texture=3),
    T.GRAY: Tissue((36, 44), texture=3),
    T.WHITE: Tissue((24, 31), texture=3),
    T.VITREOUS: Tissue((5, 18), texture=3),
    T.LENS: Tissue((90, 130), texture=5),
    T.THYROID: Tissue((85, 120), (130, 190), texture=10),
    T.TEETH: Tissue((1400, 2200), texture=150),
    T.TABLE: Tissue((150, 400), texture=30),
    T.FOAM: Tissue((-960, -850), texture=15),
    T.PLAQUE: Tissue((450, 900), texture=60),
    T.SOFT: Tissue((35, 50), (60, 100), texture=8),
    T.STOMACH_FLUID: Tissue((0, 60), texture=18),
    T.LYMPH: Tissue((30, 45), (45, 75), texture=5),
    T.CYST: Tissue((0, 20), texture=2),
    T.SOLID: Tissue((30, 70), texture=8),
    T.CALC: Tissue((200, 600), texture=40),
    T.BLEED: Tissue((58, 85), texture=4),
    T.EDEMA: Tissue((14, 24), texture=3),
    T.SCLEROTIC: Tissue((550, 1100), texture=60),
    T.LYTIC: Tissue((20, 70), texture=8),
    T.BULLA: Tissue((-1000, -960), texture=4),
    T.VFAT: Tissue((-108, -72), texture=9),
    T.THIN: Tissue((850, 1350), texture=50),
    T.TWIG: Tissue((-500, -400), texture=30),
    T.BACK_MUSCLE: Tissue((40, 55), (50, 68), texture=9),
}

N_TISSUES = max(TISSUES) + 1


@dataclass(frozen=True)
class Contrast:
    phase: str
    level: float  # 0..1 position within the enhanced range (bolus strength)
    oral: bool  # positive oral contrast in the bowel


def sample_contrast(rng: np.random.Generator) -> Contrast:
    phase = PHASES[int(rng.choice(len(PHASES), p=PHASE_WEIGHTS))]
    return Contrast(phase, float(rng.uniform(0, 1)), bool(rng.uniform() < 0.25))


# realism >= 2: real paraspinal muscle is fattier (24 HU in tests/data) and vertebrae less dense.
BACK_MUSCLE_FAT_HU = 18.0
BONE_HU_FACTOR = 0.75
CORTEX_MM = 1.4  # typical cortical shell of vertebrae, ribs, pelvis and skull tables


def sample_hu(rng: np.random.Generator, contrast: Contrast, min_shell: float = 0.0,
              age: float = 50.0, realism: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per-tissue mean HU and texture std for one case. Shells are painted at least ``min_shell`` mm
    thick so they do not alias into dots on coarse grids; their HU is diluted to keep the same mass.
    ``realism`` >= 2 moves paraspinal muscle and bone towards the real series in tests/data."""
    mean = np.zeros(N_TISSUES, np.float32)
    tex = np.zeros(N_TISSUES, np.float32)
    for t, spec in TISSUES.items():
        lo, hi = spec.native
        if contrast.phase != "native" and spec.enhanced is not None:
            lo, hi = spec.enhanced
            if contrast.phase == "arterial" and spec.arterial is not None:
                lo, hi = spec.arterial
            pos = float(np.clip(contrast.level + rng.normal(0, 0.15), 0, 1))
        else:
            pos = float(rng.uniform(0, 1))
        mean[t] = lo + (hi - lo) * pos
        tex[t] = spec.texture
    mean[T.VFAT] = mean[T.FAT]
    mean[T.BACK_MUSCLE] = mean[T.MUSCLE] - 25.0 * float(np.clip((age - 30) / 50, 0, 1)) * rng.uniform(0.2, 1.0)
    if realism >= 2:
        mean[T.BACK_MUSCLE] -= BACK_MUSCLE_FAT_HU
        mean[[T.BONE, T.THIN, T.SPONGY]] *= BONE_HU_FACTOR
    f = CORTEX_MM / max(CORTEX_MM, min_shell)
    mean[T.THIN] = f * mean[T.THIN] + (1 - f) * mean[T.SPONGY]
    mean[T.TWIG] = 0.4 * mean[T.ARTERY] + 0.6 * mean[T.LUNG]
    if contrast.oral:
        mean[T.GI_FLUID] = mean[T.ORAL]
    return mean, tex
