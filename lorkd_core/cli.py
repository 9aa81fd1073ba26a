"""The ``lorkd`` command line. Each subcommand lives in ``lorkd_core/commands/<name>.py`` and
exposes ``register(subparsers)``; the command function returns an exit code.

User errors (:class:`lorkd_core.errors.LorkdError`) print as one line on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lorkd_core.errors import LorkdError

# Order is the order shown in ``lorkd --help``. A module that is not written yet is skipped.
COMMAND_MODULES = (
    "info",
    "phantoms",
    "train_foundation",
    "decompose",
    "adapt",
    "evaluate",
    "export",
    "segment",
    "classify",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lorkd", description="LoRKD: low-rank region experts for medical imaging")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"lorkd_core.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"lorkd_core.commands.{name}":
                continue
            raise
        module.register(sub)
    return parser


def _version() -> str:
    from lorkd_core import __version__

    return f"lorkd {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except LorkdError as exc:
        print(f"lorkd {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"lorkd {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
