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


APP_DIR = Path(__file__).resolve().parents[1] / "app"
SERVICES_DIR = APP_DIR / "services"


def core_imports(path: Path) -> list[str]:
    """Where a module imports lorkd_core: import statements (anywhere, TYPE_CHECKING blocks included) and
    ``importlib.import_module("lorkd_core...")`` / ``__import__("lorkd_core...")`` calls, as ``line: what``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
        found += [f"{node.lineno}: {n}" for n in names if n.split(".")[0] == "lorkd_core"]
    return found


def app_modules_importing_core(app_dir: Path = APP_DIR) -> dict[str, list[str]]:
    services = app_dir / "services"
    return {str(path.relative_to(app_dir.parent)): hits for path in sorted(app_dir.rglob("*.py"))
            if services not in path.parents and (hits := core_imports(path))}


def test_app_reaches_lorkd_core_only_through_services():
    modules = sorted(APP_DIR.rglob("*.py"))
    assert len(modules) > 30 and any(SERVICES_DIR in p.parents for p in modules)
    offenders = app_modules_importing_core()
    assert not offenders, f"only app/services may import lorkd_core; route these through it: {offenders}"
    # the services do use it (the check above would pass vacuously on a renamed package)
    assert any(core_imports(p) for p in SERVICES_DIR.rglob("*.py"))


def test_the_service_layer_check_catches_every_form_of_import(tmp_path):
    app = tmp_path / "app"
    (app / "services").mkdir(parents=True)
    (app / "panels").mkdir()
    (app / "services" / "core.py").write_text("from lorkd_core.errors import LorkdError\n")
    (app / "panels" / "ok.py").write_text("from ..services.core import LorkdError\nimport lorkd_coreish\n")
    (app / "panels" / "plain.py").write_text("import lorkd_core.io as io\n")
    (app / "panels" / "lazy.py").write_text("def f():\n    from lorkd_core.engine import train\n")
    (app / "panels" / "typing.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from lorkd_core.io import Scan\n")
    (app / "panels" / "dynamic.py").write_text("import importlib\nm = importlib.import_module('lorkd_core.cli')\n")
    offenders = app_modules_importing_core(app)
    assert offenders == {"app/panels/dynamic.py": ["2: lorkd_core.cli"], "app/panels/lazy.py": ["2: lorkd_core.engine"],
                         "app/panels/plain.py": ["1: lorkd_core.io"], "app/panels/typing.py": ["3: lorkd_core.io"]}
