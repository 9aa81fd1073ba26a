#!/usr/bin/env python
"""Adapt a bundled region expert to realism-2 phantoms (closer to real CT) and bundle it as version 2.

    python scripts/adapt_bundled_expert.py --out /tmp/abdomen_v2                     # train + bundle
    python scripts/adapt_bundled_expert.py --out /tmp/abdomen_v2 --install           # and copy into resources/

Stages (each skipped when done; the adapt job resumes from its checkpoint): ``OUT/phantoms`` (``lorkd
phantoms --realism 2`` for the region), ``OUT/adapt`` (``lorkd adapt``: the region's low-rank experts and
head train, the shared backbone and the other regions stay frozen), ``OUT/bundle/experts`` (float16 copy
with a card that names its parent and data relative to the bundle). ``--install`` copies the bundle to
``resources/models/<region>_v2/experts``. On the 2-core development machine the abdomen run (600 steps of
4 patches of 64³) took 23 minutes (46 beside another training job) and reproduced the bundled weights
bit for bit.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "resources" / "models"
SETTINGS = {"cases": 40, "phantom_seed": 7, "steps": 600, "batch_size": 4, "lr": 1e-3, "seed": 0,
            "patch_size": [64, 64, 64], "spacing": [4.0, 4.0, 4.0], "crop_sampling": "class"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="work folder")
    parser.add_argument("--region", default="abdomen")
    parser.add_argument("--experts", default=str(BUNDLED / "experts"), help="the experts model to adapt")
    parser.add_argument("--steps", type=int, default=SETTINGS["steps"])
    parser.add_argument("--install", action="store_true", help="copy the bundle into resources/models/")
    args = parser.parse_args(argv)

    out = Path(args.out)
    s = {**SETTINGS, "steps": args.steps}
    start = time.perf_counter()
    manifest = _phantoms(out / "phantoms", args.region, s)
    _adapt(out / "adapt", manifest, args.experts, args.region, s)
    bundle = _bundle(out / "adapt" / "experts", out / "bundle" / "experts", args.region, s)
    print(f"done in {time.perf_counter() - start:.0f} s: {bundle}")
    if args.install:
        target = BUNDLED / f"{args.region}_v2" / "experts"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(bundle, target)
        print(f"installed {target}")
    return 0


def _phantoms(folder: Path, region: str, s: dict) -> Path:
    from lorkd_core.data.phantoms import write_phantom_dataset

    manifest = folder / "manifest.jsonl"
    if not manifest.is_file():
        write_phantom_dataset(folder, cases_per_region=s["cases"], regions=[region], seed=s["phantom_seed"],
                              realism=2, workers=2)
    return manifest


def _adapt(folder: Path, manifest: Path, experts: str, region: str, s: dict) -> None:
    from lorkd_core.engine.adapt import adapt
    from lorkd_core.engine.config import AdaptConfig

    cfg = AdaptConfig(data=str(manifest), out=str(folder), experts=experts, region=region, steps=s["steps"],
                      batch_size=s["batch_size"], lr=s["lr"], seed=s["seed"], patch_size=tuple(s["patch_size"]),
                      spacing=tuple(s["spacing"]), crop_sampling=s["crop_sampling"], device="cpu")
    result = adapt(cfg, _printer(), resume=True)
    print(f"adapt: {result.steps} steps in {result.seconds:.0f} s")


def _bundle(src: Path, dst: Path, region: str, s: dict) -> Path:
    """float16 copy whose card says what it is without paths of the machine it was trained on."""
    import torch

    from lorkd_core.engine.model_io import load_model, save_model_folder

    model, card = load_model(src)
    card.extra["weights_dtype"] = "float16"
    card.extra.pop("weights_sha256", None)
    card.extra["parent"] = "resources/models/experts"  # the decomposition's experts it was adapted from
    card.extra["display_name"] = "adapted to realism-2 phantoms"
    training = dict(card.training)
    training["data"] = (f"lorkd phantoms --realism 2 --regions {region} --cases-per-region {s['cases']} "
                        f"--seed {s['phantom_seed']} (scripts/adapt_bundled_expert.py)")
    config = dict(training.get("config", {}))
    for key in ("data", "out", "experts"):
        config.pop(key, None)
    training["config"] = config
    card.training = training
    if dst.exists():
        shutil.rmtree(dst)
    save_model_folder(dst, model, card, dtype=torch.float16)
    load_model(dst)  # proves the float16 folder loads back
    return dst


def _printer(every: int = 25):
    def show(p) -> None:
        if p.step and (p.step % every == 0 or p.step == p.total) and "loss" in p.metrics:
            print(f"   [adapt] {p.step}/{p.total} loss {p.metrics['loss']:.4f}", flush=True)
    return show


if __name__ == "__main__":
    sys.exit(main())
