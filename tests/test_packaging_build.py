"""Fast static checks of packaging/ (the PyInstaller build itself takes minutes and is not run here).

The spec's helper functions are taken out of packaging/lorkd_studio.spec with ``ast`` and run alone, so
these tests check the same code the build runs without importing PyInstaller.
"""

from __future__ import annotations

import ast
import configparser
import fnmatch
import importlib.util
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
SPEC = PACKAGING / "lorkd_studio.spec"
DESKTOP = PACKAGING / "linux" / "lorkd-studio.desktop"
ICON_PNG = PACKAGING / "icons" / "lorkd-studio.png"
ICON_SVG = PACKAGING / "icons" / "lorkd-studio.svg"
MAPPING = {"lorkd_core": "lorkd_core", "lorkd_studio": "app", "lorkd_resources": "resources"}


@pytest.fixture(autouse=True)
def _torch_threads():
    """Overrides conftest's fixture of this name for this module: nothing here uses torch, and importing it
    would cost seconds."""
    yield


def spec_namespace(*names: str) -> dict:
    """Run only the named top-level functions / assignments of the spec (plus os and ROOT)."""
    tree = ast.parse(SPEC.read_text(), filename=str(SPEC))
    wanted = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in names:
            wanted.append(node)
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in names for t in node.targets):
            wanted.append(node)
    found = {n.name if isinstance(n, ast.FunctionDef) else n.targets[0].id for n in wanted}
    assert found == set(names), f"the spec no longer defines {sorted(set(names) - found)}"
    ns: dict = {"os": os, "ROOT": str(ROOT)}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), str(SPEC), "exec"), ns)  # noqa: S102
    return ns


def test_spec_is_python_and_names_existing_files():
    tree = ast.parse(SPEC.read_text(), filename=str(SPEC))
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert "frozen_entry.py" in strings and (PACKAGING / "frozen_entry.py").is_file()
    assert "lorkd-studio.png" in strings and ICON_PNG.is_file()
    # onedir: the executable is collected with COLLECT, binaries stay outside it
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert {"Analysis", "PYZ", "EXE", "COLLECT"} <= calls


def test_spec_ships_every_resource_file():
    ns = spec_namespace("RESOURCE_SKIP_DIRS", "RESOURCE_SKIP_SUFFIXES", "resource_datas")
    shipped = {(Path(src).resolve(), Path(dest).as_posix()) for src, dest in ns["resource_datas"]()}
    resources = ROOT / "resources"
    expected = set()
    for f in resources.rglob("*"):
        if f.is_file() and "__pycache__" not in f.parts and f.suffix not in (".py", ".pyc"):
            rel = f.parent.relative_to(resources).as_posix()
            expected.add((f.resolve(), "lorkd_resources" if rel == "." else f"lorkd_resources/{rel}"))
    assert shipped == expected
    names = {src.relative_to(resources).as_posix() for src, _ in shipped}
    # what the app loads at run time must be among them
    for required in ("regions.json", "demo/ct.nii.gz"):
        assert required in names
    # and everything pyproject installs as package data of lorkd_resources
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "lorkd_resources"]
    installed = {n for n in (f.relative_to(resources).as_posix() for f in resources.rglob("*") if f.is_file())
                 if any(fnmatch.fnmatch(n, p) or fnmatch.fnmatch(n, p.removeprefix("**/")) for p in patterns)}
    assert installed <= names


def test_spec_hidden_imports_cover_every_package(tmp_path):
    ns = spec_namespace("submodules")
    for name, folder in MAPPING.items():
        (tmp_path / name).symlink_to(ROOT / folder, target_is_directory=True)
    found = set()
    for name in ("lorkd_studio", "lorkd_core"):
        found |= set(ns["submodules"](str(tmp_path), name))
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert listed - {"lorkd_resources"} <= found
    # the CLI loads its commands with importlib: every command module must be a hidden import
    for f in (ROOT / "lorkd_core" / "commands").glob("*.py"):
        if f.stem != "__init__":
            assert f"lorkd_core.commands.{f.stem}" in found
    assert "lorkd_studio.main" in found


def test_spec_drops_torch_extras_but_keeps_shm_manager():
    ns = spec_namespace("DROP_PREFIXES", "KEEP_PREFIXES", "DROP_NAMES", "keep")
    keep = ns["keep"]
    j = os.path.join
    assert keep((j("torch", "bin", "torch_shm_manager"), "src", "DATA"))
    assert keep((j("torch", "lib", "libtorch_cpu.so"), "src", "BINARY"))
    assert not keep((j("torch", "bin", "test_api"), "src", "DATA"))
    assert not keep((j("torch", "include", "ATen", "ATen.h"), "src", "DATA"))
    assert not keep((j("torch", "lib", "libtorchbind_test.so"), "src", "BINARY"))


def read_desktop() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    cp.optionxform = str  # keys are case-sensitive
    cp.read(DESKTOP, encoding="utf-8")
    return cp


def test_desktop_entry_has_required_keys():
    entry = read_desktop()["Desktop Entry"]
    assert entry["Type"] == "Application"
    assert entry["Name"] == "LoRKD Studio"
    assert entry["Exec"].split()[0] == "lorkd-studio"
    assert entry["Icon"] == ICON_PNG.stem == ICON_SVG.stem
    cats = entry["Categories"]
    assert cats.endswith(";") and "Science" in cats.split(";")
    assert entry.get("Terminal", "false") == "false"


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils not installed")
def test_desktop_entry_validates():
    r = subprocess.run(["desktop-file-validate", str(DESKTOP)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_icons_are_small_square_images():
    data = ICON_PNG.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (256, 256)
    assert len(data) < 100_000 and ICON_SVG.stat().st_size < 20_000
    svg = ICON_SVG.read_text()
    assert "<svg" in svg and 'viewBox="0 0 256 256"' in svg


def load_entry():
    spec = importlib.util.spec_from_file_location("frozen_entry", PACKAGING / "frozen_entry.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_frozen_entry_runs_only_listed_modules(capsys):
    entry = load_entry()
    assert set(entry.RUNNABLE_MODULES) == {"lorkd_core", "torch.distributed.run"}
    assert entry._run_module(["-m", "os"]) == 2
    assert "only lorkd_core" in capsys.readouterr().err
    assert entry._run_module(["-u"]) == 2


def test_frozen_entry_passes_exit_codes_and_argv(monkeypatch, tmp_path):
    entry = load_entry()
    seen = {}

    def fake_run_module(name, run_name, alter_sys):
        seen.update(name=name, run_name=run_name, argv=list(entry.sys.argv))
        raise SystemExit(3)

    import runpy

    monkeypatch.setattr(runpy, "run_module", fake_run_module)
    monkeypatch.setattr(entry, "_unbuffered", lambda: seen.update(unbuffered=True))
    monkeypatch.setattr(entry.sys, "argv", ["lorkd-studio"])
    assert entry._run_module(["-u", "-m", "lorkd_core", "info", "x.nii.gz"]) == 3
    assert seen["name"] == "lorkd_core" and seen["run_name"] == "__main__"
    assert seen["argv"][1:] == ["info", "x.nii.gz"] and seen["unbuffered"]


def test_build_script_writes_cli_launcher_and_extras(tmp_path):
    spec = importlib.util.spec_from_file_location("lorkd_build", PACKAGING / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert "-m lorkd_core" in build.POSIX_LAUNCHER
    folder = tmp_path / "lorkd-studio"
    folder.mkdir()
    build.add_extras(folder)
    assert (folder / "share" / "applications" / "lorkd-studio.desktop").read_bytes() == DESKTOP.read_bytes()
    assert (folder / "share" / "icons" / "lorkd-studio.png").is_file()
    if os.name == "posix":
        assert os.access(folder / "lorkd", os.X_OK)
