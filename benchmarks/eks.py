"""EKS benchmark: forward+backward time and peak memory of a 3D student UNet with 8 region experts.

    python benchmarks/eks.py                    # CPU, the default configuration
    python benchmarks/eks.py --device cuda      # GPU (peak memory from torch.cuda.max_memory_allocated)
    python benchmarks/eks.py --quick --json eks.json   # smoke test (16^3 patches, 2 rounds); JSON file too

Variants, all on the same mixed batch in which every region is present:
  plain         the student UNet without experts
  eks           region experts, EKS with the default implementation (``auto``: per-sample weights in the
                high-resolution convs, the grouped low-rank path in the deep ones)
  eks_lowrank   EKS with the low-rank path (base conv over the batch + B_t(A_t x_t) per present region)
  eks_gather    EKS with per-sample weights forced in every layer (only run when asked for with --variants)
  loop          split the batch by region, run the single-region mode per region, reassemble
  paper         the paper's formulation: one-hot (B x T) times all T full-size deltas, grouped conv

Memory: each variant runs in a fresh subprocess, so its peak is its own: on CPU the peak resident set size
(ru_maxrss) minus the resident size just before the first step, on CUDA max_memory_allocated minus the
memory allocated before the first step. Time: one subprocess runs ``--warmup`` rounds, then ``--reps``
rounds in which every variant does one forward+backward, in a shuffled order, so a slow spell of a shared
machine hits all variants alike; ratios are the median over rounds of the paired ratio, and the ratio of
the minima is shown beside it. CPU time (all threads) is reported too. The last line of output is one JSON
object with every figure and the ratios the targets are about.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import _bench  # noqa: E402

REGIONS = ["abdomen", "brain", "head_neck", "lower_limb", "pelvis", "spine", "thorax", "upper_limb"]
VARIANTS = ["plain", "eks", "eks_lowrank", "eks_gather", "loop", "paper"]
# eks_gather differs from eks only in the deep layers; run it with --variants when needed.
DEFAULT_VARIANTS = ["plain", "eks", "eks_lowrank", "loop", "paper"]
TARGETS = {"eks/plain": ("<=", 1.25), "loop/eks": (">=", 1.5), "eks_mem/paper_mem": ("<=", 1.0)}


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=None, help="cubic patch edge in voxels (default 32, quick 16)")
    p.add_argument("--channels", default="16,32,64,128")
    p.add_argument("--res-units", type=int, default=2)
    p.add_argument("--out-channels", type=int, default=8)
    p.add_argument("--encoder-rank", type=int, default=4)
    p.add_argument("--decoder-rank", type=int, default=8)
    p.add_argument("--reps", type=int, default=None, help="timed rounds (default 7, quick 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default 2, quick 1)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"any of {','.join(VARIANTS)}")
    p.add_argument("--quick", action="store_true", help="smoke-test settings: 16^3 patches, 1 warm-up + 2 rounds")
    p.add_argument("--json", metavar="OUT", help="also write the summary (plus the machine) as JSON to OUT")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    _bench.quick_defaults(args, {"size": (32, 16), "reps": (7, 2), "warmup": (2, 1)})
    return args


def _build(args: argparse.Namespace, experts: bool):
    import torch
    from monai.networks.nets import UNet

    from lorkd_core.experts import add_region_experts, encoder_decoder_ranks, expert_layers

    torch.manual_seed(0)
    channels = tuple(int(c) for c in args.channels.split(","))
    net = UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=args.out_channels,
        channels=channels,
        strides=(2,) * (len(channels) - 1),
        num_res_units=args.res_units,
    )
    if experts:
        add_region_experts(net, REGIONS, encoder_decoder_ranks(args.encoder_rank, args.decoder_rank))
        for _, layer in expert_layers(net):
            for factors in layer.experts.values():
                with torch.no_grad():  # B = 0 would let a lazy implementation skip work
                    factors.B.normal_(0.0, 0.02)
    return net.to(torch.device(args.device)).train()


def _batch(args: argparse.Namespace):
    import torch

    device = torch.device(args.device)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 1, args.size, args.size, args.size, generator=g).to(device)
    target = torch.randn(args.batch, args.out_channels, args.size, args.size, args.size, generator=g).to(
        device
    )
    # Every region present, in a shuffled (non-contiguous) order as a real sampler would give.
    region_index = (torch.arange(args.batch) % len(REGIONS))[torch.randperm(args.batch, generator=g)]
    return x, target, region_index.to(device)


def _step_fn(args: argparse.Namespace, variant: str, net, x, target, region_index):
    """One forward+backward of ``variant``; returns a callable."""
    import torch

    from lorkd_core.experts import active_regions, set_default_eks_impl

    impl = {"eks_lowrank": "lowrank", "eks_gather": "gather", "paper": "paper"}.get(variant, "auto")
    groups = [(t, (region_index == t).nonzero().flatten()) for t in range(len(REGIONS))]
    groups = [(t, idx) for t, idx in groups if idx.numel()]
    order = torch.argsort(torch.cat([idx for _, idx in groups]))

    def step() -> None:
        set_default_eks_impl(impl)
        net.zero_grad(set_to_none=True)
        if variant == "plain":
            out = net(x)
        elif variant == "loop":
            parts = []
            for t, idx in groups:
                with active_regions(net, t):
                    parts.append(net(x.index_select(0, idx)))
            out = torch.cat(parts).index_select(0, order)
        else:
            with active_regions(net, region_index):
                out = net(x)
        torch.nn.functional.mse_loss(out, target).backward()
        if x.device.type == "cuda":
            torch.cuda.synchronize()

    return step


def time_variants(args: argparse.Namespace, variants: list[str]) -> dict[str, dict[str, list[float]]]:
    """Interleave the variants step by step, so a slow spell of a shared machine hits them all alike."""
    _bench.set_threads(args.threads)
    x, target, region_index = _batch(args)
    plain = _build(args, experts=False) if "plain" in variants else None
    experts = _build(args, experts=True) if set(variants) - {"plain"} else None
    steps = {
        v: _step_fn(args, v, plain if v == "plain" else experts, x, target, region_index) for v in variants
    }
    for _ in range(args.warmup):
        for v in variants:
            steps[v]()
    # Timed as on CPU (no synchronize around the timer): on CUDA each step synchronizes at its end.
    wall, cpu = _bench.interleaved_rounds(steps, args.reps)
    return {"wall": wall, "cpu": cpu}


def measure_memory(args: argparse.Namespace, variant: str) -> dict:
    """Peak memory of one variant; run in a fresh process so nothing else is counted."""
    import torch

    _bench.set_threads(args.threads)
    x, target, region_index = _batch(args)
    net = _build(args, experts=variant != "plain")
    step = _step_fn(args, variant, net, x, target, region_index)
    params = sum(p.numel() for p in net.parameters())
    cuda = x.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
    else:
        start = _bench.current_rss_bytes()
    for _ in range(2):
        step()
    peak = torch.cuda.max_memory_allocated() - start if cuda else _bench.ru_maxrss_bytes() - start
    return {"variant": variant, "peak_mb": peak / 2**20, "params": params}


def _spawn(args: argparse.Namespace, worker: str, variants: list[str]):
    argv = [
        "--worker",
        worker,
        "--variants",
        ",".join(variants),
    ]
    for key in (
        "device",
        "batch",
        "size",
        "channels",
        "res_units",
        "out_channels",
        "encoder_rank",
        "decoder_rank",
        "reps",
        "warmup",
        "threads",
    ):
        argv += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    # No threads= here: the worker sets torch's threads itself (--threads), OMP_NUM_THREADS stays as inherited.
    return _bench.run_worker(Path(__file__).resolve(), argv)


def _paired_ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of time(a) / time(b) in the same round (:func:`_bench.paired_ratio`)."""
    return _bench.paired_ratio(times[a], times[b])


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    if args.worker == "time":
        print(json.dumps(time_variants(args, variants)))
        return 0
    if args.worker == "memory":
        print(json.dumps(measure_memory(args, variants[0])))
        return 0
    config = {
        "device": args.device,
        "batch": args.batch,
        "patch": [args.size] * 3,
        "channels": args.channels,
        "res_units": args.res_units,
        "out_channels": args.out_channels,
        "regions": len(REGIONS),
        "encoder_rank": args.encoder_rank,
        "decoder_rank": args.decoder_rank,
        "reps": args.reps,
        "warmup": args.warmup,
        "threads": args.threads,
    }
    print("config: " + ", ".join(f"{k}={v}" for k, v in config.items()), flush=True)
    load_before = _bench.load_average()
    print(f"machine: {os.cpu_count()} CPUs, load average {load_before} at start", flush=True)
    memory = {}
    for v in variants:
        memory[v] = _spawn(args, "memory", [v])
        print(f"  peak memory {v:<12} {memory[v]['peak_mb']:.0f} MB", flush=True)
    measured = _spawn(args, "time", variants)
    times, cpu_times = measured["wall"], measured["cpu"]
    median = {v: _bench.median(ts) for v, ts in times.items()}
    cpu_median = {v: _bench.median(ts) for v, ts in cpu_times.items()}
    load_after = _bench.load_average()
    print(f"load average {load_after} at end (other jobs on the machine inflate and scatter the times)")

    mem_label = "peak GPU MB" if args.device.startswith("cuda") else "peak RSS MB"
    has_plain = "plain" in variants
    print()
    header = (
        f"{'variant':<12} {'median s':>9} {'min s':>7} {'x plain':>8} {'cpu s':>7} {'x plain':>8} "
        f"{mem_label:>12} {'x plain':>8} {'params':>10}"
    )
    print(header)
    print("-" * len(header))
    for v in variants:
        t_ratio = f"{_paired_ratio(times, v, 'plain'):.2f}" if has_plain else "-"
        c_ratio = f"{_paired_ratio(cpu_times, v, 'plain'):.2f}" if has_plain else "-"
        base_mem = memory["plain"]["peak_mb"] if has_plain else 0
        m_ratio = f"{memory[v]['peak_mb'] / base_mem:.2f}" if base_mem > 0 else "-"
        print(
            f"{v:<12} {median[v]:>9.3f} {min(times[v]):>7.3f} {t_ratio:>8} {cpu_median[v]:>7.3f} {c_ratio:>8} "
            f"{memory[v]['peak_mb']:>12.0f} {m_ratio:>8} {memory[v]['params']:>10,}"
        )
    print(
        "(median/min s: wall time of one forward+backward; cpu s: process CPU time, all threads; x plain: "
        "median over rounds of the paired ratio, rounds interleave the variants)"
    )

    ratios = {}
    pairs = {
        "eks/plain": ("eks", "plain"),
        "loop/eks": ("loop", "eks"),
        "paper/eks": ("paper", "eks"),
        "eks_lowrank/plain": ("eks_lowrank", "plain"),
        "eks_gather/plain": ("eks_gather", "plain"),
    }
    for key, (a, b) in pairs.items():
        if a in times and b in times:
            ratios[key] = _paired_ratio(times, a, b)
            ratios[f"min:{key}"] = min(times[a]) / min(times[b])
            ratios[f"cpu:{key}"] = _paired_ratio(cpu_times, a, b)
    if "eks" in memory and "paper" in memory and memory["paper"]["peak_mb"] > 0:
        ratios["eks_mem/paper_mem"] = memory["eks"]["peak_mb"] / memory["paper"]["peak_mb"]
    met = {}
    print()
    for key, (op, limit) in TARGETS.items():
        if key not in ratios:
            continue
        # Time targets are judged on two estimators (paired median and ratio of minima): on a busy
        # machine they can disagree, and then the verdict says so instead of picking the kinder one.
        values = [ratios[key]] + ([ratios[f"min:{key}"]] if f"min:{key}" in ratios else [])
        oks = [v <= limit if op == "<=" else v >= limit for v in values]
        verdict = "met" if all(oks) else "NOT met" if not any(oks) else "borderline"
        met[key] = verdict
        shown = " / ".join(f"{v:.2f}" for v in values)
        label = "paired median / ratio of minima" if len(values) > 1 else "measured"
        print(f"target {key} {op} {limit}: {shown} ({label}) -> {verdict}")
    summary = {
        "config": config,
        "results": {
            v: {
                "median_s": round(median[v], 4),
                "min_s": round(min(times[v]), 4),
                "cpu_s": round(cpu_median[v], 4),
                "peak_mb": round(memory[v]["peak_mb"], 1),
                "params": memory[v]["params"],
            }
            for v in variants
        },
        "ratios": _bench.rounded(ratios),
        "load_average": {"start": load_before, "end": load_after},
        "targets_met": met,
    }
    print(json.dumps(summary))
    if args.json:
        extra = {
            "x_plain_paired": {v: round(_paired_ratio(times, v, "plain"), 3) for v in variants} if has_plain else {},
            "cpu_x_plain_paired": (
                {v: round(_paired_ratio(cpu_times, v, "plain"), 3) for v in variants} if has_plain else {}
            ),
            "rounds_wall_s": {v: [round(t, 4) for t in ts] for v, ts in times.items()},
            "rounds_cpu_s": {v: [round(t, 4) for t in ts] for v, ts in cpu_times.items()},
        }
        _write_json(args, {**summary, **extra})
    return 0


def _write_json(args: argparse.Namespace, summary: dict) -> None:
    """The printed summary plus the machine it came from, written to ``--json`` (nothing printed, so the
    summary stays the last line of output)."""
    data = {"benchmark": "eks", "quick": args.quick, **summary,
            "machine": _bench.machine_info(args.device, args.threads)}
    _bench.write_json(args.json, data, announce=False)


if __name__ == "__main__":
    raise SystemExit(main())
