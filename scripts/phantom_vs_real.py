#!/usr/bin/env python
"""Compare procedural CT phantoms with the real abdominal CT series in tests/data.

    python scripts/phantom_vs_real.py [--cases 6] [--size 96] [--realism 1] [--out folder]

Generates ``--cases`` abdomen phantoms (dataset seeds 0..N-1, as `lorkd phantoms` would) and prints a
Markdown table: per-structure mean HU and SD, organ cross-sections, stomach gas, body pieces and noise,
each as the real value vs the phantoms' mean (min..max). The real labels are TotalSegmentator's.
With ``--out`` the phantoms are also written there as a dataset (ct/seg NIfTI + manifest).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
sys.path.insert(0, str(ROOT))

# Structures measured: name -> how many mm to erode in-plane before the HU statistics (0 = whole label).
STRUCTURES = {"liver": 3.0, "spleen": 3.0, "kidney_left": 2.0, "kidney_right": 2.0, "stomach": 0.0,
              "aorta": 2.0, "inferior_vena_cava": 2.0, "vertebrae": 0.0, "autochthon": 3.0}
BODY_HU = -500.0  # body (and table) threshold
PIECE_CM2 = 10.0  # smallest separate body piece counted


def _group(ts_name: str) -> str:
    """TotalSegmentator name -> the name measured here."""
    if ts_name.startswith("vertebrae_"):
        return "vertebrae"
    if ts_name.startswith("autochthon_"):
        return "autochthon"
    return ts_name


def real_scan() -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """(HU z,y,x; structure masks as one label map with ids = position in STRUCTURES + 1; spacing x,y,z)."""
    from lorkd_core.io import load_label_map, load_scan

    scan = load_scan(DATA / "ct_abdomen_dicom")
    ts = np.asarray(load_label_map(DATA / "ct_abdomen_dicom_seg.nii.gz", like=scan).array)
    ts_names = json.loads((DATA / "totalsegmentator_v2_labels.json").read_text(encoding="utf-8"))
    ids = {n: i + 1 for i, n in enumerate(STRUCTURES)}
    lab = np.zeros(ts.shape, np.int16)
    for k, name in ts_names.items():
        if _group(name) in ids:
            lab[ts == int(k)] = ids[_group(name)]
    return np.asarray(scan.array, np.float32), lab, tuple(float(s) for s in scan.spacing)


def phantom_scans(n: int, size: int, realism: int, out: Path | None):
    """Yield (HU, label map as in real_scan, spacing, meta) for abdomen cases 0..n-1 of dataset seed 0."""
    from lorkd_core.data.phantoms import case_seed, generate_case, write_phantom_dataset

    if out is not None:
        write_phantom_dataset(out, n, ["abdomen"], seed=0, size=size, realism=realism)
    names = tuple(f"{s}_left" if s == "autochthon" else s for s in STRUCTURES) + ("autochthon_right",)
    for i in range(n):
        case = generate_case("abdomen", case_seed(0, "abdomen", i), shape=size, labels=names, realism=realism)
        lab = case.labels.copy()
        lab[lab == len(names)] = list(STRUCTURES).index("autochthon") + 1  # right -> one autochthon id
        yield case.image, lab, case.spacing, case.meta


def _eroded(mask: np.ndarray, mm: float, sp) -> np.ndarray:
    it = int(round(mm / sp[0]))
    if it < 1:
        return mask
    st = np.zeros((1, 3, 3), bool)
    st[0] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_erosion(mask, st, iterations=it)


def _arm_pieces(hu2d: np.ndarray, px_cm2: float) -> int:
    """Pieces (> PIECE_CM2) apart from the trunk on one slice, besides it rather than under it: arms
    hanging down clear of the trunk, not the table or its mattress."""
    lab, n = ndimage.label(ndimage.binary_fill_holes(hu2d > BODY_HU))
    if n < 2:
        return 0
    idx = np.arange(1, n + 1)
    sizes = ndimage.sum(np.ones_like(lab), lab, idx) * px_cm2
    cy = np.array([c[0] for c in ndimage.center_of_mass(np.ones_like(lab), lab, idx)])
    trunk = int(np.argmax(sizes))
    ys = np.nonzero((lab == trunk + 1).any(1))[0]
    beside = (cy > ys.min()) & (cy < ys.max())
    beside[trunk] = False
    return int((beside & (sizes > PIECE_CM2)).sum())


def measure(hu: np.ndarray, lab: np.ndarray, sp) -> dict[str, float]:
    """All statistics of one scan (HU z,y,x, label map with STRUCTURES ids, spacing x,y,z mm)."""
    px_cm2 = sp[0] * sp[1] / 100.0
    out: dict[str, float] = {}
    for i, (name, mm) in enumerate(STRUCTURES.items(), 1):
        m = _eroded(lab == i, mm, sp)
        out[f"{name} mean HU"] = float(hu[m].mean()) if m.any() else np.nan
        out[f"{name} SD HU"] = float(hu[m].std()) if m.any() else np.nan
    for name in ("spleen", "liver"):
        m = lab == list(STRUCTURES).index(name) + 1
        out[f"{name} largest axial cross-section cm²"] = float(m.sum((1, 2)).max() * px_cm2)
    st = lab == list(STRUCTURES).index("stomach") + 1
    out["stomach gas fraction (< -500 HU)"] = float((hu[st] < -500).mean()) if st.any() else np.nan
    nz = hu.shape[0]
    mid = range(max(0, nz // 2 - nz // 8), min(nz, nz // 2 + nz // 8 + 1))
    out["arm pieces apart from trunk > 10 cm² (middle slices, max)"] = max(_arm_pieces(hu[z], px_cm2) for z in mid)
    z = int(np.argmax((lab == 1).sum((1, 2))))
    body = ndimage.binary_fill_holes(hu[z] > BODY_HU)
    blab, n = ndimage.label(body)
    trunk = blab == 1 + int(np.argmax(ndimage.sum(body, blab, range(1, n + 1)))) if n else body
    out["trunk width at liver cm (incl. touching arms)"] = float(trunk.any(0).sum() * sp[0] / 10)
    fat = ndimage.binary_erosion(trunk, iterations=2) & (hu[z] > -190) & (hu[z] < -30) & (lab[z] == 0)
    out["fat (-190..-30 HU in trunk) mean HU"] = float(hu[z][fat].mean()) if fat.any() else np.nan
    return out


def _fmt(v: float) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.3g}"


def table(real: dict[str, float], phantoms: list[dict[str, float]], title: str) -> str:
    lines = [f"| measure ({title}) | real | phantoms mean (min..max) |", "|---|---|---|"]
    for key, r in real.items():
        v = np.array([p[key] for p in phantoms], float)
        v = v[np.isfinite(v)]
        ph = f"{_fmt(v.mean())} ({_fmt(v.min())}..{_fmt(v.max())})" if v.size else "–"
        lines.append(f"| {key} | {_fmt(r)} | {ph} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None, echo: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=6, help="phantoms to generate (default 6)")
    parser.add_argument("--size", type=int, default=96, help="phantom grid size (default 96)")
    parser.add_argument("--realism", type=int, default=1, choices=(1, 2), help="phantom realism level")
    parser.add_argument("--out", help="also write the phantoms as a dataset here")
    args = parser.parse_args(argv)

    real = measure(*real_scan())
    phantoms, metas = [], []
    for hu, lab, sp, meta in phantom_scans(args.cases, args.size, args.realism, Path(args.out) if args.out else None):
        phantoms.append(measure(hu, lab, sp))
        metas.append(meta)
    echo(table(real, phantoms, f"abdomen, realism {args.realism}, {args.cases} x {args.size}³"))
    arms = sum(m["arms"] == "down" for m in metas)
    phases = ", ".join(sorted({m["phase"] for m in metas}))
    echo(f"\nphantoms: arms down in {arms}/{len(metas)}, phases {phases}; real: arms down, portal venous")
    return 0


if __name__ == "__main__":
    sys.exit(main())
