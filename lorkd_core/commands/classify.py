"""``lorkd classify --input SCAN --region R``: class probabilities of a region classifier."""

from __future__ import annotations

import argparse
from pathlib import Path

from lorkd_core.commands.segment import add_model_arguments, progress_printer, resolve_region


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("classify", help="classify a scan with a region classifier (default: bundled demo)",
                              description="Print the class probabilities of a region's classifier for a scan.")
    add_model_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lorkd_core.engine.catalog import find_entry
    from lorkd_core.engine.inference import Predictor
    from lorkd_core.io import load_scan

    predictor = Predictor(args.device)  # a bad --device fails before a large scan is read
    scan = load_scan(args.input, modality=args.modality)
    region = resolve_region(args.region, scan)
    entry = find_entry(region, "classification", args.model)
    result = predictor.classify(scan, entry, progress=progress_printer(args.quiet), saliency=False)
    print(f"{entry.display_name} on {Path(args.input).name}:")
    width = max((len(n) for n in result.probabilities), default=5)
    for name, p in sorted(result.probabilities.items(), key=lambda kv: -kv[1]):
        print(f"{name:<{width}}  {p:.3f}")
    return 0
