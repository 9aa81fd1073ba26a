"""Decomposition training throughput (samples/s): one process vs ``torchrun`` with N processes (DDP).

    python benchmarks/decomposition_throughput.py                  # CPU: 1 process vs 2 gloo processes
    python benchmarks/decomposition_throughput.py --device cuda    # GPU: needs >= --nproc GPUs for the DDP run

Both runs train the same tiny ``lorkd decompose`` job (docs/contracts.md; lorkd_core/engine/train.py) with the
same global batch: generated phantoms of the eight regions (``write_phantom_dataset``), the bundled teacher
(resources/models/teacher), a small student UNet with rank-2 experts, no checkpoints, no baseline student.

  1 process   ``python -m lorkd_core decompose --config job.json --progress-json`` (the same
              ``engine.train.decompose`` the Python API calls; torch uses ``--threads`` threads)
  torchrun    ``python -m torch.distributed.run --standalone --nproc_per_node N -m lorkd_core decompose ...``
              (gloo on CPU, NCCL on CUDA; each rank takes batch/N samples of every global batch and
              OMP_NUM_THREADS = max(1, threads // N), so both runs use the same number of threads in total)

Throughput: the benchmark reads the ``{"event": "step"}`` lines as rank 0 prints them and stamps each with the
time it arrived; samples/s = global batch x (steps - skipped) / (time of the last step - time of the last
skipped step), so start-up (imports, process group, loading the cases) and the first ``--skip`` steps are left
out; start-up is reported apart. The two runs alternate ``--reps`` times and the medians are compared.

On a machine with 2 CPU cores the 2 processes share those cores (and with each other job on the machine): the
ratio then compares 2 single-threaded processes with one 2-threaded process on the same cores (how well torch
threads small convolutions, each rank preparing only its half of the batch, gloo's all-reduce), not scaling to
more cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import _bench  # noqa: E402

STUDENT = {"name": "monai.UNet", "kwargs": {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 0}}


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _bench.add_common_arguments(p)
    p.add_argument("--nproc", type=int, default=2, help="torchrun processes")
    p.add_argument("--batch", type=int, default=8, help="global batch (a multiple of --nproc)")
    p.add_argument("--steps", type=int, default=None, help="training steps per run (default 30, quick 6)")
    p.add_argument("--skip", type=int, default=None, help="first steps left out of samples/s (default 3, quick 2)")
    p.add_argument("--reps", type=int, default=None, help="runs of each variant, alternating (default 2, quick 1)")
    p.add_argument("--patch", type=int, default=32, help="cubic patch edge in voxels (multiple of 16)")
    p.add_argument("--spacing", type=float, default=4.0, help="training spacing in mm")
    p.add_argument("--phantom-size", type=int, default=None, help="phantom grid edge (default 48, quick 32)")
    p.add_argument("--cases-per-region", type=int, default=1)
    p.add_argument("--teacher", default=None, help="teacher folder (default: the bundled teacher)")
    p.add_argument("--workdir", default=None, help="keep phantoms and outputs here (default: a temp folder)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    args = p.parse_args(argv)
    _bench.quick_defaults(args, {"steps": (30, 6), "skip": (3, 2), "reps": (2, 1), "phantom_size": (48, 32)})
    if args.batch % args.nproc:
        p.error(f"--batch {args.batch} must be a multiple of --nproc {args.nproc}")
    if args.steps <= args.skip + 1:
        p.error("--steps must exceed --skip + 1")
    return args


def prepare(args: argparse.Namespace, work: Path) -> tuple[Path, float]:
    """Phantoms + job.json in ``work``; returns the config path and the seconds the phantoms took."""
    from lorkd_core.data.phantoms import write_phantom_dataset
    from lorkd_core.engine.catalog import bundled_models_dir
    from lorkd_core.engine.config import DecomposeConfig

    t0 = time.perf_counter()
    manifest = work / "data" / "manifest.jsonl"
    if not manifest.is_file():
        manifest = Path(write_phantom_dataset(work / "data", args.cases_per_region, seed=0, size=args.phantom_size,
                                              findings=False))
    seconds = time.perf_counter() - t0
    teacher = Path(args.teacher) if args.teacher else bundled_models_dir() / "teacher"
    cfg = DecomposeConfig(data=str(manifest), out=str(work / "out"), teacher=str(teacher), steps=args.steps,
                          batch_size=args.batch, patch_size=(args.patch,) * 3, spacing=(args.spacing,) * 3,
                          student=STUDENT, feature_channels=8, ranks=2, baseline=False, checkpoint_every=0,
                          warmup_steps=1, device=args.device, seed=0, copy_teacher=False)
    path = work / "job.json"
    cfg.save(path)
    return path, seconds


def run_once(args: argparse.Namespace, job: Path, out: Path, nproc: int) -> dict:
    """One training run; step arrival times (perf_counter, relative to the launch) from rank 0's JSON lines."""
    base = ["-m", "lorkd_core", "decompose", "--config", str(job), "--out", str(out), "--progress-json"]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *base]
        threads = max(1, args.threads // nproc) if args.threads else None
    else:
        cmd = [sys.executable, *base]
        threads = args.threads or None
    env = _bench.child_env(threads, inherit_omp=False)
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=str(_bench.ROOT), bufsize=1)
    steps: list[float] = []
    events: dict[str, float] = {}
    processes = None
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            now = time.perf_counter() - t0
            if not line.startswith("{"):
                continue
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            kind = ev.get("event")
            if kind == "step":
                steps.append(now)
            elif kind == "start":
                processes = ev.get("processes")
                events["start"] = now
            elif kind in ("done", "error", "cancelled"):
                events[kind] = now
        proc.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise SystemExit(f"{' '.join(cmd[1:])} timed out after {args.timeout} s") from None
    stderr = proc.stderr.read() if proc.stderr else ""
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or len(steps) != args.steps:
        raise SystemExit(f"run failed (exit {proc.returncode}, {len(steps)}/{args.steps} steps): {' '.join(cmd)}\n"
                         f"{stderr[-4000:]}")
    timed = steps[-1] - steps[args.skip - 1]
    n = args.steps - args.skip
    return {"processes": processes, "samples_per_s": args.batch * n / timed, "step_s": timed / n,
            "first_step_at_s": steps[0], "wall_s": wall, "step_times_s": [round(b - a, 4) for a, b in
                                                                          zip(steps, steps[1:])],
            "omp_threads_per_process": threads}


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    _bench.check_device(args.device)
    config = {"device": args.device, "threads": args.threads, "nproc": args.nproc, "global_batch": args.batch,
              "steps": args.steps, "skip": args.skip, "reps": args.reps, "patch": [args.patch] * 3,
              "spacing_mm": args.spacing, "phantom_size": args.phantom_size, "cases_per_region": args.cases_per_region,
              "student": STUDENT, "feature_channels": 8, "ranks": 2, "teacher": args.teacher or "bundled",
              "quick": args.quick}
    _bench.print_config(config, omit=["student"], extra=f", student channels {STUDENT['kwargs']['channels']}")
    load_start = _bench.print_load("start")
    cpus = os.cpu_count() or 1
    note = None
    if args.device == "cpu" and args.nproc * max(1, args.threads // args.nproc) >= cpus:
        note = (f"this machine has {cpus} CPU cores: the {args.nproc} torchrun processes "
                f"({max(1, args.threads // args.nproc)} thread(s) each) contend for the same cores as the 1-process "
                f"run's {args.threads} threads, and with any other job on the machine; the ratio compares "
                f"{args.nproc} processes with one multi-threaded process on the same cores (intra-op threading "
                "of small convolutions, each rank preparing only its share of the batch, gloo's all-reduce), "
                "not scaling to more cores")
        print(f"note: {note}", flush=True)
    skip_ddp = None
    if args.device.startswith("cuda"):
        import torch

        if torch.cuda.device_count() < args.nproc:
            skip_ddp = (f"{torch.cuda.device_count()} GPU(s) < --nproc {args.nproc}: NCCL needs one GPU per rank, "
                        "so the torchrun run is skipped")
            print(f"note: {skip_ddp}", flush=True)

    runs: dict[str, list[dict]] = {"1 process": [], f"torchrun x{args.nproc}": []}
    with _bench.work_folder(args.workdir, "lorkd-ddp-bench-") as work:
        job, phantom_s = prepare(args, work)
        print(f"  phantoms: {args.cases_per_region} case(s) x 8 regions of {args.phantom_size}^3 "
              f"({phantom_s:.1f} s)", flush=True)
        for rep in range(args.reps):
            order = [1, args.nproc] if rep % 2 == 0 else [args.nproc, 1]
            for nproc in order:
                if nproc > 1 and skip_ddp:
                    continue
                key = "1 process" if nproc == 1 else f"torchrun x{args.nproc}"
                r = run_once(args, job, work / f"out_{nproc}", nproc)
                runs[key].append(r)
                print(f"  {key:<12} run {rep + 1}: {r['samples_per_s']:.2f} samples/s "
                      f"({r['step_s']:.3f} s/step; first step after {r['first_step_at_s']:.1f} s; "
                      f"wall {r['wall_s']:.1f} s)", flush=True)
    load_end = _bench.print_load("end")

    med = _bench.median
    results = {}
    rows = []
    for key, rs in runs.items():
        if not rs:
            continue
        results[key] = {"samples_per_s": round(med(r["samples_per_s"] for r in rs), 3),
                        "step_s": round(med(r["step_s"] for r in rs), 4),
                        "first_step_at_s": round(med(r["first_step_at_s"] for r in rs), 2),
                        "wall_s": round(med(r["wall_s"] for r in rs), 2),
                        "omp_threads_per_process": rs[0]["omp_threads_per_process"],
                        "processes_reported": rs[0]["processes"], "runs": rs}
        rows.append([key, results[key]["samples_per_s"], results[key]["step_s"],
                     results[key]["first_step_at_s"], results[key]["wall_s"],
                     results[key]["omp_threads_per_process"] or "default"])
    print()
    print(_bench.fmt_table(["variant", "samples/s", "s/step", "first step at s", "wall s", "threads/process"],
                           rows))
    ratios = {}
    ddp_key = f"torchrun x{args.nproc}"
    if runs["1 process"] and runs[ddp_key]:
        ratios[f"{ddp_key}/1 process samples_per_s"] = (results[ddp_key]["samples_per_s"]
                                                          / results["1 process"]["samples_per_s"])
        paired = [b["samples_per_s"] / a["samples_per_s"] for a, b in zip(runs["1 process"], runs[ddp_key])]
        ratios[f"{ddp_key}/1 process samples_per_s (paired median)"] = med(paired)
        print()
        print(f"throughput {ddp_key} / 1 process: {ratios[f'{ddp_key}/1 process samples_per_s']:.2f} "
              f"(same global batch {args.batch}; samples/s over steps {args.skip + 1}..{args.steps})")
    if note:
        print(f"note: {note}")
    if skip_ddp:
        print(f"note: {skip_ddp}")
    _bench.report("decomposition_throughput", args, config, load_start, load_end, results=results,
                  ratios=_bench.rounded(ratios), notes=[n for n in (note, skip_ddp) if n])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
