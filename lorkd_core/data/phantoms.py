"""Procedural CT phantoms of the eight body regions, and datasets of them in the manifest layout of
docs/contracts.md.

A case is one field of view on a randomly sampled patient (habitus, organ sizes, contrast phase,
pose, smooth deformation) scanned with a random protocol (field of view, slice spacing, PSF, noise).
Everything is drawn from one generator seeded by (seed, region), so a seed always gives the same
arrays. Internals live in the ``phantom_*`` modules; this one holds the public API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from lorkd_core.atomic import atomic_path
from lorkd_core.data.phantom_canvas import Canvas
from lorkd_core.data.phantom_ct import apply_fov_circle, render_ct, sample_scanner
from lorkd_core.data.phantom_findings import FINDINGS, add_finding
from lorkd_core.data.phantom_patient import Patient, sample_patient
from lorkd_core.data.phantom_regions import REGION_LABELS, REGIONS, ScanPlan, label_for, plan_scan
from lorkd_core.data.phantom_scene import build_arm, build_body
from lorkd_core.data.phantom_shapes import rotation
from lorkd_core.data.phantom_tissues import T, sample_hu
from lorkd_core.errors import ConfigError
from lorkd_core.progress import CancelToken, ProgressCallback, report

__all__ = ["FINDINGS", "REGIONS", "REGION_LABELS", "PhantomCase", "generate_case", "write_phantom_dataset",
           "split_of"]

REALISM_LEVELS = (1, 2)
_Z_SPACINGS = (0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass
class PhantomCase:
    """One phantom scan. Arrays are (z, y, x) like SimpleITK; geometry is (x, y, z), LPS."""

    region: str
    image: np.ndarray  # float32 HU
    labels: np.ndarray  # int16, ids into label_names
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    label_names: dict[int, str]
    finding: str | None  # a class of FINDINGS[region].classes, None when findings are off
    finding_mask: np.ndarray  # bool, the lesion voxels
    tissues: np.ndarray  # uint8 tissue classes (phantom_tissues.T), for analysis
    meta: dict[str, Any] = field(default_factory=dict)


def _as_shape(shape: int | Sequence[int]) -> tuple[int, int, int]:
    if isinstance(shape, (int, np.integer)):
        return (int(shape),) * 3
    dims = tuple(int(s) for s in shape)
    if len(dims) != 3:
        raise ConfigError(f"phantom shape must be one int or (z, y, x), got {shape!r}")
    return dims  # type: ignore[return-value]


def _realism_plan(region: str, seed: int, patient: Patient, plan: ScanPlan) -> ScanPlan:
    """Realism >= 2: arms hanging down clear of the trunk, and a field of view wide enough to show them
    (the real series: 500 mm). Draws come from their own stream, so the case's main stream is unchanged."""
    extra = np.random.default_rng([int(seed), REGIONS.index(region), 2])
    patient.arm_gap = float(extra.uniform(5, 30)) if extra.uniform() < 0.8 else None
    if patient.arms == "down" and region in ("abdomen", "thorax", "pelvis"):
        plan = replace(plan, fov_mm=max(plan.fov_mm, float(extra.uniform(460, 520))))
    return plan


def _check_realism(realism: int) -> None:
    if realism not in REALISM_LEVELS:
        raise ConfigError(f"phantom realism must be one of {REALISM_LEVELS}, got {realism!r}")


def _check_region(region: str) -> None:
    if region not in REGIONS:
        raise ConfigError(f"unknown region {region!r}; expected one of {', '.join(REGIONS)}")


def generate_case(region: str, seed: int, *, shape: int | Sequence[int] = 96,
                  spacing: Sequence[float] | None = None, fov_mm: float | None = None, findings: bool = True,
                  finding: str | None = None, labels: Sequence[str] | None = None,
                  realism: int = 1) -> PhantomCase:
    """Generate one case of ``region``. ``shape`` is the grid (int or (z, y, x)); ``spacing`` (x, y, z)
    mm overrides the sampled one; ``finding`` forces a finding class of ``FINDINGS[region]`` (random
    otherwise); ``labels`` overrides the region's label list (e.g. per-level ``vertebrae_L1``).
    ``realism`` 1 gives the original phantoms (bit-identical for a seed); 2 moves them towards the real
    abdomen series in tests/data (larger spleen, more stomach gas, fattier back muscle, less dense bone,
    arms hanging down apart from the trunk, more noise; see scripts/phantom_vs_real.py)."""
    _check_region(region)
    _check_realism(realism)
    if finding is not None and finding not in FINDINGS[region].classes:
        raise ConfigError(f"finding {finding!r} is not one of {', '.join(FINDINGS[region].classes)} "
                          f"for region {region}")
    if int(seed) < 0:
        raise ConfigError(f"phantom seed must be >= 0, got {seed}")
    nz, ny, nx = _as_shape(shape)
    rng = np.random.default_rng([int(seed), REGIONS.index(region)])
    patient = sample_patient(rng)
    plan = plan_scan(region, rng)
    patient.realism = realism
    if realism >= 2:
        plan = _realism_plan(region, seed, patient, plan)
    fov = float(fov_mm or plan.fov_mm)
    if spacing is None:
        sxy = float(np.clip(fov / max(nx, ny), 0.5, 5.0))
        lo, hi = plan.z_extent
        choices = [s for s in _Z_SPACINGS if lo <= s * nz <= hi]
        sz = float(rng.choice(choices)) if choices else float(np.clip((lo + hi) / 2 / nz, 0.5, 5.0))
        sp = (sxy, sxy, sz)
    else:
        sp = tuple(float(s) for s in spacing)
    center = np.asarray(plan.center, float)
    origin = center - (np.array([nx, ny, nz]) - 1) / 2 * np.asarray(sp)
    pose = rotation(*np.radians(rng.uniform([-3, -3, -6], [3, 3, 6])))
    matrix = pose @ np.diag(1.0 / np.asarray(patient.scale))
    warp = [[(2 * np.pi / rng.uniform(180, 450), float(rng.uniform(0, 2.5)), float(rng.uniform(0, 2 * np.pi)))
             for _ in range(3)] for _ in range(3)]
    canvas = Canvas((nz, ny, nx), sp, origin, matrix, center, warp)
    if region == "upper_limb":
        build_arm(canvas, patient, rng)
    else:
        build_body(canvas, patient, rng)
    hu, tex = sample_hu(rng, patient.contrast, canvas.min_shell, patient.age, realism)
    finding_cls, fmask = add_finding(canvas, region, hu, rng, findings, finding)
    body = ~np.isin(canvas.tissue[nz // 2], (T.AIR, T.TABLE, T.FOAM))
    width = 0.5 * float(body.any(axis=0).sum()) * sp[0] if body.any() else patient.width
    scanner = sample_scanner(rng, width, realism)
    image = render_ct(canvas.tissue, hu, tex, canvas.Y, sp, scanner, rng)
    if scanner.fov_circle:
        apply_fov_circle(image, sp, min(nx * sp[0], ny * sp[1]))
    names = tuple(labels) if labels is not None else REGION_LABELS[region]
    label_names = {i + 1: n for i, n in enumerate(names)}
    lut = np.zeros(len(canvas.names) + 1, np.int16)
    ids = {n: i for i, n in label_names.items()}
    for name, sid in canvas.names.items():
        lab = label_for(name, names)
        if lab is not None:
            lut[sid] = ids[lab]
    meta = {"seed": int(seed), "phase": patient.contrast.phase, "oral_contrast": patient.contrast.oral,
            "noise_hu": round(scanner.noise_std, 2), "fov_mm": round(fov, 1), "arms": patient.arms,
            "sex": "F" if patient.female else "M", "age": round(patient.age)}
    if realism != 1:  # realism-1 metadata (and so seg.json) stays as it always was
        meta["realism"] = realism
    return PhantomCase(region, image, lut[canvas.struct], tuple(float(s) for s in sp),
                       tuple(float(o) for o in origin), _DIRECTION, label_names, finding_cls, fmask, canvas.tissue,
                       meta)


# -- datasets --------------------------------------------------------------------------------------

def split_of(index: int, n: int) -> str:
    """Deterministic split: the last ~20% of a region's cases are test, the ~10% before them val."""
    n_test = max(1, round(0.2 * n)) if n >= 2 else 0
    n_val = max(1, round(0.1 * n)) if n >= 5 else 0
    if index >= n - n_test:
        return "test"
    if index >= n - n_test - n_val:
        return "val"
    return "train"


def case_seed(seed: int, region: str, index: int) -> int:
    """Seed of case ``index`` of ``region`` in a dataset generated with ``seed``."""
    ss = np.random.SeedSequence([int(seed), REGIONS.index(region), int(index)])
    return int(ss.generate_state(1, np.uint32)[0])


def _write_nifti(path: Path, array: np.ndarray, case: PhantomCase) -> None:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(case.spacing)
    img.SetOrigin(case.origin)
    img.SetDirection(case.direction)
    with atomic_path(path, suffix=".nii.gz") as tmp:
        sitk.WriteImage(img, str(tmp), True)


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _write_case(out: Path, region: str, index: int, n: int, seed: int, size: int | Sequence[int],
                findings: bool, realism: int = 1) -> dict[str, Any]:
    cs = case_seed(seed, region, index)
    case = generate_case(region, cs, shape=size, findings=findings, realism=realism)
    case_id = f"{region}_{index:03d}"
    folder = out / "cases" / case_id
    folder.mkdir(parents=True, exist_ok=True)
    hu = np.clip(np.round(case.image), -1024, 3071).astype(np.int16)
    _write_nifti(folder / "ct.nii.gz", hu, case)
    _write_nifti(folder / "seg.nii.gz", case.labels.astype(np.uint8), case)
    labels = {str(k): v for k, v in case.label_names.items()}
    geometry = {"size": list(case.image.shape[::-1]), "spacing": list(case.spacing), "origin": list(case.origin),
                "direction": list(case.direction)}
    _write_text(folder / "seg.json", json.dumps({"labels": labels, "region": region, "model": "lorkd-phantom",
                                                 "geometry": geometry, "phantom": case.meta}, indent=2) + "\n")
    item: dict[str, Any] = {"image": f"cases/{case_id}/ct.nii.gz", "label": f"cases/{case_id}/seg.nii.gz",
                            "region": region, "modality": "CT", "labels": labels, "finding": case.finding,
                            "split": split_of(index, n), "case_id": case_id}
    if findings:
        _write_nifti(folder / "finding.nii.gz", case.finding_mask.astype(np.uint8), case)
        item["finding_mask"] = f"cases/{case_id}/finding.nii.gz"
    return item


def write_phantom_dataset(out_dir: str | Path, cases_per_region: int, regions: Sequence[str] | None = None,
                          seed: int = 0, size: int | Sequence[int] = 96, *, findings: bool = True,
                          workers: int = 1, progress: ProgressCallback | None = None,
                          cancel: CancelToken | None = None, realism: int = 1) -> Path:
    """Write ``<out>/cases/<region>_<nnn>/{ct,seg,finding}.nii.gz`` (+ ``seg.json``), ``manifest.jsonl``
    and ``dataset.json``; return the manifest path. Case ``i`` of a region depends only on
    (seed, region, i, realism), so adding regions or cases never changes existing ones."""
    _check_realism(realism)
    regions = list(REGIONS if not regions else regions)
    for r in regions:
        _check_region(r)
    regions = [r for r in REGIONS if r in regions]
    if cases_per_region < 1:
        raise ConfigError(f"cases per region must be >= 1, got {cases_per_region}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(r, i) for r in regions for i in range(cases_per_region)]
    items: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    args = (cases_per_region, seed, size, findings, realism)
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_write_case, out, r, i, *args) for r, i in jobs]
            for k, fut in enumerate(futures):
                if cancel is not None and cancel.cancelled:
                    for f in futures:
                        f.cancel()
                    cancel.raise_if_cancelled("phantom generation")
                items.append(fut.result())
                report(progress, k + 1, len(jobs), items[-1]["case_id"], seconds=time.perf_counter() - t0)
    else:
        for k, (r, i) in enumerate(jobs):
            if cancel is not None:
                cancel.raise_if_cancelled("phantom generation")
            items.append(_write_case(out, r, i, *args))
            report(progress, k + 1, len(jobs), items[-1]["case_id"], seconds=time.perf_counter() - t0)
    manifest = out / "manifest.jsonl"
    _write_text(manifest, "".join(json.dumps(it) + "\n" for it in items))
    summary = {
        "name": "lorkd-phantoms", "format": "lorkd-phantoms/1", "seed": int(seed), "size": size,
        "cases_per_region": cases_per_region, "findings": findings, "realism": int(realism),
        "regions": {r: {"labels": {str(i + 1): n for i, n in enumerate(REGION_LABELS[r])},
                        "findings": list(FINDINGS[r].classes),
                        "cases": {s: sum(1 for it in items if it["region"] == r and it["split"] == s)
                                  for s in ("train", "val", "test")}}
                    for r in regions},
    }
    _write_text(out / "dataset.json", json.dumps(summary, indent=2) + "\n")
    return manifest
