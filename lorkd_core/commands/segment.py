"""``lorkd segment --input SCAN --region R --output OUT.nii.gz``: label map on the input grid + sidecar JSON."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from lorkd_core.errors import ConfigError
from lorkd_core.progress import Progress


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("segment", help="segment a scan with a region expert (default: the bundled demo models)",
                              description="Segment the structures of one region; writes the label map on the "
                                          "input's grid plus its sidecar JSON and prints volumes in mL.")
    add_model_arguments(p)
    p.add_argument("--output", "-o", required=True, help="label map to write (.nii.gz); OUT.json is written beside it")
    p.set_defaults(func=run)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``segment`` and ``classify``."""
    p.add_argument("--input", "-i", required=True, help="scan: NIfTI/NRRD/MHA file, DICOM file or series folder")
    p.add_argument("--region", "-r", required=True,
                   help="region (abdomen, brain, head_neck, lower_limb, pelvis, spine, thorax, upper_limb) or 'auto'")
    p.add_argument("--model", "-m", help="model folder (default: the bundled demo model for the region)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")
    p.add_argument("--modality", help="modality to assume when the file does not say (CT, MR)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")


def resolve_region(region: str, scan) -> str:
    """A region name from the command line; ``auto`` asks the region suggester."""
    from lorkd_core.engine.model_card import REGION_ORDER

    if region == "auto":
        from lorkd_core.engine.region_suggest import suggest_region

        return suggest_region(scan).region
    if region not in REGION_ORDER:
        raise ConfigError(f"unknown region '{region}'; choose one of {', '.join(REGION_ORDER)} or auto")
    return region


def progress_printer(quiet: bool) -> Callable[[Progress], None] | None:
    """A one-line progress display on stderr (only on a terminal)."""
    if quiet or not sys.stderr.isatty():
        return None

    def show(p: Progress) -> None:
        end = "\n" if p.total and p.step >= p.total else ""
        sys.stderr.write(f"\r{100 * p.fraction:5.1f}%  {p.message[:60]:<60}{end}")
        sys.stderr.flush()

    return show


def run(args: argparse.Namespace) -> int:
    from lorkd_core.engine.catalog import find_entry
    from lorkd_core.engine.inference import Predictor
    from lorkd_core.io import load_scan, save_label_map

    predictor = Predictor(args.device)  # a bad --device fails before a large scan is read
    scan = load_scan(args.input, modality=args.modality)
    region = resolve_region(args.region, scan)
    entry = find_entry(region, "segmentation", args.model)
    result = predictor.segment(scan, entry, progress=progress_printer(args.quiet))
    out = save_label_map(Path(args.output), result.labels, scan, result.label_names, model=entry.id,
                         model_name=entry.display_name, region=region)
    print(f"{entry.display_name} on {Path(args.input).name}: {out}")
    volumes = result.volumes_ml()
    width = max((len(n) for n in volumes), default=9)
    print(f"{'structure':<{width}}  volume (mL)")
    for name, ml in volumes.items():
        print(f"{name:<{width}}  {ml:11.1f}")
    return 0
