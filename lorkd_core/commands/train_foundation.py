"""``lorkd train-foundation``: train the teacher (one network, all regions, union label space)."""

from __future__ import annotations

import argparse
import json

from lorkd_core.commands._training import COMMON_FIELDS, add_common_arguments, build_config, run_job


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train-foundation", help="train the teacher (foundation model) on all regions",
                              description=__doc__)
    add_common_arguments(p)
    p.add_argument("--network", help='network spec JSON, e.g. \'{"name": "monai.UNet", "kwargs": {...}}\'')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lorkd_core.engine.config import FoundationConfig
    from lorkd_core.engine.train import train_foundation

    cfg = build_config(FoundationConfig, args, COMMON_FIELDS)
    if args.network:
        cfg = cfg.replace(network=json.loads(args.network))

    def work(progress, cancel, ctx):
        result = train_foundation(cfg, progress, cancel, resume=args.resume, ctx=ctx)
        return {"out": str(result.out), "steps": result.steps, "seconds": result.seconds, "losses": result.losses}

    return run_job(args, "train-foundation", cfg, work)
