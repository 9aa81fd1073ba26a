#!/usr/bin/env python
"""Train the bundled region-suggestion classifier on a phantom manifest and print its held-out accuracy.

    python scripts/train_region_suggester.py demo_models/phantoms/manifest.jsonl   # writes resources/region_suggest/
"""

from __future__ import annotations

import argparse
import sys
import time

from lorkd_core.engine.region_suggest import train_region_classifier


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest")
    parser.add_argument("--out", default=None, help="folder (default: the bundled resources/region_suggest)")
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    path, accuracy = train_region_classifier(args.manifest, args.out, steps=args.steps)
    print(f"wrote {path} in {time.perf_counter() - start:.0f} s")
    print(f"held-out accuracy: {accuracy}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
