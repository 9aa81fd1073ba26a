"""EKS benchmark: forward+backward time and peak memory of a 3D student UNet with 8 region experts.

    python benchmarks/eks.py                    # CPU, the default configuration
    python benchmarks/eks.py --device cuda      # GPU (peak memory from torch.cuda.max_memory_allocated)

Variants, all on the same mixed batch in which every region is present:
  plain         the student UNet without experts
  eks           region experts, EKS with the default implementation (``auto``: per-sample weights for convs)
  eks_lowrank   EKS with the low-rank path (base conv over the batch + B_t(A_t x_t) per present region)
  eks_gather    EKS with per-sample weights forced everywhere (convs and linears)
  loop          split the batch by region, run the single-region mode per region, reassemble
  paper         the paper's formulation: one-hot (B x T) times all T full-size deltas, grouped conv

Each variant runs in a fresh subprocess, so its peak memory is its own: on CPU the peak resident set size
(ru_maxrss) minus the resident size just before the first step, on CUDA max_memory_allocated minus the
memory allocated before the first step. Time: median of ``--reps`` steps after ``--warmup`` steps. The last
line of output is one JSON object with every figure and the ratios the targets are about.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REGIONS = ["abdomen", "brain", "head_neck", "lower_limb", "pelvis", "spine", "thorax", "upper_limb"]
VARIANTS = ["plain", "eks", "eks_lowrank", "eks_gather", "loop", "paper"]
TARGETS = {"eks/plain": ("<=", 1.25), "loop/eks": (">=", 1.5), "eks_mem/paper_mem": ("<=", 1.0)}


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=32, help="cubic patch edge in voxels")
    p.add_argument("--channels", default="16,32,64,128")
    p.add_argument("--res-units", type=int, default=2)
    p.add_argument("--out-channels", type=int, default=8)
    p.add_argument("--encoder-rank", type=int, default=4)
    p.add_argument("--decoder-rank", type=int, default=8)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _rss_bytes() -> int:
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: fall back to the peak so far
        return _rss_bytes()


def run_variant(args: argparse.Namespace, variant: str) -> dict:
    """Build the model for ``variant`` and measure it in this process."""
    import torch
    from monai.networks.nets import UNet

    from lorkd_core.experts import (
        active_regions,
        add_region_experts,
        encoder_decoder_ranks,
        expert_layers,
        set_default_eks_impl,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
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
    n_expert_layers = 0
    if variant != "plain":
        add_region_experts(net, REGIONS, encoder_decoder_ranks(args.encoder_rank, args.decoder_rank))
        for _, layer in expert_layers(net):
            n_expert_layers += 1
            for factors in layer.experts.values():
                with torch.no_grad():  # B = 0 would let a lazy implementation skip work
                    factors.B.normal_(0.0, 0.02)
        impl = {"eks_lowrank": "lowrank", "eks_gather": "gather", "paper": "paper"}.get(variant, "auto")
        set_default_eks_impl(impl)
    net = net.to(device).train()
    params = sum(p.numel() for p in net.parameters())

    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 1, args.size, args.size, args.size, generator=g).to(device)
    target = torch.randn(args.batch, args.out_channels, args.size, args.size, args.size, generator=g).to(device)
    # Every region present, in a shuffled (non-contiguous) order as a real sampler would give.
    region_index = (torch.arange(args.batch) % len(REGIONS))[torch.randperm(args.batch, generator=g)].to(device)
    groups = [(t, (region_index == t).nonzero().flatten()) for t in range(len(REGIONS))]
    groups = [(t, idx) for t, idx in groups if idx.numel()]

    def step() -> None:
        net.zero_grad(set_to_none=True)
        if variant == "plain":
            out = net(x)
        elif variant == "loop":
            parts = []
            for t, idx in groups:
                with active_regions(net, t):
                    parts.append(net(x.index_select(0, idx)))
            out = torch.cat(parts).index_select(0, torch.argsort(torch.cat([idx for _, idx in groups])))
        else:
            with active_regions(net, region_index):
                out = net(x)
        torch.nn.functional.mse_loss(out, target).backward()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        sync()
        torch.cuda.reset_peak_memory_stats()
        mem_start = torch.cuda.memory_allocated()
    else:
        mem_start = _current_rss_bytes()
    for _ in range(args.warmup):
        step()
    sync()
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() - mem_start if device.type == "cuda" else _rss_bytes() - mem_start
    return {
        "variant": variant,
        "seconds": statistics.median(times),
        "seconds_all": [round(t, 4) for t in times],
        "peak_mb": peak / 2**20,
        "params": params,
        "expert_layers": n_expert_layers,
    }


def _spawn(args: argparse.Namespace, variant: str) -> dict:
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", variant]
    for key in ("device", "batch", "size", "channels", "res_units", "out_channels", "encoder_rank",
                "decoder_rank", "reps", "warmup", "threads"):
        argv += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"variant {variant} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.worker:
        print(json.dumps(run_variant(args, args.worker)))
        return 0
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    config = {
        "device": args.device, "batch": args.batch, "patch": [args.size] * 3, "channels": args.channels,
        "res_units": args.res_units, "out_channels": args.out_channels, "regions": len(REGIONS),
        "encoder_rank": args.encoder_rank, "decoder_rank": args.decoder_rank, "reps": args.reps,
        "warmup": args.warmup, "threads": args.threads,
    }
    print("config: " + ", ".join(f"{k}={v}" for k, v in config.items()), flush=True)
    results = {}
    for v in variants:
        results[v] = _spawn(args, v)
        r = results[v]
        print(f"  measured {v:<12} {r['seconds']:.3f} s  {r['peak_mb']:.0f} MB", flush=True)

    base = results.get("plain")
    mem_label = "peak GPU MB" if args.device.startswith("cuda") else "peak RSS MB"
    print()
    print(f"{'variant':<12} {'fwd+bwd s':>10} {'x plain':>8} {mem_label:>12} {'x plain':>8} {'params':>10}")
    for v, r in results.items():
        t_ratio = f"{r['seconds'] / base['seconds']:.2f}" if base else "-"
        m_ratio = f"{r['peak_mb'] / base['peak_mb']:.2f}" if base and base["peak_mb"] > 0 else "-"
        print(f"{v:<12} {r['seconds']:>10.3f} {t_ratio:>8} {r['peak_mb']:>12.0f} {m_ratio:>8} {r['params']:>10,}")

    ratios = {}
    if "eks" in results and base:
        ratios["eks/plain"] = results["eks"]["seconds"] / base["seconds"]
    if "eks" in results and "loop" in results:
        ratios["loop/eks"] = results["loop"]["seconds"] / results["eks"]["seconds"]
    if "eks" in results and "paper" in results and results["paper"]["peak_mb"] > 0:
        ratios["eks_mem/paper_mem"] = results["eks"]["peak_mb"] / results["paper"]["peak_mb"]
    if "eks_lowrank" in results and base:
        ratios["eks_lowrank/plain"] = results["eks_lowrank"]["seconds"] / base["seconds"]
    if "paper" in results and "eks" in results:
        ratios["paper/eks"] = results["paper"]["seconds"] / results["eks"]["seconds"]
    met = {}
    print()
    for key, (op, limit) in TARGETS.items():
        if key in ratios:
            ok = ratios[key] <= limit if op == "<=" else ratios[key] >= limit
            met[key] = ok
            print(f"target {key} {op} {limit}: {ratios[key]:.2f} -> {'met' if ok else 'NOT met'}")
    summary = {
        "config": config,
        "results": {
            v: {"seconds": round(r["seconds"], 4), "peak_mb": round(r["peak_mb"], 1), "params": r["params"]}
            for v, r in results.items()
        },
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "targets_met": met,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
