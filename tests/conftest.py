"""Shared fixtures. Real scans come from tests/data (a copy of ../shared/data/real)."""

from __future__ import annotations

import gc
import os
import shutil
from pathlib import Path

import pytest

# pytest-xvfb gives the session a virtual X server (the VTK widget needs one). Without Xvfb,
# Qt falls back to offscreen and the tests that need real OpenGL skip themselves.
if not os.environ.get("DISPLAY") and shutil.which("Xvfb") is None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
DATA_DIR = TESTS_DIR / "data"


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def ct_dicom_dir() -> Path:
    return DATA_DIR / "ct_abdomen_dicom"


@pytest.fixture(scope="session")
def ct_seg_path() -> Path:
    return DATA_DIR / "ct_abdomen_dicom_seg.nii.gz"


@pytest.fixture(scope="session")
def mni_t1_path() -> Path:
    return DATA_DIR / "mr_brain_mni152" / "t1.nii.gz"


@pytest.fixture(scope="session", autouse=True)
def _pyside_refcount_guard():
    """The app applies this guard at start (app/qt_fixes.py); tests that emit many signals need it too."""
    try:
        from lorkd_studio.qt_fixes import protect_singletons
    except ImportError:  # pragma: no cover - app not installed
        yield
        return
    protect_singletons()
    yield


@pytest.fixture(autouse=True)
def _torch_threads():
    """Keep torch deterministic and light on the 2-core CI machine."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield


@pytest.fixture(autouse=True)
def _garbage_collector_restored():
    """In-process jobs freeze the collector's heap (app/runtime_policy.py); no test may inherit that or a
    disabled collector from another."""
    yield
    gc.unfreeze()
    gc.enable()
