"""App start-up to the first rendered demo, and the import times that make it up.

    python benchmarks/app_startup.py                 # 5 runs + phase breakdown + import times
    python benchmarks/app_startup.py --device cuda   # the app's --device flag (the expert runs on the GPU)

``lorkd-studio --screenshot OUT.png`` opens the bundled demo case, suggests its region, runs the preselected
expert on the worker thread, waits for the slices and 3D surfaces, saves a PNG of the window and exits
(app/main.py, app/screenshot.py). Its wall time, from launching the process to its exit, is "start-up to first
rendered demo". Without a DISPLAY the benchmark starts one Xvfb server for all runs (so the server's own
start-up is not counted; ``--display xvfb-run`` wraps every run in ``xvfb-run -a`` instead, ``--display
offscreen`` uses Qt's offscreen platform as ``--screenshot`` does by itself).

Phases (``--phase-runs``): the same ``main()`` of lorkd_studio.main run by this script in a fresh process, with
time stamps hooked onto the app's own signals (nothing in app/ is changed): Qt imported, app modules imported,
window built and shown, model catalog read, demo scan loaded (region suggested), expert result ready (torch
imported + model loaded/merged + segmentation, all on the worker thread), grab started (after the viewer
settled), PNG saved, process exit. The 3D preload thread's end (pyvista/VTK imports) is stamped too.

Imports: each in a fresh process (median of ``--import-reps``), timed around the import statement only:
lorkd_core alone, the backend modules the worker imports on its first task (torch, MONAI, SimpleITK via
lorkd_core.engine.inference and lorkd_core.io), PySide6.QtWidgets, the app's window modules, and the 3D stack.
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

IMPORTS = {
    "python (interpreter only)": "pass",
    "lorkd_core (package)": "import lorkd_core",
    "lorkd_core backend (inference + io: torch, MONAI, SimpleITK)": "import lorkd_core.engine.inference, lorkd_core.io",
    "PySide6.QtWidgets": "import PySide6.QtWidgets",
    "app window modules (lorkd_studio.main_window, screenshot)":
        "import lorkd_studio.main, lorkd_studio.main_window, lorkd_studio.screenshot",
    "3D stack (lorkd_studio.viewer.scene + surfaces: pyvista, VTK)":
        "import lorkd_studio.viewer.scene, lorkd_studio.viewer.surfaces",
}
PHASES = ["interpreter_ready", "qt_imported", "app_imported", "window_built", "window_shown", "catalog_read",
          "scan_loaded", "result_ready", "grab_started", "png_saved", "main_returned"]


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _bench.add_common_arguments(p, device=False, threads_default=0)
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"), help="the app's --device")
    p.add_argument("--runs", type=int, default=None, help="timed lorkd-studio runs (default 5, quick 1)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 1, quick 0)")
    p.add_argument("--phase-runs", type=int, default=None, help="runs with phase stamps (default 3, quick 0)")
    p.add_argument("--import-reps", type=int, default=None, help="fresh processes per import (default 5, quick 1)")
    p.add_argument("--display", default="auto", choices=("auto", "xvfb", "xvfb-run", "offscreen", "existing"),
                   help="auto: $DISPLAY if set, else an Xvfb server started once, else Qt offscreen")
    p.add_argument("--timeout", type=float, default=600, help="seconds per app run")
    p.add_argument("--worker", choices=["phases", "import"], help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--statement", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    _bench.quick_defaults(args, {"runs": (5, 1), "warmup": (1, 0), "phase_runs": (3, 0), "import_reps": (5, 1)})
    return args


# ---------------------------------------------------------------- workers


def worker_import(statement: str) -> dict:
    t0 = time.perf_counter()
    exec(statement, {})  # noqa: S102 - a fixed import statement of this script
    return {"seconds": time.perf_counter() - t0}


def worker_phases(out: str, device: str) -> dict:
    marks: dict[str, float] = {}

    def mark(name: str) -> None:
        marks.setdefault(name, time.time())

    mark("interpreter_ready")
    import PySide6.QtWidgets  # noqa: F401

    mark("qt_imported")
    import lorkd_studio.main as app_main
    import lorkd_studio.main_window  # noqa: F401
    import lorkd_studio.screenshot as shot
    import lorkd_studio.viewer.volume_view as volume_view

    mark("app_imported")
    hooks = []
    try:
        orig_import_3d = volume_view._import_3d

        def import_3d() -> None:
            orig_import_3d()
            mark("3d_preloaded")

        volume_view._import_3d = import_3d
        hooks.append("3d_preloaded")
    except AttributeError:
        pass
    orig_init, orig_start, orig_grab = shot.ScreenshotRun.__init__, shot.ScreenshotRun.start, shot.ScreenshotRun._grab

    def init(self, window, *a, **k):
        mark("window_built")
        orig_init(self, window, *a, **k)
        state = self.session.state
        state.catalog_changed.connect(lambda _models: mark("catalog_read"))
        state.scan_changed.connect(lambda scan: scan is not None and mark("scan_loaded"))
        state.result_changed.connect(lambda result: result is not None and mark("result_ready"))

    def start(self):
        mark("window_shown")
        orig_start(self)

    def grab(self):
        mark("grab_started")
        orig_grab(self)
        mark("png_saved")

    shot.ScreenshotRun.__init__, shot.ScreenshotRun.start, shot.ScreenshotRun._grab = init, start, grab
    argv = ["--screenshot", out] + (["--device", device] if device else [])
    code = app_main.main(argv)
    mark("main_returned")
    return {"code": code, "marks": marks}


# ---------------------------------------------------------------- displays


class Display:
    """Where the app draws: an existing DISPLAY, one Xvfb server for every run, xvfb-run per run, or offscreen."""

    def __init__(self, mode: str) -> None:
        self.server: subprocess.Popen | None = None
        self.prefix: list[str] = []
        self.env: dict[str, str] = {}
        has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
        if mode == "auto":
            mode = "existing" if has_display else ("xvfb" if shutil.which("Xvfb") else "offscreen")
        self.mode = mode
        if mode == "xvfb":
            self._start_xvfb()
        elif mode == "xvfb-run":
            if not shutil.which("xvfb-run"):
                raise SystemExit("--display xvfb-run: xvfb-run is not installed")
            self.prefix = ["xvfb-run", "-a", "-s", "-screen 0 1920x1080x24"]
        elif mode == "offscreen":
            self.env = {"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ""}
        elif not has_display:
            raise SystemExit("--display existing: no DISPLAY is set")

    def _start_xvfb(self) -> None:
        for n in range(90, 200):
            if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
                break
        else:
            raise SystemExit("no free X display number for Xvfb")
        self.server = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1920x1080x24", "-nolisten", "tcp"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not Path(f"/tmp/.X11-unix/X{n}").exists():
            if self.server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"Xvfb :{n} did not start")
            time.sleep(0.05)
        self.env = {"DISPLAY": f":{n}"}
        self.name = f":{n}"

    def child_env(self, threads: int) -> dict[str, str]:
        env = _bench.child_env(threads or None, inherit_omp=False)
        if self.mode != "offscreen":
            env.pop("QT_QPA_PLATFORM", None)
        env.update(self.env)
        if env.get("DISPLAY") == "":
            env.pop("DISPLAY")
        return env

    def close(self) -> None:
        if self.server is not None:
            self.server.terminate()
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.server.kill()
            self.server = None


def _studio_command() -> list[str]:
    exe = shutil.which("lorkd-studio")
    return [exe] if exe else [sys.executable, "-m", "lorkd_studio.main"]


def _timed_run(cmd: list[str], args: argparse.Namespace,
               display: Display) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``cmd`` (after the display's prefix) to its exit; the process and its wall time from launch."""
    cmd = display.prefix + cmd
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=display.child_env(args.threads),
                          timeout=args.timeout, check=False)
    return proc, time.perf_counter() - t0


def app_run(args: argparse.Namespace, display: Display, out: Path) -> dict:
    proc, wall = _timed_run(_studio_command() + ["--screenshot", str(out), "--device", args.device], args, display)
    if proc.returncode != 0 or not out.is_file():
        raise SystemExit(f"lorkd-studio --screenshot failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    out.unlink()
    return {"wall_s": wall}


def phase_run(args: argparse.Namespace, display: Display, out: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "phases", "--out", str(out), "--device",
           args.device]
    launch = time.time()
    proc, wall = _timed_run(cmd, args, display)
    data = _bench.last_json_line(proc.stdout)
    if proc.returncode != 0 or data is None:
        raise SystemExit(f"phase run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    if data["code"] != 0:
        raise SystemExit(f"phase run: the app exited with {data['code']}:\n{proc.stderr[-3000:]}")
    out.unlink(missing_ok=True)
    marks = {k: v - launch for k, v in data["marks"].items()}
    marks["process_exit"] = wall
    return marks


def import_time(statement: str, threads: int) -> dict:
    t0 = time.perf_counter()
    data = _bench.run_worker(Path(__file__).resolve(), ["--worker", "import", "--statement", statement],
                             threads=threads or None)
    data["process_s"] = time.perf_counter() - t0
    return data


# ---------------------------------------------------------------- parent


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.worker == "import":
        print(json.dumps(worker_import(args.statement)))
        return 0
    if args.worker == "phases":
        print(json.dumps(worker_phases(args.out, args.device)))
        return 0
    config = {"device": args.device, "threads": args.threads or "default", "runs": args.runs,
              "warmup": args.warmup, "phase_runs": args.phase_runs, "import_reps": args.import_reps,
              "display": args.display, "quick": args.quick}
    _bench.print_config(config)
    load_start = _bench.print_load("start")
    display = Display(args.display)
    config["display_used"] = display.mode
    print(f"  display: {display.mode}" + (f" {display.name}" if display.mode == "xvfb" else ""), flush=True)
    warm, walls, phases = [], [], []
    imports: dict[str, list[dict]] = {k: [] for k in IMPORTS}
    with _bench.work_folder(None, "lorkd-startup-bench-") as tmp:
        try:
            for i in range(args.warmup):
                warm.append(app_run(args, display, tmp / f"warm{i}.png")["wall_s"])
                print(f"  warm-up run {i + 1}: {warm[-1]:.2f} s (not counted)", flush=True)
            # Plain runs and phase runs alternate, so a slow spell of a shared machine hits both.
            for i in range(max(args.runs, args.phase_runs)):
                if i < args.runs:
                    walls.append(app_run(args, display, tmp / f"run{i}.png")["wall_s"])
                    print(f"  run {i + 1}: {walls[-1]:.2f} s", flush=True)
                if i < args.phase_runs:
                    phases.append(phase_run(args, display, tmp / f"phase{i}.png"))
                    print(f"  phase run {i + 1}: exit after {phases[-1]['process_exit']:.2f} s", flush=True)
            for _ in range(args.import_reps):
                for name, statement in IMPORTS.items():
                    imports[name].append(import_time(statement, args.threads))
        finally:
            display.close()
    load_end = _bench.print_load("end")

    med = _bench.median
    results: dict = {"startup_to_screenshot_s": {"median": round(med(walls), 3), "min": round(min(walls), 3),
                                                 "max": round(max(walls), 3), "runs": [round(w, 3) for w in walls],
                                                 "warmup_runs": [round(w, 3) for w in warm]}}
    print()
    print(f"lorkd-studio --screenshot (start-up to first rendered demo, process wall time): median "
          f"{med(walls):.2f} s over {len(walls)} run(s) (min {min(walls):.2f}, max {max(walls):.2f})")
    if phases:
        names = [n for n in PHASES + ["3d_preloaded", "process_exit"] if any(n in p for p in phases)]
        at = {n: med(p[n] for p in phases if n in p) for n in names}
        results["phases_s_since_launch"] = {n: round(v, 3) for n, v in at.items()}
        results["phase_runs"] = phases
        rows, prev = [], 0.0
        for n in [n for n in names if n != "3d_preloaded"]:
            rows.append([n, f"{at[n]:.2f}", f"{at[n] - prev:+.2f}"])
            prev = at[n]
        if "3d_preloaded" in at:
            rows.append(["3d_preloaded (background thread)", f"{at['3d_preloaded']:.2f}", ""])
        print()
        print(f"phases (median of {len(phases)} run(s), seconds since launch; the worker thread loads the scan "
              "and runs the expert while the UI thread builds the window)")
        print(_bench.fmt_table(["phase", "at s", "since previous"], rows))
    imp = {n: {"import_s": round(med(r["seconds"] for r in rs), 3), "process_s": round(med(r["process_s"] for r in rs), 3)}
           for n, rs in imports.items() if rs}
    results["imports"] = imp
    print()
    print(f"imports, each in a fresh process (median of {args.import_reps})")
    print(_bench.fmt_table(["module(s)", "import s", "process s"],
                           [[n, f"{v['import_s']:.3f}", f"{v['process_s']:.3f}"] for n, v in imp.items()]))
    ratios = {}
    core = imp.get("lorkd_core backend (inference + io: torch, MONAI, SimpleITK)")
    app = imp.get("app window modules (lorkd_studio.main_window, screenshot)")
    if core and app and app["import_s"] > 0:
        ratios["core backend import / app window modules import"] = core["import_s"] / app["import_s"]
    if core:
        ratios["core backend import / start-up median"] = core["import_s"] / med(walls)
    if app:
        ratios["app window modules import / start-up median"] = app["import_s"] / med(walls)
    _bench.print_ratios(ratios)
    _bench.report("app_startup", args, config, load_start, load_end, results=results, ratios=_bench.rounded(ratios))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
