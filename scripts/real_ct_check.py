#!/usr/bin/env python
"""Dice of the demo models on the real abdominal CT series (TotalSegmentator reference labels).

    python scripts/real_ct_check.py --models demo_models/decomposition --out real_ct.md

The TotalSegmentator label map is turned into each region's label set (vertebrae_T11/T12 -> vertebrae,
rib_* -> ribs, lung lobes -> lung_left/right), then `lorkd evaluate` scores teacher, experts and baseline.
Only structures present in the reference count; the series covers the upper abdomen (20 slices, 40 mm).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"


def group_name(ts_name: str) -> str:
    if ts_name.startswith("vertebrae_"):
        return "vertebrae"
    if ts_name.startswith("rib_"):
        return "ribs"
    if ts_name.startswith("lung_"):
        return "lung_left" if ts_name.endswith("_left") else "lung_right"
    return ts_name


def region_label_map(ts_labels: np.ndarray, ts_names: dict[int, str], region_names: dict[int, str]) -> np.ndarray:
    by_name = {name: rid for rid, name in region_names.items()}
    out = np.zeros_like(ts_labels, dtype=np.int16)
    for ts_id, ts_name in ts_names.items():
        rid = by_name.get(group_name(ts_name))
        if rid is not None:
            out[ts_labels == ts_id] = rid
    return out


def main(argv: list[str] | None = None) -> int:
    from lorkd_core.engine.evaluate import evaluate_models
    from lorkd_core.io import load_label_map, load_scan, save_label_map

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", required=True, help="a decomposition output folder")
    parser.add_argument("--out", required=True, help="report .md (a .csv is written beside it)")
    parser.add_argument("--regions", nargs="+", default=["abdomen", "thorax"])
    args = parser.parse_args(argv)

    card = json.loads((Path(args.models) / "experts" / "card.json").read_text(encoding="utf-8"))
    scan = load_scan(DATA / "ct_abdomen_dicom")
    ts = load_label_map(DATA / "ct_abdomen_dicom_seg.nii.gz", like=scan)
    ts_names = {int(k): v for k, v in json.loads((DATA / "totalsegmentator_v2_labels.json").read_text()).items()}
    with tempfile.TemporaryDirectory() as tmp:
        lines = []
        for region in args.regions:
            names = {int(k): v for k, v in card["labels"][region].items()}
            labels = region_label_map(np.asarray(ts.array), ts_names, names)
            present = sorted(int(v) for v in np.unique(labels) if v)
            print(f"{region}: reference has {[names[i] for i in present]}")
            path = save_label_map(Path(tmp) / f"{region}_seg.nii.gz", labels, scan, names)
            lines.append(json.dumps({"image": str(DATA / "ct_abdomen_dicom"), "label": str(path), "region": region,
                                     "modality": "CT", "labels": {str(k): v for k, v in names.items()},
                                     "split": "test", "case_id": f"real_ct_{region}"}))
        manifest = Path(tmp) / "manifest.jsonl"
        manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
        result = evaluate_models(args.models, manifest, args.out, record=False, latency_runs=1)
    print(Path(args.out).read_text(encoding="utf-8"))
    return 0 if result is not None else 1


if __name__ == "__main__":
    sys.exit(main())
