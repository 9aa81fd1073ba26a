"""Scan and label-map input/output with geometry (see docs/contracts.md, "Scans")."""

from lorkd_core.io.geometry import (
    CANONICAL_ORIENTATION,
    CanonicalGrid,
    from_canonical,
    labels_to_canonical,
    to_canonical,
)
from lorkd_core.io.normalize import normalize_mr
from lorkd_core.io.scan import (
    DEFAULT_MAX_VOXELS,
    Geometry,
    LabelMap,
    Scan,
    load_label_map,
    load_scan,
    orientation_code,
    sidecar_path,
)
from lorkd_core.io.writers import save_dicom_seg, save_label_map

__all__ = [
    "CANONICAL_ORIENTATION",
    "DEFAULT_MAX_VOXELS",
    "CanonicalGrid",
    "Geometry",
    "LabelMap",
    "Scan",
    "from_canonical",
    "labels_to_canonical",
    "load_label_map",
    "load_scan",
    "normalize_mr",
    "orientation_code",
    "save_dicom_seg",
    "save_label_map",
    "sidecar_path",
    "to_canonical",
]
