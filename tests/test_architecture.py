"""The backend stays Qt-free: lorkd_core imports none of the GUI packages, directly or through a dependency."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

GUI_PACKAGES = {"PySide6", "vtk", "pyvista", "pyvistaqt", "qasync", "lorkd_studio"}
CORE_DIR = Path(__file__).resolve().parents[1] / "lorkd_core"


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_source_never_imports_gui_packages():
    offenders = {}
    for path in sorted(CORE_DIR.rglob("*.py")):
        bad = _imported_top_levels(path) & GUI_PACKAGES
        if bad:
            offenders[str(path.relative_to(CORE_DIR.parent))] = sorted(bad)
    assert not offenders, f"lorkd_core must stay Qt-free, found: {offenders}"


def test_importing_every_core_module_loads_no_gui_package():
    # A fresh interpreter, so modules the GUI tests already imported do not hide a leak.
    code = (
        "import importlib, pkgutil, sys, lorkd_core\n"
        "for m in pkgutil.walk_packages(lorkd_core.__path__, 'lorkd_core.'):\n"
        "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
        f"bad = sorted(n for n in sys.modules if n.split('.')[0] in {sorted(GUI_PACKAGES)!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"GUI packages loaded by lorkd_core: {out.stdout.strip()}"
