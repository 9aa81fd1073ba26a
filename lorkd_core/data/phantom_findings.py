"""Focal findings for the classification task: one lesion in the region's main organ.

The lesion keeps the organ's label (organ masks include their lesions, as in TotalSegmentator) and
is also returned as its own mask, written as ``finding.nii.gz`` next to the case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lorkd_core.data.phantom_canvas import Canvas
from lorkd_core.data.phantom_shapes import Ellipsoid, rotation
from lorkd_core.data.phantom_tissues import T

BONE_CLASSES = ("none", "lytic_lesion", "sclerotic_lesion")


@dataclass(frozen=True)
class FindingSpec:
    organ_prefixes: tuple[str, ...]  # canvas structures the lesion may sit in
    classes: tuple[str, ...]  # "none" first


FINDINGS: dict[str, FindingSpec] = {
    "abdomen": FindingSpec(("liver",), ("none", "cyst", "solid_lesion", "calcification")),
    "brain": FindingSpec(("brain",), ("none", "cyst", "solid_lesion", "calcification", "hemorrhage")),
    "head_neck": FindingSpec(("thyroid_gland",), ("none", "cyst", "solid_lesion", "calcification")),
    "lower_limb": FindingSpec(("femur_", "tibia_"), BONE_CLASSES),
    "pelvis": FindingSpec(("urinary_bladder",), ("none", "solid_lesion", "calcification")),
    "spine": FindingSpec(("vertebrae_",), BONE_CLASSES),
    "thorax": FindingSpec(("lung_left", "lung_right"), ("none", "cyst", "solid_lesion", "calcification")),
    "upper_limb": FindingSpec(("humerus_", "radius_", "ulna_"), BONE_CLASSES),
}

# Diameter range in mm and the tissue of each finding class.
_SIZE = {"cyst": (8, 30), "solid_lesion": (8, 30), "calcification": (3, 10), "hemorrhage": (10, 35),
         "lytic_lesion": (8, 24), "sclerotic_lesion": (5, 18)}
_TISSUE = {"cyst": T.CYST, "solid_lesion": T.SOLID, "calcification": T.CALC, "hemorrhage": T.BLEED,
           "lytic_lesion": T.LYTIC, "sclerotic_lesion": T.SCLEROTIC}


def _organ_names(c: Canvas, prefixes: tuple[str, ...]) -> list[str]:
    return [n for n in c.names if any(n == p or (p.endswith("_") and n.startswith(p)) for p in prefixes)]


def solid_hu(region: str, organ_hu: float, rng: np.random.Generator) -> float:
    """A solid lesion stands out from its organ by 20-55 HU: hypodense in enhancing parenchyma,
    hyperdense against urine, either way in between."""
    if region == "thorax":
        return float(rng.uniform(20, 60))
    if region == "brain":
        return float(organ_hu + rng.uniform(12, 25))
    if organ_hu < 30:
        return float(organ_hu + rng.uniform(20, 45))
    if organ_hu > 70:
        return float(max(15.0, organ_hu - rng.uniform(25, 55)))
    return float(organ_hu + rng.uniform(20, 45) * rng.choice((-1, 1)))


def add_finding(c: Canvas, region: str, hu: np.ndarray, rng: np.random.Generator, enabled: bool = True,
                kind: str | None = None) -> tuple[str | None, np.ndarray]:
    """Place one finding of class ``kind`` (random when None); returns (class, or None when findings
    are off, and its mask). Falls back to "none" when the organ is too small in this field of view."""
    mask = np.zeros(c.shape, bool)
    if not enabled:
        return None, mask
    spec = FINDINGS[region]
    drawn = spec.classes[int(rng.integers(0, len(spec.classes)))]
    kind = drawn if kind is None else kind
    if kind == "none":
        return "none", mask
    names = _organ_names(c, spec.organ_prefixes)
    organ = c.mask_of(*names)
    if organ.sum() < 30:
        return "none", mask
    diameter = rng.uniform(*_SIZE[kind])
    radius = diameter / 2
    zz, yy, xx = np.nonzero(organ)
    box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in (zz, yy, xx))
    dist = ndimage.distance_transform_edt(organ[box], sampling=tuple(c.spacing[::-1]))
    radius = min(radius, 0.8 * float(dist.max()))  # a lesion never outgrows its organ
    need = min(radius * 0.8, float(dist.max()) * 0.7)
    cand = np.argwhere(dist >= need)
    if len(cand) == 0 or radius < 1.5:
        return "none", mask
    pick = cand[int(rng.integers(0, len(cand)))] + np.array([b.start for b in box])
    ctr = np.array([c.X[tuple(pick)], c.Y[tuple(pick)], c.Z[tuple(pick)]], float)
    radii = radius * rng.uniform(0.8, 1.2, 3)
    rot = rotation(*rng.uniform(0, np.pi, 3))
    tissue = _TISSUE[kind]
    if kind == "solid_lesion":
        host = int(np.bincount(c.tissue[organ], minlength=1).argmax())
        hu[T.SOLID] = solid_hu(region, float(hu[host]), rng)
    if region == "thorax" and kind == "cyst":
        tissue = T.BULLA
    if region == "brain" and kind == "solid_lesion":  # vasogenic oedema around a tumour
        c.paint(Ellipsoid(ctr, radii * 1.9, rot), T.EDEMA, keep_struct=True, only_struct=names)
    shape = Ellipsoid(ctr, radii, rot, bend=tuple(rng.uniform(-0.15, 0.15, 2)))
    n = c.paint(shape, tissue, keep_struct=True, only_struct=names, record=mask)
    if n == 0:
        return "none", mask
    return kind, mask
