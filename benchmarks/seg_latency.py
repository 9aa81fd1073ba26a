"""Segmentation latency and peak memory, teacher vs region expert, on synthetic CT volumes.

    python benchmarks/seg_latency.py                    # CPU: 128^3 and 256^3 voxels
    python benchmarks/seg_latency.py --device cuda      # GPU (peak = torch.cuda.max_memory_allocated)

Inputs: an abdomen phantom (``lorkd_core.data.phantoms.generate_case``) per size, ``--spacing`` mm isotropic
(default 1.5 mm: 128^3 covers 192 mm, 256^3 covers 384 mm), written as an int16 NIfTI and read back with
``lorkd_core.io.load_scan``. Models: the bundled teacher (resources/models/teacher) and the bundled abdomen
expert (resources/models/experts, merged for the region), both run by
``lorkd_core.engine.inference.Predictor.segment`` exactly as ``lorkd segment`` does: canonical orientation +
resampling to the model's spacing (the bundled models: 4 mm), intensity normalisation, sliding-window
inference with the model's patch, labels mapped back to the input grid. The table gives the input size and
the network grid it was resampled to.

Time: one fresh process reads the scans, runs every model once (that call also loads and merges the model;
reported as "first call"), then ``--reps`` rounds in which each model segments each scan once, in a shuffled
order; the teacher/expert ratio is the median over rounds of the paired ratio. Memory: every (model, size) runs
in its own fresh process; CPU: peak RSS (VmHWM, reset once torch and lorkd_core are imported) minus the RSS at
that point (so it counts reading the scan, the resampled volume, the model and the inference buffers); CUDA:
max_memory_allocated.
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

MODELS = ("teacher", "expert", "baseline")


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _bench.add_common_arguments(p)
    p.add_argument("--sizes", default=None, help="cubic input edges in voxels (default 128,256; quick 64)")
    p.add_argument("--spacing", type=float, default=1.5, help="input voxel size in mm (isotropic)")
    p.add_argument("--region", default="abdomen")
    p.add_argument("--models", default="teacher,expert", help=f"any of {','.join(MODELS)}")
    p.add_argument("--reps", type=int, default=None, help="timed rounds (default 5, quick 1)")
    p.add_argument("--workdir", default=None, help="keep the generated scans here (default: a temp folder)")
    p.add_argument("--worker", choices=["time", "memory"], help=argparse.SUPPRESS)
    p.add_argument("--scans", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    _bench.quick_defaults(args, {"sizes": ("128,256", "64"), "reps": (5, 1)})
    return args


def _entry(kind: str, region: str):
    from lorkd_core.engine.catalog import list_models

    card_kind = {"teacher": "teacher", "expert": "experts", "baseline": "baseline"}[kind]
    found = [e for e in list_models() if e.region == region and e.card_kind == card_kind
             and e.task == "segmentation" and e.bundled]
    if not found:
        raise SystemExit(f"no bundled {kind} model for region {region}")
    return found[0]


def write_scan(folder: Path, size: int, spacing: float, region: str) -> tuple[Path, float]:
    import numpy as np
    import SimpleITK as sitk

    from lorkd_core.data.phantoms import generate_case

    path = folder / f"ct_{size}.nii"
    if path.is_file():
        return path, 0.0
    t0 = time.perf_counter()
    case = generate_case(region, 0, shape=size, spacing=(spacing, spacing, spacing), findings=False)
    img = sitk.GetImageFromArray(np.clip(np.rint(case.image), -1024, 3071).astype(np.int16))
    img.SetSpacing(case.spacing)
    img.SetOrigin(case.origin)
    img.SetDirection(case.direction)
    sitk.WriteImage(img, str(path))
    return path, time.perf_counter() - t0


# ---------------------------------------------------------------- workers (fresh processes)


def worker_memory(args: argparse.Namespace) -> dict:
    import torch  # noqa: F401  (imported before the baseline RSS is taken)

    from lorkd_core.engine.inference import Predictor
    from lorkd_core.io import load_scan

    _bench.set_threads(args.threads)
    kind = args.models
    entry = _entry(kind, args.region)
    predictor = Predictor(args.device)
    with _bench.PeakMemory(args.device) as mem:
        scan = load_scan(args.scans)
        result = predictor.segment(scan, entry)
    return {"model": kind, "scan": args.scans, "labels_shape": list(result.labels.shape), **mem.result}


def worker_time(args: argparse.Namespace) -> dict:
    from lorkd_core.engine.inference import Predictor, Preprocessing, _count_windows, prepare_scan
    from lorkd_core.io import load_scan

    _bench.set_threads(args.threads)
    kinds = [m for m in args.models.split(",") if m]
    entries = {k: _entry(k, args.region) for k in kinds}
    predictor = Predictor(args.device)
    out: dict = {}
    for path in args.scans.split(","):
        rec: dict = {"path": path}
        with _bench.Timer() as t:
            scan = load_scan(path)
        rec["read_s"] = t.seconds
        rec["input_shape_zyx"] = list(scan.array.shape)
        rec["input_spacing_xyz"] = list(scan.spacing)
        grids = {}
        prepare_scan(scan, Preprocessing.of(next(iter(entries.values())).card))  # warm-up (lazy imports)
        for k, e in entries.items():
            pre = Preprocessing.of(e.card)
            with _bench.Timer() as t:
                array, _ = prepare_scan(scan, pre)
            grids[k] = {"network_grid_zyx": list(array.shape), "model_spacing_xyz": list(pre.spacing),
                        "patch": list(pre.patch_size),
                        "windows": _count_windows(tuple(array.shape), tuple(pre.patch_size), predictor.overlap),
                        "prepare_scan_s": t.seconds}
        rec["grids"] = grids
        first = {}
        for k, e in entries.items():  # first call: load + merge + segment
            with _bench.Timer(args.device) as t:
                predictor.segment(scan, e)
            first[k] = t.seconds
        rec["first_call_s"] = first
        segment = {k: partial(predictor.segment, scan, e) for k, e in entries.items()}
        times, cpu = _bench.interleaved_rounds(segment, args.reps, args.device)
        del segment
        rec["times_s"] = times
        rec["cpu_s"] = cpu
        out[Path(path).name] = rec
        del scan
    return out


# ---------------------------------------------------------------- parent


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.worker:
        import json

        print(json.dumps(worker_memory(args) if args.worker == "memory" else worker_time(args)))
        return 0
    _bench.check_device(args.device)
    kinds = [m.strip() for m in args.models.split(",") if m.strip()]
    if set(kinds) - set(MODELS):
        raise SystemExit(f"unknown models {sorted(set(kinds) - set(MODELS))}; choose from {MODELS}")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    config = {"device": args.device, "threads": args.threads, "sizes": sizes, "spacing_mm": args.spacing,
              "region": args.region, "models": kinds, "reps": args.reps, "quick": args.quick}
    _bench.print_config(config)
    load_start = _bench.print_load("start")

    with _bench.work_folder(args.workdir, "lorkd-seg-bench-") as folder:
        scans = {}
        for size in sizes:
            path, secs = write_scan(folder, size, args.spacing, args.region)
            scans[size] = path
            print(f"  input {size}^3 at {args.spacing} mm: {path.name}" + (f" (generated in {secs:.1f} s)" if secs else ""),
                  flush=True)
        common = ["--device", args.device, "--threads", str(args.threads), "--region", args.region,
                  "--spacing", str(args.spacing)]
        memory: dict[int, dict[str, dict]] = {}
        for size in sizes:
            memory[size] = {}
            for k in kinds:
                memory[size][k] = _bench.run_worker(Path(__file__).resolve(), ["--worker", "memory", "--models", k,
                                                    "--scans", str(scans[size]), *common], threads=args.threads)
                print(f"  peak memory {k:<8} {size}^3: {memory[size][k]['peak_mb']:.0f} MB", flush=True)
        timing = _bench.run_worker(Path(__file__).resolve(), ["--worker", "time", "--models", ",".join(kinds),
                                   "--reps", str(args.reps), "--scans", ",".join(str(scans[s]) for s in sizes),
                                   *common], threads=args.threads)
    load_end = _bench.print_load("end")

    mem_label = "peak GPU MB" if args.device.startswith("cuda") else "peak RSS MB"
    results = []
    rows = []
    ratios = {}
    for size in sizes:
        rec = timing[scans[size].name]
        for k in kinds:
            g = rec["grids"][k]
            med = _bench.median(rec["times_s"][k])
            row = {"size": size, "model": k, "input_zyx": rec["input_shape_zyx"],
                   "input_spacing_mm": rec["input_spacing_xyz"], "network_grid_zyx": g["network_grid_zyx"],
                   "model_spacing_mm": g["model_spacing_xyz"], "patch": g["patch"], "windows": g["windows"],
                   "median_s": round(med, 4), "min_s": round(min(rec["times_s"][k]), 4),
                   "cpu_s": round(_bench.median(rec["cpu_s"][k]), 4),
                   "first_call_s": round(rec["first_call_s"][k], 4), "prepare_scan_s": round(g["prepare_scan_s"], 4),
                   "read_s": round(rec["read_s"], 4), "peak_mb": memory[size][k]["peak_mb"],
                   "memory": memory[size][k], "times_s": [round(t, 4) for t in rec["times_s"][k]]}
            results.append(row)
            rows.append([f"{k} {size}^3", "x".join(map(str, row["input_zyx"])),
                         "x".join(map(str, row["network_grid_zyx"])), row["windows"], f"{med:.3f}",
                         f"{row['min_s']:.3f}", f"{row['cpu_s']:.3f}", f"{row['first_call_s']:.3f}",
                         f"{row['prepare_scan_s']:.3f}",
                         f"{row['peak_mb']:.0f}"])
        if "teacher" in kinds:
            for other in [k for k in kinds if k != "teacher"]:
                t, o = rec["times_s"]["teacher"], rec["times_s"][other]
                ratios[f"{size}: teacher/{other} time"] = _bench.paired_ratio(t, o)
                ratios[f"{size}: teacher/{other} time (ratio of minima)"] = min(t) / min(o)
                ratios[f"{size}: teacher/{other} cpu time"] = _bench.paired_ratio(rec["cpu_s"]["teacher"],
                                                                                    rec["cpu_s"][other])
                mo = memory[size][other]["peak_mb"]
                if mo > 0:
                    ratios[f"{size}: teacher/{other} peak memory"] = memory[size]["teacher"]["peak_mb"] / mo
    print()
    print(_bench.fmt_table(["model input", "input zyx", "network grid", "windows", "median s", "min s",
                            "cpu s", "first call s", "resample s", mem_label], rows))
    print("(median/min s: Predictor.segment wall time, model cached; cpu s: its process CPU time, all threads, "
          "median; first call: also loads (and merges) the model; resample s: prepare_scan alone, part of every "
          "call; windows: sliding-window patches)")
    _bench.print_ratios(ratios)
    _bench.report("seg_latency", args, config, load_start, load_end, results=results, ratios=_bench.rounded(ratios))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
