"""Reports of a result: CSV or JSON with structures, volumes, model, region and scan geometry.

Deliberately no patient identifiers: no names, ids, dates, UIDs or source paths (a folder name can be
a patient's name), only the geometry and what the model found.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from lorkd_core.atomic import write_text_atomic

from .types import ClassificationResult, LoadedScan, ModelInfo, SegmentationResult, VolumeChange


def scan_geometry(loaded: LoadedScan) -> dict[str, Any]:
    scan = loaded.scan
    z, y, x = scan.array.shape
    return {"modality": loaded.modality, "source_format": "DICOM" if loaded.is_dicom else "volume file",
            "size_xyz": [int(x), int(y), int(z)], "spacing_mm": [float(s) for s in scan.spacing],
            "origin_mm": [float(o) for o in scan.origin], "direction": [float(d) for d in scan.direction]}


def build_report(loaded: LoadedScan, result: SegmentationResult | ClassificationResult, model: ModelInfo,
                 compare: list[VolumeChange] | None = None, compare_model: ModelInfo | None = None) -> dict[str, Any]:
    report: dict[str, Any] = {
        "format": "lorkd-report/1",
        "region": result.region,
        "model": {"id": model.id, "name": model.name, "kind": model.kind, "task": model.task,
                  "parameters": model.parameters, "dice": model.dice},
        "scan": scan_geometry(loaded),
    }
    if isinstance(result, SegmentationResult):
        report["structures"] = [
            {"label_id": s.label_id, "structure": s.name, "voxels": s.voxels, "volume_ml": round(s.volume_ml, 3),
             "mean_intensity": round(s.mean_intensity, 2), "touches_border": s.touches_border}
            for s in result.stats]
    else:
        report["classification"] = {k: round(float(v), 5) for k, v in result.probabilities.items()}
    if compare is not None and compare_model is not None:
        report["compare"] = {"model": {"id": compare_model.id, "name": compare_model.name},
                             "volume_changes": [{"structure": c.name, "volume_ml_a": round(c.volume_a, 3),
                                                 "volume_ml_b": round(c.volume_b, 3),
                                                 "delta_ml": round(c.delta, 3)} for c in compare]}
    return report


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    """JSON for ``.json``, otherwise CSV: one row per structure (or class) with model, region and geometry."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        write_text_atomic(path, json.dumps(report, indent=2) + "\n")
        return path
    scan = report["scan"]
    common = {"model": report["model"]["name"], "model_id": report["model"]["id"], "region": report["region"],
              "modality": scan["modality"], "size_xyz": "x".join(map(str, scan["size_xyz"])),
              "spacing_mm": "x".join(f"{s:.4g}" for s in scan["spacing_mm"])}
    buf = io.StringIO()
    if "structures" in report:
        fields = ["structure", "label_id", "volume_ml", "mean_intensity", "touches_border", "voxels", *common]
        rows = [{**s, **common} for s in report["structures"]]
    else:
        fields = ["class", "probability", *common]
        rows = [{"class": k, "probability": v, **common} for k, v in report["classification"].items()]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())
    return path
