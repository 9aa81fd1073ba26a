"""Tiny synthetic CT datasets for the engine tests: blobs in 20^3 volumes, a JSONL manifest per contract.

Imported by the engine tests (``from test_engine_train_helpers import ...``); holds no tests itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REGIONS = ("abdomen", "thorax", "pelvis")
SHAPE = (20, 20, 20)
SPACING = 3.0
FINDINGS = (None, "cyst")


def _structures(region: str) -> list[str]:
    from lorkd_core.regions import load_taxonomy

    return list(load_taxonomy().regions[region].structures[:2])


def _write(path: Path, array: np.ndarray) -> None:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing((SPACING,) * 3)
    sitk.WriteImage(img, str(path))


def make_blob_dataset(root: Path, cases_per_region: int = 2, regions: tuple[str, ...] = REGIONS,
                      seed: int = 0) -> Path:
    """Write ``root/manifest.jsonl`` with ``cases_per_region`` cases per region; returns the manifest path."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij")
    for r_i, region in enumerate(regions):
        names = _structures(region)
        for c in range(cases_per_region):
            case = f"{region}_{c:03d}"
            folder = root / "cases" / case
            folder.mkdir(parents=True, exist_ok=True)
            image = rng.normal(-100.0, 20.0, SHAPE).astype(np.float32)
            label = np.zeros(SHAPE, np.int16)
            centre = rng.uniform(7, 13, size=3)
            radius = rng.uniform(3.0, 5.0)
            sphere = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 < radius ** 2
            label[sphere] = 1
            image[sphere] = 40.0 + 60.0 * r_i
            box = (slice(2, 6), slice(2 + r_i, 8 + r_i), slice(12, 17))
            label[box] = 2
            image[box] = 300.0
            finding = FINDINGS[c % len(FINDINGS)]
            if finding:
                cyst = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 < (radius / 2) ** 2
                image[cyst] = -20.0
            _write(folder / "ct.nii.gz", image)
            _write(folder / "seg.nii.gz", label)
            lines.append({"image": f"cases/{case}/ct.nii.gz", "label": f"cases/{case}/seg.nii.gz", "region": region,
                          "modality": "CT", "labels": {"1": names[0], "2": names[1]}, "finding": finding,
                          "split": "train", "case_id": case})
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return manifest
