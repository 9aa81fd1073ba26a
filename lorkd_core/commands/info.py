"""``lorkd info SCAN``: what a scan is (modality, grid, orientation, intensities, windows, region)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

import numpy as np

from lorkd_core.io.scan import MODALITIES, Scan, load_scan


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "info",
        help="describe a scan (modality, size, spacing, orientation, intensities)",
        description="Describe a scan: NIfTI, NRRD, MHA/MHD, a DICOM file or series folder, PNG/JPEG.",
    )
    p.add_argument("scan", help="image file or DICOM folder")
    p.add_argument("--modality", choices=MODALITIES, help="modality to assume when the file does not say")
    p.add_argument("--series-uid", help="SeriesInstanceUID to pick in a DICOM folder (default: most slices)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)


def describe(scan: Scan) -> dict[str, Any]:
    """The facts ``lorkd info`` prints, as JSON-friendly values."""
    array = scan.array
    meta = {k: v for k, v in scan.meta.items() if k != "dicom_files"}
    return {
        "path": str(scan.path) if scan.path is not None else None,
        "modality": scan.modality,
        "modality_source": scan.meta.get("modality_source"),
        "size": list(scan.size),
        "spacing": [round(float(s), 6) for s in scan.spacing],
        "origin": [round(float(s), 6) for s in scan.origin],
        "direction": [round(float(d), 6) for d in scan.direction],
        "orientation": scan.orientation,
        "intensity_range": [float(np.min(array)), float(np.max(array))] if array.size else None,
        "windows": scan.meta.get("windows", []),
        "suggested_region": suggest(scan),
        "meta": meta,
    }


def suggest(scan: Scan) -> dict[str, Any] | None:
    """The region suggestion: ``{"region", "confidence", "method"}``, or None when there is no suggester.

    Like the app, a failing suggester (a broken classifier, a scan it cannot resample...) falls back to the
    heuristic; the answer then also says ``"fallback": "heuristic"`` and why (``"error"``). When the heuristic
    fails too, ``region`` is None and ``error`` names both failures.
    """
    try:  # import_module looks in sys.modules first (the tests put a fake or None there)
        region_suggest = importlib.import_module("lorkd_core.engine.region_suggest")
    except ImportError:
        return None
    suggest_region = getattr(region_suggest, "suggest_region", None)
    if suggest_region is None:
        return None
    try:
        return _suggestion(suggest_region(scan))
    except Exception as exc:  # a broken classifier must not hide the rest of the scan's facts
        error = _error_text(exc)
    heuristic = getattr(region_suggest, "heuristic_region", None)
    if heuristic is None:
        return {"region": None, "error": error}
    try:
        out = _suggestion(heuristic(scan))
    except Exception as exc:
        return {"region": None, "error": f"{error}; the heuristic fallback failed too: {_error_text(exc)}"}
    out.setdefault("method", "heuristic")
    return {**out, "fallback": "heuristic", "error": error}


def _suggestion(found: Any) -> dict[str, Any]:
    region = getattr(found, "region", found)
    confidence = getattr(found, "confidence", None)
    if isinstance(found, tuple):
        region, confidence = found[0], (found[1] if len(found) > 1 else None)
    if isinstance(found, dict):
        region, confidence = max(found.items(), key=lambda kv: kv[1]) if found else (None, None)
    out: dict[str, Any] = {"region": region}
    if isinstance(confidence, (int, float)):
        out["confidence"] = float(confidence)
    if isinstance(getattr(found, "method", None), str):
        out["method"] = found.method
    return out


def _error_text(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}"


def _fmt(values: Any, digits: int = 4) -> str:
    return " x ".join(f"{float(v):.{digits}g}" for v in values)


def run(args: argparse.Namespace) -> int:
    scan = load_scan(args.scan, modality=args.modality, series_uid=args.series_uid)
    facts = describe(scan)
    if args.json:
        json.dump(facts, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    lo, hi = facts["intensity_range"] or (float("nan"), float("nan"))
    unit = " HU" if scan.modality == "CT" else ""
    source = f" (from {facts['modality_source']})" if facts["modality_source"] else ""
    lines = [
        f"file:            {facts['path']}",
        f"format:          {scan.meta.get('format', '?')}" + (" (2D)" if scan.meta.get("is_2d") else ""),
        f"modality:        {scan.modality}{source}",
        f"size:            {' x '.join(str(s) for s in scan.size)} voxels (x, y, z)",
        f"spacing:         {_fmt(scan.spacing)} mm",
        f"origin:          {_fmt(scan.origin, 6)} mm (LPS)",
        f"orientation:     {scan.orientation}",
        f"intensity range: {lo:g} .. {hi:g}{unit}",
    ]
    if facts["windows"]:
        presets = ", ".join(f"W{w['width']:g}/L{w['level']:g}" for w in facts["windows"])
        lines.append(f"window presets:  {presets}")
    if scan.meta.get("series_description"):
        lines.append(f"series:          {scan.meta['series_description']}")
    suggestion = facts["suggested_region"]
    if suggestion is None:
        lines.append("suggested region: n/a (no region classifier)")
    elif suggestion.get("region") is None:
        lines.append(f"suggested region: n/a ({suggestion.get('error', 'no answer')})")
    else:
        details = [f"{suggestion['confidence']:.0%}"] if suggestion.get("confidence") is not None else []
        details += [suggestion["method"]] if suggestion.get("method") else []
        lines.append(
            f"suggested region: {suggestion['region']}" + (f" ({', '.join(details)})" if details else "")
        )
        if suggestion.get("fallback"):
            lines.append(f"                  {suggestion['fallback']} fallback: the region suggester failed "
                         f"({suggestion.get('error', 'no reason given')})")
    print("\n".join(lines))
    return 0
