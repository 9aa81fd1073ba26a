"""``lorkd adapt``: fine-tune one region's expert of an experts model on a small dataset (a new version).

Runs in one process, or under ``torchrun --nproc_per_node N -m lorkd_core adapt ...`` with DDP; the same
flags, ``--progress-json`` protocol and ``--cancel-file`` as ``lorkd decompose``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lorkd_core.commands._training import COMMON_FIELDS, add_common_arguments, build_config, run_job
from lorkd_core.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("adapt", help="fine-tune one region's expert on a small dataset (a new version)",
                              description=__doc__)
    add_common_arguments(p)
    p.add_argument("--experts", help="the experts model to start from (a decomposition output or its experts/)")
    p.add_argument("--region", help="the region whose expert is adapted")
    p.add_argument("--teacher", help="optional teacher for distillation (with --lam > 0)")
    p.add_argument("--lam", type=float, help="distillation weight (0 = none)")
    p.add_argument("--tau", type=float, help="distillation temperature")
    p.add_argument("--freeze-head", action="store_false", dest="train_head", default=None,
                   help="keep the region's head (the dataset must have the expert's labels)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lorkd_core.engine.adapt import adapt
    from lorkd_core.engine.config import AdaptConfig

    cfg = build_config(AdaptConfig, args, (*COMMON_FIELDS, "experts", "region", "teacher", "lam", "tau",
                                           "train_head"))
    if not cfg.experts or not cfg.region:
        raise ConfigError("--experts and --region are required (or set them in the --config file)")

    def work(progress, cancel, ctx):
        r = adapt(cfg, progress, cancel, resume=args.resume, ctx=ctx)
        return {"out": str(r.out), "experts": str(Path(r.out) / "experts"), "steps": r.steps,
                "seconds": r.seconds, "losses": r.losses}

    return run_job(args, "adapt", cfg, work)

