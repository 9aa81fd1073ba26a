"""Helpers shared by the benchmark scripts (not a benchmark itself).

Every script in this folder:
- measures what it compares side by side in one run and prints ratios from that run only;
- prints ``os.getloadavg()`` at its start and end (other jobs on a shared machine inflate the times);
- takes ``--threads`` (torch intra-op threads), ``--quick`` (a smoke-test setting, < 60 s on a 2-core
  machine) and ``--json OUT`` (every figure, the configuration and the machine);
- measures peak memory of one model in a fresh subprocess: on CPU the peak resident set size of that
  process (Linux ``VmHWM``, reset when the measured block starts) minus its resident size once the imports
  are done, on CUDA
  ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (eks.py keeps ``ru_maxrss``, see
  :func:`ru_maxrss_bytes` and BENCHMARKS.md).
"""

from __future__ import annotations

import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------- machine and load


def load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def print_load(when: str) -> list[float]:
    load = load_average()
    print(f"load average {load} at {when} ({os.cpu_count()} CPUs; other jobs on the machine inflate and "
          "scatter the times)", flush=True)
    return load


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def provenance() -> dict[str, Any]:
    """Which code and which bundled models the figures came from: the git commit (and whether the tree had
    changes) and the first 16 hex digits of each bundled model's weights' SHA-256."""
    import hashlib

    out: dict[str, Any] = {}
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            out["git_commit"] = commit.stdout.strip()
            out["git_tree_changed"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    models = {}
    for weights in sorted((ROOT / "resources" / "models").glob("*/model.safetensors")):
        digest = hashlib.sha256()
        with open(weights, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        models[weights.parent.name] = digest.hexdigest()[:16]
    out["bundled_models_sha256"] = models
    return out


def machine_info(device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """What the figures came from: CPU, RAM, Python, torch, threads, (on CUDA) the GPU, and the code/models."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "threads": threads,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads_default"] = torch.get_num_threads()
        if device.startswith("cuda") and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
            info["gpus"] = torch.cuda.device_count()
    except ImportError:
        pass
    info.update(provenance())
    return info


# ---------------------------------------------------------------- arguments and output


def print_config(config: Mapping[str, Any], *, omit: Iterable[str] = (), extra: str = "") -> None:
    """``config: k=v, k=v...`` (the keys in ``omit`` left out, ``extra`` appended), the first line of every script."""
    omit = set(omit)
    print("config: " + ", ".join(f"{k}={v}" for k, v in config.items() if k not in omit) + extra, flush=True)


def add_common_arguments(p, *, device: bool = True, threads_default: int = 2) -> None:
    if device:
        p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=threads_default,
                   help="torch CPU threads (0 = torch's default)")
    p.add_argument("--quick", action="store_true", help="smallest settings, a smoke test (< 60 s on 2 cores)")
    p.add_argument("--json", metavar="OUT", help="also write every figure as JSON to OUT")


def quick_defaults(args, defaults: Mapping[str, tuple[Any, Any]]) -> None:
    """Fill each option left at None with its ``(full, quick)`` default, by ``args.quick``."""
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)


def write_json(path: str | Path | None, obj: dict[str, Any], *, announce: bool = True) -> None:
    if not path:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(path)
    if announce:
        print(f"wrote {path}")


def rounded(values: Mapping[str, float], digits: int = 3) -> dict[str, float]:
    return {k: round(v, digits) for k, v in values.items()}


def print_ratios(ratios: Mapping[str, float]) -> None:
    """A blank line, then ``name: 1.23`` a ratio."""
    print()
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}")


def report(benchmark: str, args, config: dict[str, Any], load_start: list[float], load_end: list[float],
           **fields: Any) -> dict[str, Any]:
    """The ``--json`` summary of a script: its name, configuration and machine, then ``fields`` in the order
    given, then the load average at start and end; written to ``args.json`` (when set) and returned."""
    summary = {
        "benchmark": benchmark,
        "config": config,
        "machine": machine_info(args.device, args.threads),
        **fields,
        "load_average": {"start": load_start, "end": load_end},
    }
    write_json(args.json, summary)
    return summary


@contextmanager
def work_folder(workdir: str | Path | None, prefix: str) -> Iterator[Path]:
    """``workdir`` (created if needed, kept afterwards), or a new temporary folder removed on exit."""
    if workdir:
        folder = Path(workdir)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    tmp = tempfile.mkdtemp(prefix=prefix)
    try:
        yield Path(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def set_threads(threads: int) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def check_device(device: str) -> None:
    """Fail early (with one line) when CUDA is asked for and absent."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SystemExit(f"--device {device}: no CUDA GPU is available here")


# ---------------------------------------------------------------- timing and memory


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


class Timer:
    """Wall time (``perf_counter``) of a block, with ``torch.cuda.synchronize`` on both ends on CUDA; also the
    process CPU time (all threads, ``process_time``), which waiting for a busy machine's cores inflates less."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = str(device)
        self.seconds = 0.0
        self.cpu_seconds = 0.0

    def __enter__(self) -> Timer:
        sync(self.device)
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        sync(self.device)
        self.seconds = time.perf_counter() - self._t0
        self.cpu_seconds = time.process_time() - self._c0


def time_calls(fn: Callable[[], object], calls: int, device: str = "cpu") -> list[float]:
    """Wall seconds of ``calls`` back-to-back calls of ``fn``, each timed by its own :class:`Timer`."""
    seconds = []
    for _ in range(calls):
        with Timer(device) as t:
            fn()
        seconds.append(t.seconds)
    return seconds


def interleaved_rounds(calls: Mapping[str, Callable[[], object]], rounds: int, device: str = "cpu",
                       seed: int = 0) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """``rounds`` rounds in which every call runs once, in an order shuffled by ``random.Random(seed)``, so a
    slow spell of a shared machine hits them all alike. Returns the wall and the CPU seconds of each call by
    name, one per round (each timed by a :class:`Timer` on ``device``)."""
    names = list(calls)
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    rng = random.Random(seed)
    for _ in range(rounds):
        for k in rng.sample(names, len(names)):
            with Timer(device) as t:
                calls[k]()
            wall[k].append(t.seconds)
            cpu[k].append(t.cpu_seconds)
    return wall, cpu


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_bytes() -> int:
    """Peak resident size of this process: Linux ``VmHWM`` (this process image's own high-water mark, reset by
    :func:`reset_peak_rss`), else ``ru_maxrss``. ``ru_maxrss`` alone is wrong for a child process on Linux:
    execve keeps the parent's resident size at fork time as a floor, so a worker started from a parent that
    had generated a large volume reports that parent's size."""
    hwm = _proc_status_kib("VmHWM")
    if hwm is not None:
        return hwm * 1024
    return ru_maxrss_bytes()


def ru_maxrss_bytes() -> int:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in bytes (Linux reports KiB, macOS bytes); never reset, and on
    Linux floored at the parent's resident size at fork time (see :func:`peak_rss_bytes`)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current resident size (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the peak so far is the best available
        return peak_rss_bytes()


class PeakMemory:
    """Peak memory of a block in this (fresh) process, in MiB.

    CPU: the peak resident size during the block (``VmHWM``, reset at the start; see :func:`peak_rss_bytes`)
    minus the resident size at the start (the start is taken once the imports are done, so the libraries are
    not counted). CUDA: ``max_memory_allocated`` minus the memory allocated at the start; the host-side RSS
    delta is recorded too.
    """

    def __init__(self, device: str = "cpu") -> None:
        self.device = str(device)
        self.result: dict[str, float] = {}

    def __enter__(self) -> PeakMemory:
        self.reset = reset_peak_rss()
        self.rss_start = current_rss_bytes()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.gpu_start = torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc: object) -> None:
        rss = (peak_rss_bytes() - self.rss_start) / 2**20
        self.result = {"rss_start_mb": round(self.rss_start / 2**20, 1), "peak_rss_delta_mb": round(rss, 1),
                       "peak_reset": self.reset}
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            gpu = (torch.cuda.max_memory_allocated() - self.gpu_start) / 2**20
            self.result["peak_gpu_mb"] = round(gpu, 1)
        self.result["peak_mb"] = self.result.get("peak_gpu_mb", self.result["peak_rss_delta_mb"])


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """Median over rounds of a/b measured in the same round (robust to a machine that slows down and
    speeds up during the run)."""
    return statistics.median(x / y for x, y in zip(a, b))


# ---------------------------------------------------------------- subprocesses


def child_env(threads: int | None = None, extra: dict[str, str] | None = None, *,
              inherit_omp: bool = True) -> dict[str, str]:
    """This process's environment with the repository on PYTHONPATH, unbuffered output and, when ``threads``
    is set, OMP_NUM_THREADS = threads; without ``threads`` an inherited OMP_NUM_THREADS is kept, or dropped
    with ``inherit_omp=False`` (so torch in the child picks its own default)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    elif not inherit_omp:
        env.pop("OMP_NUM_THREADS", None)
    env.update(extra or {})
    return env


def last_json_line(stdout: str) -> dict[str, Any] | None:
    """The last line of ``stdout`` that starts with ``{``, parsed; None when there is none."""
    lines = [ln for ln in stdout.strip().splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def run_worker(script: str | Path, argv: Sequence[str], *, threads: int | None = None,
               timeout: float | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python script argv`` in a fresh process; its last stdout line is a JSON object."""
    cmd = [sys.executable, str(script), *argv]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env or child_env(threads), timeout=timeout,
                         check=False)
    if out.returncode != 0:
        raise SystemExit(f"benchmark worker failed ({' '.join(cmd[1:])}):\n{out.stderr[-4000:]}")
    data = last_json_line(out.stdout)
    if data is None:
        raise SystemExit(f"benchmark worker printed no JSON ({' '.join(cmd[1:])}):\n{out.stdout[-2000:]}")
    return data


def fmt_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table, right-aligned numbers, for the console."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
