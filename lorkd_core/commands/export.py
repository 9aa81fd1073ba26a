"""``lorkd export --models DIR --region R --out DIR``: a standalone region expert (no expert classes)."""

from __future__ import annotations

import argparse

from lorkd_core.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="write one region's merged expert as a standalone model folder",
                              description="Merge the region's expert into the backbone and keep that region's "
                                          "head: a plain network (safetensors + card) that needs no expert code.")
    p.add_argument("--models", required=True, help="decomposition output folder or experts model folder")
    p.add_argument("--region", "-r", required=True, help="region to export")
    p.add_argument("--out", "-o", required=True, help="output model folder")
    p.add_argument("--half", action="store_true", help="store float16 weights (half the size)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lorkd_core.engine.export import export_expert
    from lorkd_core.engine.model_card import REGION_ORDER

    if args.region not in REGION_ORDER:
        raise ConfigError(f"unknown region '{args.region}'; choose one of {', '.join(REGION_ORDER)}")
    result = export_expert(args.models, args.region, args.out, half=args.half)
    print(f"exported the {args.region} expert to {result.path}: {result.parameters:,} parameters, "
          f"{result.file_bytes / 1e6:.2f} MB")
    return 0
