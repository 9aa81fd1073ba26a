"""Checks of a built folder against the installed package (the figures in packaging/README.md come from here).

    python packaging/verify.py screenshots --frozen dist/lorkd-studio/lorkd-studio --runs 3 --out /tmp/lorkd-verify
    python packaging/verify.py modules --frozen-dir dist/lorkd-studio --work build/pyinstaller/lorkd_studio

``screenshots`` runs ``xvfb-run -a PROGRAM --screenshot OUT.png`` alternately for the frozen program and
the installed ``lorkd-studio`` (``--runs`` times each), times each run to the moment the PNG exists and
to the process exit, and compares the last two screenshots pixel by pixel (a diff image is written
beside them). ``modules`` lists the modules that the installed app loads during a screenshot run but
that the frozen folder does not contain (hidden imports the spec may be missing).

Linux only (xvfb-run); needs numpy, Pillow and scipy, all dependencies of the app already.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_run(cmd: list[str], out: Path, timeout: float) -> dict:
    """Run cmd; seconds until ``out`` exists and until exit."""
    import resource

    if out.exists():
        out.unlink()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    written = None
    while proc.poll() is None:
        if written is None and out.exists():
            written = time.perf_counter() - start
        if time.perf_counter() - start > timeout:
            proc.kill()
            break
        time.sleep(0.02)
    exited = time.perf_counter() - start
    log = proc.stdout.read() if proc.stdout else ""
    proc.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if written is None and out.exists():
        written = exited
    return {"cmd": cmd, "rc": proc.returncode, "written_s": written, "exit_s": exited, "cpu_s": cpu,
            "load_avg_1min": os.getloadavg()[0], "log_tail": log[-2000:]}


def compare_png(a: Path, b: Path, diff_out: Path) -> dict:
    import numpy as np
    from PIL import Image
    from scipy import ndimage

    ia = np.asarray(Image.open(a).convert("RGB"), dtype=np.int16)
    ib = np.asarray(Image.open(b).convert("RGB"), dtype=np.int16)
    if ia.shape != ib.shape:
        return {"same_size": False, "size_a": list(ia.shape), "size_b": list(ib.shape)}
    d = np.abs(ia - ib).max(axis=2)
    changed = d > 0
    strong = d > 32
    labels, n = ndimage.label(ndimage.binary_dilation(changed, iterations=3))
    boxes = []
    for sl in ndimage.find_objects(labels):
        if sl is None:
            continue
        ys, xs = sl
        boxes.append({"x": xs.start, "y": ys.start, "w": xs.stop - xs.start, "h": ys.stop - ys.start,
                      "pixels": int(changed[sl].sum())})
    boxes.sort(key=lambda r: -r["pixels"])
    vis = (np.asarray(Image.open(b).convert("L"), dtype=np.float32) * 0.35).astype(np.uint8)
    vis = np.stack([vis, vis, vis], axis=2)
    vis[changed] = (255, 0, 255)
    Image.fromarray(vis).save(diff_out)
    return {
        "same_size": True,
        "size": [int(ia.shape[1]), int(ia.shape[0])],
        "identical": bool(not changed.any()),
        "changed_pixels": int(changed.sum()),
        "changed_fraction": float(changed.mean()),
        "changed_over_32": int(strong.sum()),
        "mean_abs_diff": float(np.abs(ia - ib).mean()),
        "regions": boxes[:12],
        "diff_image": str(diff_out),
    }


def resource_differences(frozen_exe: Path) -> list[str]:
    """Files of the bundled lorkd_resources that differ from the installed package's (the demo models may
    have been retrained since the build: then the two screenshots cannot match)."""
    import filecmp

    from lorkd_resources import RESOURCES_DIR

    bundled = frozen_exe.parent / "_internal" / "lorkd_resources"
    out = []
    for f in sorted(RESOURCES_DIR.rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts and f.suffix not in (".py", ".pyc"):
            rel = f.relative_to(RESOURCES_DIR)
            if not (bundled / rel).is_file() or not filecmp.cmp(f, bundled / rel, shallow=False):
                out.append(rel.as_posix())
    return out


def cmd_screenshots(args: argparse.Namespace) -> int:
    if shutil.which("xvfb-run") is None:
        print("verify.py: xvfb-run not found", file=sys.stderr)
        return 2
    changed = resource_differences(Path(args.frozen).resolve())
    if changed:
        print("verify.py: warning: the installed resources differ from the bundled ones (rebuild first): "
              + ", ".join(changed), file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    installed = shutil.which("lorkd-studio") if args.installed is None else args.installed
    programs = {"frozen": str(Path(args.frozen).resolve()), "installed": installed}
    runs: dict[str, list[dict]] = {k: [] for k in programs}
    for i in range(args.runs):
        for kind, exe in programs.items():  # alternate, so load changes on the machine hit both alike
            png = out / f"{kind}.png"
            r = timed_run(["xvfb-run", "-a", exe, "--screenshot", str(png)], png, args.timeout)
            print(f"run {i + 1} {kind:9s} rc={r['rc']} png after {r['written_s'] or float('nan'):.2f} s, "
                  f"exit after {r['exit_s']:.2f} s, cpu {r['cpu_s']:.1f} s, load {r['load_avg_1min']:.1f}",
                  flush=True)
            if r["rc"] != 0:
                print(r["log_tail"], file=sys.stderr)
            runs[kind].append(r)
    summary = {"runs": runs, "median": {}, "resources_differ": changed}
    for kind, rs in runs.items():
        ok = [r for r in rs if r["rc"] == 0 and r["written_s"] is not None]
        summary["median"][kind] = {
            "ok_runs": len(ok),
            "written_s": statistics.median(r["written_s"] for r in ok) if ok else None,
            "exit_s": statistics.median(r["exit_s"] for r in ok) if ok else None,
            "cpu_s": statistics.median(r["cpu_s"] for r in ok) if ok else None,
        }
    if all((out / f"{k}.png").exists() for k in programs):
        summary["diff"] = compare_png(out / "installed.png", out / "frozen.png", out / "diff.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({"median": summary["median"], "diff": summary.get("diff")}, indent=2))
    return 0 if all(v["ok_runs"] == args.runs for v in summary["median"].values()) else 1


DUMP = """
import sys
from lorkd_studio.main import main
code = main(["--screenshot", sys.argv[1]])
open(sys.argv[2], "w").write("\\n".join(sorted(sys.modules)))
sys.exit(code)
"""


def bundle_modules(frozen_dir: Path, work: Path) -> set[str]:
    """Module names in the frozen folder: the PYZ archive, base_library.zip, .py files and extensions."""
    import zipfile

    from PyInstaller.archive.readers import ZlibArchiveReader

    have = set(ZlibArchiveReader(str(work / "PYZ-00.pyz")).toc)
    for n in zipfile.ZipFile(work / "base_library.zip").namelist():
        if n.endswith(".pyc"):
            have.add(n[:-4].replace("/", ".").removesuffix(".__init__"))
    internal = frozen_dir / "_internal"
    for dirpath, _dirs, files in os.walk(internal):
        for f in files:
            rel = Path(dirpath, f).relative_to(internal).as_posix()
            if rel.startswith("python3") and "/lib-dynload/" in rel:
                rel = rel.split("/lib-dynload/")[1]
            if f.endswith((".so", ".pyd")) and (".cpython-" in f or ".abi3." in f or f.endswith(".pyd")):
                have.add(rel.split(".cpython-")[0].split(".abi3.")[0].removesuffix(".pyd").replace("/", "."))
            elif f.endswith(".py"):
                have.add(rel[:-3].replace("/", ".").removesuffix(".__init__"))
    return have


def bundle_extensions(frozen_dir: Path) -> set[str]:
    internal = frozen_dir / "_internal"
    out = set()
    for f in internal.rglob("*"):
        if f.suffix in (".so", ".pyd") and (".cpython-" in f.name or ".abi3." in f.name or f.suffix == ".pyd"):
            rel = f.relative_to(internal).as_posix()
            out.add(rel.split(".cpython-")[0].split(".abi3.")[0].removesuffix(".pyd").replace("/", "."))
    return out


def cmd_modules(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp, "modules.txt")
        subprocess.run(["xvfb-run", "-a", sys.executable, "-c", DUMP, str(Path(tmp, "shot.png")), str(listing)],
                       check=True, timeout=args.timeout)
        loaded = listing.read_text().split()
    have = bundle_modules(Path(args.frozen_dir), Path(args.work))
    # not files in the bundle, but fine: built into the interpreter or an extension, or aliases
    skip_prefixes = ("__editable__", "shibokensupport", "signature_bootstrap", "__feature__",
                     "requests.packages.", "torch._C.", "PySide6.support", "typing.", "os.path",
                     "xml.parsers.expat.", "pyexpat.", "six.moves", "swig_runtime_data", "cython_runtime",
                     "_cython_", "_frozen_importlib")
    # Cython / pybind11 modules registered under a short name (scipy's _ni_label) or as submodules of an
    # extension (scipy.optimize._highspy._core.cb); struct lives in the executable (PyInstaller's loader)
    last_parts = {h.rsplit(".", 1)[-1] for h in have}

    def known(m: str) -> bool:
        if m in have or m in sys.builtin_module_names or m.startswith(skip_prefixes):
            return True
        if m in ("__main__", "__mp_main__", "torch.classes", "torch.ops", "struct"):
            return True
        if "." not in m and m in last_parts:
            return True
        parts = m.split(".")
        return any(".".join(parts[:i]) in have and ".".join(parts[:i]) in extensions for i in range(1, len(parts)))

    extensions = bundle_extensions(Path(args.frozen_dir))
    missing = [m for m in loaded if not known(m)]
    # a submodule whose package is missing is reported once, as the package
    tops = [m for m in missing if not any(m.startswith(p + ".") for p in missing)]
    print(f"{len(loaded)} modules loaded by the installed app; {len(tops)} not in the frozen folder:")
    for m in tops:
        print("  ", m)
    return 1 if tops else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("screenshots", help="time and compare screenshot runs, frozen vs installed")
    s.add_argument("--frozen", default="dist/lorkd-studio/lorkd-studio")
    s.add_argument("--installed", help="installed program (default: lorkd-studio on PATH)")
    s.add_argument("--runs", type=int, default=3)
    s.add_argument("--out", default=str(Path(tempfile.gettempdir(), "lorkd-verify")))
    s.add_argument("--timeout", type=float, default=600.0)
    s.set_defaults(func=cmd_screenshots)
    m = sub.add_parser("modules", help="modules the installed app loads that the frozen folder lacks")
    m.add_argument("--frozen-dir", default="dist/lorkd-studio")
    m.add_argument("--work", default="build/pyinstaller/lorkd_studio")
    m.add_argument("--timeout", type=float, default=600.0)
    m.set_defaults(func=cmd_modules)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
