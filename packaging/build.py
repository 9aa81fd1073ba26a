"""Build the self-contained LoRKD Studio folder with PyInstaller.

    python packaging/build.py --out dist/

gives ``dist/lorkd-studio/`` (onedir): the ``lorkd-studio`` executable, a ``lorkd`` command-line launcher,
the bundled demo scan and models, ``share/applications/lorkd-studio.desktop``, ``share/icons/`` and, on
Linux, ``install-desktop-entry.sh``. PyInstaller's intermediate files go to ``--work`` (default
``build/pyinstaller``). Both default folders are git-ignored.

Needs the app's dependencies (``pip install -e .`` or ``pip install .``) and ``pip install pyinstaller``
in the Python that runs this script. ``--smoke`` runs ``--help`` of both programs in the built folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

PACKAGING = Path(__file__).resolve().parent
ROOT = PACKAGING.parent
SPEC = PACKAGING / "lorkd_studio.spec"
APP_NAME = "lorkd-studio"

POSIX_LAUNCHER = """#!/bin/sh
# lorkd, the LoRKD command line, from the LoRKD Studio folder: the frozen program runs "-m lorkd_core".
here=$(dirname "$(readlink -f "$0" 2>/dev/null || echo "$0")")
exec "$here/lorkd-studio" -m lorkd_core "$@"
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Build dist/lorkd-studio/ (PyInstaller onedir)")
    p.add_argument("--out", default=str(ROOT / "dist"), help="folder that receives lorkd-studio/ (default: dist/)")
    p.add_argument("--work", default=str(ROOT / "build" / "pyinstaller"),
                   help="PyInstaller work folder (default: build/pyinstaller/)")
    p.add_argument("--clean", action="store_true", help="empty PyInstaller's cache and work folder first")
    p.add_argument("--smoke", action="store_true", help="run --help of the built programs afterwards")
    return p.parse_args(argv)


def run_pyinstaller(out: Path, work: Path, clean: bool) -> None:
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
           "--distpath", str(out), "--workpath", str(work)]
    if clean:
        cmd.append("--clean")
    cmd.append(str(SPEC))
    work.mkdir(parents=True, exist_ok=True)
    print("+", " ".join(cmd), flush=True)
    # cwd: the work folder, so that neither the repository root nor packaging/ shadows an import
    subprocess.run(cmd, check=True, cwd=work)


def add_extras(folder: Path) -> None:
    """Desktop entry, icons and the command-line launcher."""
    apps = folder / "share" / "applications"
    icons = folder / "share" / "icons"
    apps.mkdir(parents=True, exist_ok=True)
    icons.mkdir(parents=True, exist_ok=True)
    shutil.copy2(PACKAGING / "linux" / "lorkd-studio.desktop", apps / "lorkd-studio.desktop")
    for icon in ("lorkd-studio.png", "lorkd-studio.svg"):
        shutil.copy2(PACKAGING / "icons" / icon, icons / icon)
    if sys.platform.startswith("win"):
        return  # lorkd.exe is built by the spec
    launcher = folder / "lorkd"
    launcher.write_text(POSIX_LAUNCHER, encoding="utf-8")
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    if sys.platform.startswith("linux"):
        shutil.copy2(PACKAGING / "linux" / "install-desktop-entry.sh", folder / "install-desktop-entry.sh")


def folder_size(folder: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            p = Path(dirpath, f)
            if not p.is_symlink():
                total += p.stat().st_size
    return total


def smoke(folder: Path) -> None:
    exe = folder / (APP_NAME + (".exe" if sys.platform.startswith("win") else ""))
    cli = folder / ("lorkd.exe" if sys.platform.startswith("win") else "lorkd")
    for cmd in ([str(exe), "--help"], [str(cli), "--help"]):
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, timeout=300)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    work = Path(args.work).resolve()
    start = time.perf_counter()
    try:
        run_pyinstaller(out, work, args.clean)
    except subprocess.CalledProcessError as exc:
        print(f"build.py: PyInstaller failed with exit code {exc.returncode}", file=sys.stderr)
        return 1
    folder = out / APP_NAME
    add_extras(folder)
    elapsed = time.perf_counter() - start
    print(f"build.py: built {folder} in {elapsed:.0f} s; {folder_size(folder) / 2**20:.0f} MiB")
    if args.smoke:
        smoke(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
