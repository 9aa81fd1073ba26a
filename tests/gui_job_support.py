"""Shared setup for the GUI job tests (test_gui_jobs*.py, test_gui_adapt.py, test_gui_demo_job.py): the tiny
networks and configs, the blob datasets and the tiny teacher (each built once per test session), the torch
worker / session / job manager fixtures, and helpers that drive the job dialog and wait for a job's state.

A test module imports the fixtures it uses by their function names (``worker_fixture``) and lists them in a
module-level ``SHARED_FIXTURES`` tuple (so the import counts as used); pytest finds them among the module's names
and registers each under the name in its decorator (``worker``), which no import shadows. ``asyncio_on_qt`` is
autouse: importing it turns it on for that module only. A fixture's dependencies must be imported too
(``manager`` needs ``worker``).

The session-wide datasets and teacher are read-only inputs: no test writes into them (job outputs go to each
test's own ``tmp_path``), so sharing them keeps the tests independent of one another."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lorkd_studio import aio
from lorkd_studio.jobs.manager import JobManager
from lorkd_studio.panels.jobs_panel import JobsPanel
from lorkd_studio.services.settings import AppSettings
from lorkd_studio.services.worker import TorchWorker
from lorkd_studio.session import Session
from test_engine_train_helpers import make_blob_dataset

from lorkd_core.engine.config import DecomposeConfig, FoundationConfig

TINY_TEACHER = {"name": "monai.UNet", "kwargs": {"channels": [8, 16], "strides": [2], "num_res_units": 0}}
TINY_STUDENT = {"name": "monai.UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}}
PATCH = (12, 12, 12)
WAIT = 60000  # ms: a tiny job on 2 CPU cores
CHECK_WAIT = 30000  # ms: the job dialog's data check / preflight


# ---------------------------------------------------------------------- built once per session

_BUILT: dict[tuple[str, str], Any] = {}


def _once(tmp_path_factory: pytest.TempPathFactory, key: str, build: Callable[[], Any]) -> Any:
    """``build()`` once per pytest session. Each module that imports a session-scoped fixture registers its
    own copy of it, so the scope alone would build it again in every such module."""
    k = (str(tmp_path_factory.getbasetemp()), key)
    if k not in _BUILT:
        _BUILT[k] = build()
    return _BUILT[k]


@pytest.fixture(scope="session", name="dataset")
def dataset_fixture(tmp_path_factory) -> Path:
    """The blob manifest, two cases per region (abdomen, thorax, pelvis)."""
    return _once(tmp_path_factory, "blobs",
                 lambda: make_blob_dataset(tmp_path_factory.mktemp("blobs"), cases_per_region=2))


@pytest.fixture(scope="session", name="small_dataset")
def small_dataset_fixture(tmp_path_factory) -> Path:
    """The blob manifest, one case per region (abdomen, thorax, pelvis)."""
    return _once(tmp_path_factory, "blobs1",
                 lambda: make_blob_dataset(tmp_path_factory.mktemp("blobs1"), cases_per_region=1))


@pytest.fixture(scope="session", name="teacher_dir")
def teacher_dir_fixture(dataset, tmp_path_factory) -> Path:
    """A tiny foundation model (2 steps on ``dataset``): the teacher the decompositions start from."""

    def build() -> Path:
        from lorkd_core.engine.train import train_foundation

        out = tmp_path_factory.mktemp("teacher")
        train_foundation(FoundationConfig(data=str(dataset), out=str(out), steps=2, batch_size=3, patch_size=PATCH,
                                          network=TINY_TEACHER, checkpoint_every=0, warmup_steps=1, device="cpu"))
        return out

    return _once(tmp_path_factory, "teacher", build)


def decompose_cfg(dataset, teacher_dir, out, **changes) -> DecomposeConfig:
    """A tiny decomposition of ``teacher_dir`` on ``dataset`` into ``out`` (``changes`` override the fields)."""
    base = dict(data=str(dataset), out=str(out), teacher=str(teacher_dir), batch_size=3, patch_size=PATCH,
                student=TINY_STUDENT, feature_channels=4, ranks=2, baseline=False, checkpoint_every=0,
                warmup_steps=1, device="cpu", copy_teacher=False)
    base.update(changes)
    return DecomposeConfig(**base)


# ---------------------------------------------------------------------- per test


@pytest.fixture(autouse=True, name="_asyncio_on_qt")
def asyncio_on_qt(qapp):
    yield
    aio.detach()  # subprocess jobs installed qasync's loop on pytest-qt's app: asyncio.run works again after


@pytest.fixture(name="worker")
def worker_fixture(qtbot):
    w = TorchWorker("cpu")
    yield w
    w.shutdown()


@pytest.fixture(name="session")
def session_fixture(tmp_path, qtbot):
    s = Session(AppSettings(tmp_path / "settings.ini"))
    yield s
    s.shutdown()


@pytest.fixture(name="manager")
def manager_fixture(worker, tmp_path) -> JobManager:
    """A job manager on the test's torch worker, its job list in ``tmp_path / "jobs.json"``."""
    return JobManager(worker, tmp_path / "jobs.json")


def jobs_panel(qtbot, manager) -> JobsPanel:
    panel = JobsPanel(manager)
    qtbot.addWidget(panel)
    return panel


def wait_state(qtbot, manager, job_id, states, timeout=WAIT):
    qtbot.waitUntil(lambda: manager.get(job_id).state in states, timeout=timeout)
    return manager.get(job_id).state


def cancel_at(manager, at: int):
    """A ``job_progress`` slot that records every step in ``.steps`` and cancels the job once at step ``at``."""

    def on_progress(job_id, step, total, metrics):
        on_progress.steps.append(step)
        if step >= at and not on_progress.sent:
            on_progress.sent = True
            manager.cancel(job_id)

    on_progress.steps, on_progress.sent = [], False
    return on_progress


def kill_at(manager, at: int):
    """A ``job_progress`` slot that kills the job's process (group) once at step ``at``."""
    killed = {"done": False}

    def on_progress(job_id, step, total, metrics):
        if step >= at and not killed["done"]:
            killed["done"] = True
            manager.process(job_id).kill()

    return on_progress


# ---------------------------------------------------------------------- the job dialog


def wait_report(qtbot, dialog, text: str, timeout=CHECK_WAIT) -> None:
    qtbot.waitUntil(lambda: text in dialog.report.toPlainText(), timeout=timeout)


def check_manifest(qtbot, dialog, manifest, out, until: str) -> None:
    """Point the dialog at a manifest and an output folder, click "Check data", wait for ``until`` in the report."""
    dialog.source.setCurrentIndex(dialog.source.findData("manifest"))
    dialog.data_path.setText(str(manifest))
    dialog.out.setText(str(out))
    dialog.check_button.click()
    wait_report(qtbot, dialog, until)
