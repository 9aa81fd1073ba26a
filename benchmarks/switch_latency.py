"""Expert switch latency: what the app's backend does when the user picks another region expert.

    python benchmarks/switch_latency.py                 # CPU, bundled models
    python benchmarks/switch_latency.py --device cuda   # GPU (torch.cuda.synchronize around every timing)

The app (app/services/backend.py, ``Backend._predict``) keeps one ``lorkd_core.engine.inference.Predictor``
per device and calls ``Predictor.segment(scan, entry)``, which starts with ``Predictor.prepare(entry)``. This
benchmark times that ``prepare`` call on the Qt-free layer, for the bundled experts model
(resources/models/experts: shared backbone + rank-4/8 experts of eight regions + per-region heads):

  cold          ``prepare`` on a fresh Predictor: read card + safetensors, build the network with its expert
                layers (``model_io.load_model``), merge the region (``region_module`` ->
                ``export.standalone_expert`` -> ``experts.merged_expert``: a deep copy with W0 + B_t A_t, one
                head), move it to the device
  first switch  ``prepare`` of another region of the same, already loaded model: the merge + copy + move only
  cached switch ``prepare`` of a region prepared before: the (model, region) cache lookup (what "switching back is
                instant" means)

Beside them, the parts of a cold switch timed one by one (``load_model``, ``region_module``, ``.to(device)``),
the teacher's cold and cached ``prepare`` (a teacher region is a channel view, no merge), and the in-place
alternative of lorkd_core/experts/merge.py (``merge(model, region)``: unmerge the previous region and add
dW into W0 of the loaded model, no copy), which the Predictor does not use.

Each round uses a fresh Predictor and starts from a different region, so every region is the cold one once
per eight rounds. The first round of the process also pays lazy imports; it is reported apart and left out of
the medians. Memory: parameter bytes of one cached region module, and the resident-size growth of the
process while all eight regions are cached (CPU), or the allocated GPU memory (CUDA).
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import _bench  # noqa: E402


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _bench.add_common_arguments(p)
    p.add_argument("--rounds", type=int, default=None, help="fresh Predictors (default 8, quick 2)")
    p.add_argument("--cached-calls", type=int, default=None, help="cached prepare calls per region (default 200)")
    p.add_argument("--models", default=None, help="folder with experts/ and teacher/ (default: the bundled models)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    _bench.quick_defaults(args, {"rounds": (8, 2), "cached_calls": (200, 20)})
    return args


def _entries(models: str | None):
    from lorkd_core.engine.catalog import list_models
    from lorkd_core.engine.model_card import REGION_ORDER

    entries = list_models([models], include_bundled=False) if models else list_models()
    experts = {e.region: e for e in entries if e.card_kind == "experts" and e.task == "segmentation"}
    teachers = {e.region: e for e in entries if e.card_kind == "teacher" and e.task == "segmentation"}
    regions = [r for r in REGION_ORDER if r in experts]
    if not regions:
        raise SystemExit("no experts model found (kind 'experts' in the model folder's card.json)")
    return regions, experts, teachers


def _module_bytes(module) -> int:
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


def worker(args: argparse.Namespace) -> dict:
    import torch

    from lorkd_core.engine.inference import Predictor, region_module
    from lorkd_core.engine.model_io import load_model
    from lorkd_core.experts import merge, unmerge

    _bench.set_threads(args.threads)
    device = args.device
    regions, experts, teachers = _entries(args.models)
    timer = lambda: _bench.Timer(device)  # noqa: E731

    rounds = []
    for r in range(args.rounds + 1):  # round 0: the first in this process (lazy imports), reported apart
        order = regions[r % len(regions):] + regions[:r % len(regions)]
        predictor = Predictor(device)
        rec: dict = {"cold_region": order[0]}
        rss0 = _bench.current_rss_bytes()
        with timer() as t:
            predictor.prepare(experts[order[0]])
        rec["cold"] = t.seconds
        rss1 = _bench.current_rss_bytes()
        rec["first_switch"] = {}
        for region in order[1:]:
            with timer() as t:
                predictor.prepare(experts[region])
            rec["first_switch"][region] = t.seconds
        rss_all = _bench.current_rss_bytes()
        rec["cached_switch"] = {}
        for region in order:
            rec["cached_switch"][region] = _bench.median(_bench.time_calls(
                partial(predictor.prepare, experts[region]), args.cached_calls, device))
        if teachers:
            teacher = teachers.get(order[0]) or next(iter(teachers.values()))
            with timer() as t:
                predictor.prepare(teacher)
            rec["teacher_cold"] = t.seconds
            rec["teacher_cached"] = _bench.median(_bench.time_calls(
                partial(predictor.prepare, teacher), args.cached_calls, device))
        rec["cache_rss_growth_mb"] = (rss_all - rss1) / 2**20
        rec["cold_rss_growth_mb"] = (rss1 - rss0) / 2**20
        module = predictor.prepare(experts[order[0]])
        rec["region_module_mb"] = _module_bytes(module) / 2**20
        rec["region_module_params"] = sum(p.numel() for p in module.parameters())
        if device.startswith("cuda"):
            rec["gpu_allocated_mb"] = torch.cuda.memory_allocated() / 2**20
        predictor.clear_cache()
        del predictor, module

        # The parts of a cold switch, one by one (the same calls Predictor.prepare makes).
        entry = experts[order[0]]
        with timer() as t:
            model, card = load_model(entry.path, device="cpu")
        rec["part_load_model"] = t.seconds
        with timer() as t:
            mod = region_module(model, card, order[0])
        rec["part_region_module"] = t.seconds
        with timer() as t:
            mod = mod.to(device).eval()
        rec["part_to_device"] = t.seconds
        # The in-place alternative (lorkd_core.experts.merge), on the loaded model on the device.
        model = model.to(device)
        with timer() as t:
            merge(model, order[0])
        rec["inplace_first_merge"] = t.seconds
        swaps = []
        for region in order[1:]:
            with timer() as t:
                merge(model, region)  # unmerges the previous region first
            swaps.append(t.seconds)
        rec["inplace_switch"] = _bench.median(swaps)
        with timer() as t:
            unmerge(model)
        rec["inplace_unmerge"] = t.seconds
        del model, mod
        rounds.append(rec)
    return {"regions": regions, "rounds": rounds, "peak_rss_mb": _bench.peak_rss_bytes() / 2**20}


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.worker:
        import json

        print(json.dumps(worker(args)))
        return 0
    _bench.check_device(args.device)
    config = {"device": args.device, "threads": args.threads, "rounds": args.rounds,
              "cached_calls": args.cached_calls, "models": args.models or "bundled (resources/models)",
              "quick": args.quick}
    _bench.print_config(config)
    load_start = _bench.print_load("start")
    argv_w = ["--worker", "--device", args.device, "--threads", str(args.threads), "--rounds", str(args.rounds),
              "--cached-calls", str(args.cached_calls)] + (["--models", args.models] if args.models else [])
    t0 = time.perf_counter()
    data = _bench.run_worker(Path(__file__).resolve(), argv_w, threads=args.threads)
    wall = time.perf_counter() - t0
    load_end = _bench.print_load("end")

    first, rounds = data["rounds"][0], data["rounds"][1:]
    med = _bench.median
    cold = [r["cold"] for r in rounds]
    first_sw = [s for r in rounds for s in r["first_switch"].values()]
    cached = [s for r in rounds for s in r["cached_switch"].values()]
    results = {
        "cold": med(cold),
        "first_switch": med(first_sw),
        "cached_switch": med(cached),
        "part_load_model": med(r["part_load_model"] for r in rounds),
        "part_region_module": med(r["part_region_module"] for r in rounds),
        "part_to_device": med(r["part_to_device"] for r in rounds),
        "inplace_first_merge": med(r["inplace_first_merge"] for r in rounds),
        "inplace_switch": med(r["inplace_switch"] for r in rounds),
        "inplace_unmerge": med(r["inplace_unmerge"] for r in rounds),
        "first_round_cold": first["cold"],
        "first_round_first_switch": med(first["first_switch"].values()),
    }
    if "teacher_cold" in first:
        results["teacher_cold"] = med(r["teacher_cold"] for r in rounds)
        results["teacher_cached"] = med(r["teacher_cached"] for r in rounds)
    per_region = {reg: {"first_switch": med(r["first_switch"][reg] for r in rounds if reg in r["first_switch"]),
                        "cached_switch": med(r["cached_switch"][reg] for r in rounds)}
                  for reg in data["regions"]}
    memory = {"region_module_mb": round(rounds[0]["region_module_mb"], 2),
              "region_module_params": rounds[0]["region_module_params"],
              "cache_rss_growth_mb_7_regions": round(med(r["cache_rss_growth_mb"] for r in rounds), 1),
              "cold_rss_growth_mb": round(med(r["cold_rss_growth_mb"] for r in rounds), 1)}
    if "gpu_allocated_mb" in rounds[0]:
        memory["gpu_allocated_mb_8_regions_cached"] = round(rounds[0]["gpu_allocated_mb"], 1)
    ratios = {
        "first_switch/cached_switch": results["first_switch"] / results["cached_switch"],
        "cold/cached_switch": results["cold"] / results["cached_switch"],
        "cold/first_switch": results["cold"] / results["first_switch"],
        "first_switch/inplace_switch": results["first_switch"] / results["inplace_switch"],
        "first_switch_per_round/cached (paired)": _bench.paired_ratio(
            [med(r["first_switch"].values()) for r in rounds], [med(r["cached_switch"].values()) for r in rounds]),
    }

    ms = lambda s: f"{1000 * s:.3f}"  # noqa: E731
    print()
    print(f"Predictor.prepare on {args.device}, bundled experts model ({len(data['regions'])} regions), "
          f"{len(rounds)} rounds (+1 warm-up round apart)")
    rows = [
        ("cold (fresh Predictor: load_model + merge + to device)", ms(results["cold"]),
         f"{results['cold'] / results['cached_switch']:.0f}"),
        ("  part: load_model (card + safetensors + build + experts)", ms(results["part_load_model"]), ""),
        ("  part: region_module (merged_expert deep copy + head)", ms(results["part_region_module"]), ""),
        ("  part: .to(device).eval()", ms(results["part_to_device"]), ""),
        ("first switch to a region (model loaded: merge + copy + move)", ms(results["first_switch"]),
         f"{results['first_switch'] / results['cached_switch']:.0f}"),
        ("cached switch (back to a prepared region: cache lookup)", ms(results["cached_switch"]), "1"),
    ]
    if "teacher_cold" in results:
        rows += [("teacher cold (load, channel view, no merge)", ms(results["teacher_cold"]),
                  f"{results['teacher_cold'] / results['cached_switch']:.0f}"),
                 ("teacher cached", ms(results["teacher_cached"]),
                  f"{results['teacher_cached'] / results['cached_switch']:.1f}")]
    rows += [
        ("in-place merge(model, region), not used by the app: first", ms(results["inplace_first_merge"]), ""),
        ("in-place switch (unmerge previous + merge)", ms(results["inplace_switch"]),
         f"{results['inplace_switch'] / results['cached_switch']:.0f}"),
        ("first round of the process: cold (lazy imports)", ms(results["first_round_cold"]), ""),
        ("first round of the process: first switch", ms(results["first_round_first_switch"]), ""),
    ]
    print(_bench.fmt_table(["what prepare() does", "median ms", "x cached"], rows))
    print()
    print(f"first switch / cached switch: {ratios['first_switch/cached_switch']:.0f}x "
          f"(paired per round: {ratios['first_switch_per_round/cached (paired)']:.0f}x); "
          f"cold / first switch: {ratios['cold/first_switch']:.2f}x; "
          f"first switch / in-place switch: {ratios['first_switch/inplace_switch']:.2f}x")
    print(f"memory: one cached region module {memory['region_module_mb']:.2f} MB "
          f"({memory['region_module_params']:,} parameters); RSS growth while 7 more regions are cached "
          f"{memory['cache_rss_growth_mb_7_regions']:.1f} MB"
          + (f"; GPU allocated with 8 cached {memory['gpu_allocated_mb_8_regions_cached']:.1f} MB"
             if "gpu_allocated_mb_8_regions_cached" in memory else ""))
    print("per region (median ms first / cached): " + ", ".join(
        f"{k} {ms(v['first_switch'])}/{ms(v['cached_switch'])}" for k, v in per_region.items()))

    _bench.report("switch_latency", args, config, load_start, load_end, results_s=_bench.rounded(results, 6),
                  per_region_s={k: _bench.rounded(v, 6) for k, v in per_region.items()}, memory=memory,
                  ratios=_bench.rounded(ratios, 2), wall_s=round(wall, 1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
