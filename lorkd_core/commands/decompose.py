"""``lorkd decompose``: LoRKD, a teacher into a student backbone with low-rank region experts.

Runs in one process, or under ``torchrun --nproc_per_node N -m lorkd_core decompose ...`` with DDP.
"""

from __future__ import annotations

import argparse

from lorkd_core.commands._training import COMMON_FIELDS, add_common_arguments, build_config, run_job
from lorkd_core.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("decompose", help="decompose a teacher into region experts (LoRKD)",
                              description=__doc__)
    add_common_arguments(p)
    p.add_argument("--teacher", help="teacher: model folder, MONAI bundle folder, TorchScript or .safetensors file")
    p.add_argument("--teacher-spec", dest="teacher_spec", help="network spec + labels JSON (TorchScript/safetensors)")
    p.add_argument("--ranks", help="expert rank: N, 'proportional', or region=N,region=N")
    p.add_argument("--rank", type=int, help="mean rank for --ranks proportional")
    p.add_argument("--lam", type=float, help="distillation weight")
    p.add_argument("--tau", type=float, help="distillation temperature")
    p.add_argument("--feature-channels", type=int, dest="feature_channels")
    p.add_argument("--no-baseline", action="store_false", dest="baseline", default=None,
                   help="skip the no-expert baseline student")
    p.add_argument("--baseline-steps", type=int, dest="baseline_steps")
    p.set_defaults(func=run)


def parse_ranks(text: str | None) -> int | str | dict[str, int] | None:
    """``4`` | ``proportional`` | ``abdomen=4,thorax=2``."""
    if text is None:
        return None
    if text == "proportional":
        return text
    if text.isdigit():
        return int(text)
    try:
        return {k.strip(): int(v) for k, v in (part.split("=") for part in text.split(","))}
    except ValueError:
        raise ConfigError(f"--ranks must be N, 'proportional' or region=N,...; found {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from lorkd_core.engine.config import DecomposeConfig
    from lorkd_core.engine.train import decompose

    fields = (*COMMON_FIELDS, "teacher", "teacher_spec", "rank", "lam", "tau", "feature_channels", "baseline",
              "baseline_steps")
    cfg = build_config(DecomposeConfig, args, fields)
    ranks = parse_ranks(args.ranks)
    if ranks is not None:
        cfg = cfg.replace(ranks=ranks)
    if not cfg.teacher:
        raise ConfigError("--teacher is required (or set 'teacher' in the --config file)")

    def work(progress, cancel, ctx):
        r = decompose(cfg, progress, cancel, resume=args.resume, ctx=ctx)
        return {"out": str(r.out), "experts": str(r.experts), "baseline": str(r.baseline) if r.baseline else None,
                "teacher": str(r.teacher) if r.teacher else None, "steps": r.steps, "seconds": r.seconds,
                "losses": r.losses, "parameters": r.parameters}

    return run_job(args, "decompose", cfg, work)
