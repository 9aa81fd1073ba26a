"""Run every benchmark (full or ``--quick``), then write one JSON file and one Markdown table.

    python benchmarks/run_all.py --out bench-cpu                 # full settings, CPU
    python benchmarks/run_all.py --quick --out /tmp/bench        # smoke test of every script
    python benchmarks/run_all.py --device cuda --out bench-gpu   # GPU (app_startup passes --device to the app)

Writes ``OUT/<name>.json`` and ``OUT/<name>.log`` per benchmark (its console output), ``OUT/results.json``
(all of them, plus the machine and the load average around each) and ``OUT/results.md`` (the tables that go
into BENCHMARKS.md). A benchmark that fails is recorded as failed and the others still run. Every figure in a
table comes from one script's one run; ratios are the ones that script measured side by side.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench  # noqa: E402

BENCHMARKS = ["eks", "switch_latency", "seg_latency", "decomposition_throughput", "app_startup"]


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"),
                   help="folder for the JSON, logs and Markdown (default benchmarks/results, git-ignored)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="passed to every script (default: each one's own)")
    p.add_argument("--quick", action="store_true", help="every script's --quick setting")
    p.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    p.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    p.add_argument("--nice", type=int, default=0, help="run the scripts under nice -n N (0 = not)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per benchmark")
    p.add_argument("--update", action="store_true",
                   help="keep the other benchmarks of an existing OUT/results.json, replace the ones run now")
    p.add_argument("--render", metavar="RESULTS_JSON", help="only rewrite results.md from an existing results.json")
    return p.parse_args(argv)


def run_one(name: str, args: argparse.Namespace, out: Path) -> dict:
    script = Path(__file__).resolve().parent / f"{name}.py"
    json_path = out / f"{name}.json"
    json_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(script), "--json", str(json_path), "--device", args.device]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    if args.quick:
        cmd.append("--quick")
    if args.nice:
        cmd = ["nice", "-n", str(args.nice), *cmd]
    print(f"\n=== {name}: {' '.join(cmd[cmd.index(str(script)):])}", flush=True)
    load_before = _bench.load_average()
    t0 = time.perf_counter()
    log_lines = []
    status = "ok"
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=_bench.child_env(), bufsize=1)
        assert proc.stdout is not None
        deadline = time.monotonic() + args.timeout
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            log_lines.append(line)
            if time.monotonic() > deadline:
                proc.kill()
                status = f"timed out after {args.timeout:.0f} s"
                break
        code = proc.wait()
        if status == "ok" and code != 0:
            status = f"failed (exit {code})"
    except OSError as exc:
        status = f"failed ({exc})"
    seconds = time.perf_counter() - t0
    (out / f"{name}.log").write_text("".join(log_lines))
    shown = ["python", f"benchmarks/{name}.py", *cmd[cmd.index(str(script)) + 1:]]
    result = {"name": name, "status": status, "seconds": round(seconds, 1), "command": " ".join(shown),
              "load_average": {"before": load_before, "after": _bench.load_average()}}
    if status == "ok" and json_path.is_file():
        result["data"] = json.loads(json_path.read_text())
    elif status == "ok":
        result["status"] = "failed (no JSON written)"
    print(f"=== {name}: {result['status']} in {seconds:.0f} s", flush=True)
    return result


# ---------------------------------------------------------------- Markdown


def _table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def md_eks(d: dict) -> str:
    res, rat = d["results"], d["ratios"]
    mem = "peak GPU MB" if str(d["config"]["device"]).startswith("cuda") else "peak RSS MB"
    plain = res.get("plain")
    rows = []
    paired = d.get("x_plain_paired", {})
    for v, r in res.items():
        x = paired.get(v, rat.get(f"{v}/plain", 1.0 if v == "plain" else None))
        xm = r["peak_mb"] / plain["peak_mb"] if plain and plain["peak_mb"] > 0 else None
        rows.append([v, f"{r['median_s']:.3f}", f"{r['min_s']:.3f}", "-" if x is None else f"{x:.2f}",
                     f"{r['peak_mb']:.0f}", "-" if xm is None else f"{xm:.2f}"])
    c = d["config"]
    text = (f"batch {c['batch']} x {c['patch'][0]}^3, channels {c['channels']}, {c['regions']} regions, ranks "
            f"{c['encoder_rank']}/{c['decoder_rank']}, {c['reps']} rounds, {c['threads']} threads\n\n")
    text += _table(["variant", "median s", "min s", "x plain (paired)", mem, "mem x plain"], rows)
    keys = [k for k in ("eks/plain", "loop/eks", "paper/eks", "eks_mem/paper_mem") if k in rat]
    text += "\n\nRatios: " + ", ".join(f"{k} {rat[k]:.2f}" for k in keys)
    if d.get("targets_met"):
        text += "; targets: " + ", ".join(f"{k} {v}" for k, v in d["targets_met"].items())
    return text


def md_switch(d: dict) -> str:
    r, rat, m = d["results_s"], d["ratios"], d["memory"]
    ms = lambda s: f"{1000 * s:.2f}"  # noqa: E731
    cached = r["cached_switch"]
    rows = [
        ["cold: fresh Predictor (load_model + merge + to device)", ms(r["cold"]), f"{r['cold'] / cached:.0f}"],
        ["  part: load_model", ms(r["part_load_model"]), ""],
        ["  part: region_module (merged_expert copy + head)", ms(r["part_region_module"]), ""],
        ["  part: .to(device)", ms(r["part_to_device"]), ""],
        ["first switch to a region (model loaded)", ms(r["first_switch"]), f"{r['first_switch'] / cached:.0f}"],
        ["cached switch (back to a prepared region)", ms(cached), "1"],
    ]
    if "teacher_cold" in r:
        rows += [["teacher: cold", ms(r["teacher_cold"]), f"{r['teacher_cold'] / cached:.0f}"],
                 ["teacher: cached", ms(r["teacher_cached"]), f"{r['teacher_cached'] / cached:.1f}"]]
    rows += [["in-place merge() switch (not used by the app)", ms(r["inplace_switch"]),
              f"{r['inplace_switch'] / cached:.0f}"],
             ["first cold switch of the process (lazy imports)", ms(r["first_round_cold"]), ""]]
    c = d["config"]
    text = f"Predictor.prepare, {c['rounds']} rounds, {c['cached_calls']} cached calls per region, {c['threads']} threads\n\n"
    text += _table(["what", "median ms", "x cached"], rows)
    text += (f"\n\nfirst switch / cached: {rat['first_switch/cached_switch']:.0f}x; cold / first switch: "
             f"{rat['cold/first_switch']:.2f}x; first switch / in-place switch: {rat['first_switch/inplace_switch']:.2f}x; "
             f"one cached region module {m['region_module_mb']:.2f} MB ({m['region_module_params']:,} parameters)")
    return text


def md_seg(d: dict) -> str:
    cuda = str(d["config"]["device"]).startswith("cuda")
    rows = []
    for r in d["results"]:
        rows.append([r["model"], "x".join(map(str, r["input_zyx"])) + f" @ {r['input_spacing_mm'][0]:g} mm",
                     "x".join(map(str, r["network_grid_zyx"])) + f" @ {r['model_spacing_mm'][0]:g} mm",
                     r["windows"], f"{r['median_s']:.3f}", f"{r['min_s']:.3f}",
                     f"{r['cpu_s']:.3f}" if "cpu_s" in r else "-", f"{r['first_call_s']:.3f}",
                     f"{r['prepare_scan_s']:.3f}", f"{r['peak_mb']:.0f}"])
    c = d["config"]
    text = f"{c['region']} phantom, {c['reps']} rounds, {c['threads']} threads\n\n"
    text += _table(["model", "input (z x y x x)", "network grid", "windows", "median s", "min s", "cpu s",
                    "first call s", "resample s", "peak GPU MB" if cuda else "peak RSS MB (delta)"], rows)
    text += "\n\n" + "; ".join(f"{k} {v:.2f}" for k, v in d["ratios"].items() if "minima" not in k)
    return text


def md_ddp(d: dict) -> str:
    rows = [[k, f"{v['samples_per_s']:.2f}", f"{v['step_s']:.3f}", f"{v['first_step_at_s']:.1f}",
             v["omp_threads_per_process"] or "default"] for k, v in d["results"].items()]
    c = d["config"]
    text = (f"global batch {c['global_batch']} x {c['patch'][0]}^3 @ {c['spacing_mm']:g} mm, {c['steps']} steps "
            f"(first {c['skip']} not timed), {c['reps']} run(s) each, alternating\n\n")
    text += _table(["variant", "samples/s", "s/step", "first step after s", "threads/process"], rows)
    if d["ratios"]:
        text += "\n\n" + "; ".join(f"{k} {v:.2f}" for k, v in d["ratios"].items())
    for n in d.get("notes", []):
        text += f"\n\nNote: {n}"
    return text


def md_app(d: dict) -> str:
    r = d["results"]
    s = r["startup_to_screenshot_s"]
    text = (f"display {d['config'].get('display_used')}; `lorkd-studio --screenshot`: median **{s['median']:.2f} s** "
            f"over {len(s['runs'])} run(s) (min {s['min']:.2f}, max {s['max']:.2f})\n\n")
    if "phases_s_since_launch" in r:
        ph = r["phases_s_since_launch"]
        rows, prev = [], 0.0
        for k, v in ph.items():
            if k == "3d_preloaded":
                continue
            rows.append([k, f"{v:.2f}", f"{v - prev:+.2f}"])
            prev = v
        if "3d_preloaded" in ph:
            rows.append(["3d_preloaded (background thread)", f"{ph['3d_preloaded']:.2f}", ""])
        text += _table(["phase", "s since launch", "since previous"], rows) + "\n\n"
    text += _table(["imports (fresh process each)", "import s", "process s"],
                   [[k, f"{v['import_s']:.3f}", f"{v['process_s']:.3f}"] for k, v in r["imports"].items()])
    if d["ratios"]:
        text += "\n\n" + "; ".join(f"{k} {v:.2f}" for k, v in d["ratios"].items())
    return text


RENDER = {"eks": md_eks, "switch_latency": md_switch, "seg_latency": md_seg,
          "decomposition_throughput": md_ddp, "app_startup": md_app}


def render(summary: dict) -> str:
    m = summary.get("machine", {})
    parts = [f"# Benchmark results ({'quick' if summary.get('quick') else 'full'} settings, device "
             f"{summary.get('device')})", "",
             f"Machine: {m.get('cpu')}, {m.get('cpus')} CPUs, {m.get('ram_gib')} GiB RAM, Python {m.get('python')}, "
             f"torch {m.get('torch')}" + (f", GPU {m['gpu']} (CUDA {m.get('cuda')})" if m.get("gpu") else "") + "."]
    if m.get("git_commit"):
        parts += ["", f"Code: commit {m['git_commit']}" + (" (with uncommitted changes)" if m.get("git_tree_changed")
                                                           else "")
                  + "; bundled model weights (SHA-256, first 16 hex digits): "
                  + ", ".join(f"{k} {v}" for k, v in m.get("bundled_models_sha256", {}).items()) + "."]
    for b in summary["benchmarks"]:
        load = b["load_average"]
        parts += ["", f"## {b['name']}", "", f"`{b['command']}` — {b['status']}, {b['seconds']:.0f} s, load average "
                  f"{load['before']} before / {load['after']} after"]
        if "data" in b:
            d = b["data"]
            if "load_average" in d:
                parts += ["", f"Load average inside the run: {d['load_average'].get('start')} at start, "
                              f"{d['load_average'].get('end')} at end."]
            try:
                parts += ["", RENDER[b["name"]](d)]
            except (KeyError, TypeError, ZeroDivisionError) as exc:
                parts += ["", f"(cannot render: {exc!r}; see {b['name']}.json)"]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.render:
        src = Path(args.render)
        summary = json.loads(src.read_text())
        (src.parent / "results.md").write_text(render(summary))
        print(f"wrote {src.parent / 'results.md'}")
        return 0
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    skip = {b.strip() for b in args.skip.split(",") if b.strip()}
    unknown = (set(chosen) | skip) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(f"unknown benchmarks {sorted(unknown)}; choose from {BENCHMARKS}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"quick": args.quick, "device": args.device, "threads": args.threads,
               "machine": _bench.machine_info(args.device, args.threads),
               "started": time.strftime("%Y-%m-%d %H:%M:%S"), "benchmarks": []}
    previous: dict[str, dict] = {}
    if args.update and (out / "results.json").is_file():
        old = json.loads((out / "results.json").read_text())
        if old.get("quick") != args.quick or old.get("device") != args.device:
            raise SystemExit(f"--update: {out / 'results.json'} has quick={old.get('quick')}, "
                             f"device={old.get('device')}; this run has quick={args.quick}, device={args.device}")
        previous = {b["name"]: b for b in old.get("benchmarks", [])}
        summary["started"] = old.get("started", summary["started"])
    todo = [b for b in BENCHMARKS if b in chosen and b not in skip]

    def ordered(done: dict[str, dict]) -> list[dict]:
        return [done[b] for b in BENCHMARKS if b in done]

    done = dict(previous)
    for name in todo:
        done[name] = run_one(name, args, out)
        if name in previous:
            done[name]["replaces_run_of"] = previous[name].get("finished_at")
        done[name]["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
        summary["benchmarks"] = ordered(done)
        (out / "results.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    summary["benchmarks"] = ordered(done)
    summary["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "results.md").write_text(render(summary))
    print(f"\nwrote {out / 'results.json'} and {out / 'results.md'}")
    print("\n".join(f"  {b['name']:<26} {b['status']:<10} {b['seconds']:.0f} s"
                    + ("" if b["name"] in todo else " (kept from the earlier run)") for b in summary["benchmarks"]))
    return 0 if all(b["status"] == "ok" for b in summary["benchmarks"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
