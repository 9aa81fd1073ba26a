"""``lorkd phantoms``: write a procedural CT phantom dataset with its manifest."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter


def register(subparsers: argparse._SubParsersAction) -> None:
    from lorkd_core.data.phantom_regions import REGIONS

    p = subparsers.add_parser(
        "phantoms",
        help="write procedural CT phantoms of the body regions with a manifest",
        description="Write <out>/cases/<region>_<nnn>/{ct,seg,finding}.nii.gz, <out>/manifest.jsonl and "
                    "<out>/dataset.json. Deterministic for a seed.",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--cases-per-region", type=int, default=10, metavar="N")
    p.add_argument("--regions", nargs="+", choices=REGIONS, metavar="REGION",
                   help=f"regions to generate (default: all of {', '.join(REGIONS)})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=96, help="voxels along each axis (default 96)")
    p.add_argument("--no-findings", action="store_true", help="no lesions; 'finding' is null in the manifest")
    p.add_argument("--realism", type=int, choices=(1, 2), default=1,
                   help="1: the original phantoms (default); 2: closer to real CT (larger spleen, more stomach "
                        "gas, fattier back muscle, less dense bone, arms apart from the trunk, more noise)")
    p.add_argument("--workers", type=int, default=1, help="processes to generate with (default 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lorkd_core.data.phantoms import write_phantom_dataset
    from lorkd_core.errors import ConfigError
    from lorkd_core.progress import Progress

    if args.size < 16:
        raise ConfigError(f"--size must be at least 16, got {args.size}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")

    def show(pr: Progress) -> None:
        print(f"\r  {pr.step}/{pr.total} {pr.message:<16}", end="", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    manifest = write_phantom_dataset(args.out, args.cases_per_region, args.regions, seed=args.seed, size=args.size,
                                     findings=not args.no_findings, workers=max(1, args.workers), progress=show,
                                     realism=args.realism)
    seconds = time.perf_counter() - t0
    print("", file=sys.stderr)
    import json

    items = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    per_region = Counter(it["region"] for it in items)
    splits = Counter((it["region"], it["split"]) for it in items)
    print(f"wrote {len(items)} cases to {manifest.parent} in {seconds:.1f} s ({seconds / max(1, len(items)):.2f} s/case)")
    for region, n in per_region.items():
        parts = ", ".join(f"{s} {splits[(region, s)]}" for s in ("train", "val", "test") if splits[(region, s)])
        print(f"  {region:<11} {n:>4} cases ({parts})")
    print(f"manifest: {manifest}")
    return 0
