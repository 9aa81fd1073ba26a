"""Per-region label sets and scan geometry of the phantoms.

Label names are TotalSegmentator snake_case in the taxonomy's relative order. Where TotalSegmentator
splits a structure into many classes a tiny student could not tell apart from a patch, the phantoms
group them: ``vertebrae`` (all levels), ``ribs`` (all 24), and side-free ``patella``/``tibia``/
``fibula`` (as in TotalSegmentator's appendicular task) and ``humerus``/``radius``/``ulna``/
``biceps_brachii``/``triceps_brachii`` (an isolated arm has no left/right context). The canvas keeps
per-level names (``vertebrae_L1``, ``rib_left_5``), so passing ``labels=`` with those names to
:func:`lorkd_core.data.phantoms.generate_case` gives per-level label maps instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lorkd_core.data.phantom_patient import HEAD_Z, level_mid, spine_y

REGIONS = ("abdomen", "brain", "head_neck", "lower_limb", "pelvis", "spine", "thorax", "upper_limb")

REGION_LABELS: dict[str, tuple[str, ...]] = {
    "abdomen": ("liver", "spleen", "kidney_left", "kidney_right", "stomach", "pancreas", "inferior_vena_cava",
                "aorta", "vertebrae"),
    "brain": ("brain", "ventricles", "skull", "eye_left", "eye_right"),
    "head_neck": ("thyroid_gland", "mandible", "common_carotid_artery_left", "common_carotid_artery_right",
                  "trachea", "esophagus", "vertebrae", "spinal_cord"),
    "lower_limb": ("femur_left", "femur_right", "patella", "tibia", "fibula", "quadriceps_femoris_left",
                   "quadriceps_femoris_right"),
    "pelvis": ("urinary_bladder", "rectum", "hip_left", "hip_right", "sacrum", "gluteus_maximus_left",
               "gluteus_maximus_right", "femur_left", "femur_right"),
    "spine": ("vertebrae", "intervertebral_discs", "spinal_cord", "autochthon_left", "autochthon_right", "sacrum"),
    "thorax": ("lung_left", "lung_right", "trachea", "esophagus", "heart", "aorta", "ribs", "sternum", "vertebrae"),
    "upper_limb": ("humerus", "radius", "ulna", "triceps_brachii", "biceps_brachii"),
}

# Declared CT numbers: the median HU inside each label (eroded by one voxel) lies in this range.
# Wide where content or contrast phase varies (stomach, bowel, vessels); long bones include marrow fat;
# back and gluteal muscles lose HU to fatty infiltration with age.
LABEL_HU: dict[str, tuple[float, float]] = {
    "liver": (40, 135), "spleen": (35, 140), "kidney_left": (20, 240), "kidney_right": (20, 240),
    "stomach": (-1000, 420), "pancreas": (25, 140), "inferior_vena_cava": (30, 220), "aorta": (30, 450),
    "vertebrae": (120, 500), "brain": (18, 45), "ventricles": (-5, 20), "skull": (200, 1400),
    "eye_left": (0, 30), "eye_right": (0, 30), "thyroid_gland": (70, 220), "mandible": (150, 1000),
    "common_carotid_artery_left": (30, 450), "common_carotid_artery_right": (30, 450),
    "trachea": (-1000, -850), "esophagus": (-1000, 120), "spinal_cord": (10, 45),
    "femur_left": (-100, 600), "femur_right": (-100, 600), "patella": (100, 600), "tibia": (-100, 600),
    "fibula": (-100, 600), "quadriceps_femoris_left": (30, 80), "quadriceps_femoris_right": (30, 80),
    "urinary_bladder": (-5, 30), "rectum": (-800, 80), "hip_left": (100, 600), "hip_right": (100, 600),
    "sacrum": (100, 600), "gluteus_maximus_left": (10, 80), "gluteus_maximus_right": (10, 80),
    "intervertebral_discs": (50, 170), "autochthon_left": (10, 80), "autochthon_right": (10, 80),
    "lung_left": (-940, -780), "lung_right": (-940, -780), "heart": (30, 320), "ribs": (100, 900),
    "sternum": (100, 600), "humerus": (-100, 700), "radius": (-100, 700), "ulna": (-100, 700),
    "triceps_brachii": (30, 80), "biceps_brachii": (30, 80),
}

# Labels a case of the region may lack (the field of view decides): a spine scan of the neck or
# chest has no sacrum.
OPTIONAL_LABELS: dict[str, frozenset[str]] = {"spine": frozenset({"sacrum"})}

# Group labels whose members are not simply "<label>_<suffix>".
_ALIASES = {"ribs": ("rib_left_", "rib_right_")}


def label_for(structure: str, labels: tuple[str, ...] | list[str]) -> str | None:
    """The label of ``labels`` a canvas structure belongs to (exact name first, then its group)."""
    if structure in labels:
        return structure
    for label in labels:
        prefixes = _ALIASES.get(label, (label + "_",))
        if any(structure.startswith(p) for p in prefixes):
            return label
    return None


@dataclass(frozen=True)
class ScanPlan:
    center: tuple[float, float, float]  # anatomy (reference mm) at the grid centre
    fov_mm: float  # in-plane field of view
    z_extent: tuple[float, float]  # allowed z coverage (mm)


def plan_scan(region: str, rng: np.random.Generator) -> ScanPlan:
    u = rng.uniform
    if region == "abdomen":
        return ScanPlan((u(-10, 10), u(-10, 15), level_mid("L1") + u(-45, 25)), u(340, 480), (220, 500))
    if region == "thorax":
        return ScanPlan((u(-10, 10), u(-10, 15), level_mid("T7") + u(-30, 25)), u(330, 480), (230, 480))
    if region == "pelvis":
        return ScanPlan((u(-10, 10), u(-5, 15), -105 + u(-25, 20)), u(360, 480), (200, 420))
    if region == "brain":
        return ScanPlan((u(-6, 6), u(-14, 0), HEAD_Z - 10 + u(-10, 10)), u(210, 260), (160, 260))
    if region == "head_neck":
        return ScanPlan((u(-6, 6), u(-10, 10), 520 + u(-15, 15)), u(200, 290), (200, 360))
    if region == "spine":
        part = rng.choice(3, p=(0.5, 0.25, 0.25))
        # Lumbar scans reach the sacrum; thoracic and cervical ones do not.
        z = (level_mid("L4") + u(-20, 25), level_mid("T8") + u(-40, 40), level_mid("C4") + u(-10, 10))[int(part)]
        return ScanPlan((u(-8, 8), float(spine_y(z)) + u(5, 25), z), u(150, 260), (190, 450))
    if region == "lower_limb":
        return ScanPlan((u(-10, 10), u(0, 20), -550 + u(-80, 50)), u(340, 450), (220, 480))
    if region == "upper_limb":
        return ScanPlan((u(-8, 8), u(-8, 8), u(-50, 50)), u(130, 200), (220, 450))
    raise ValueError(f"unknown region {region!r}; expected one of {', '.join(REGIONS)}")
