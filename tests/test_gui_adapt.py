""""Adapt an expert" from the GUI: the job dialog's second job type, through the same job manager and store
as decompositions (progress, cancel, resume, kill -> interrupted -> resume), ending in a new expert version
that the expert switcher offers with its card and that runs on the loaded scan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gui_job_support import (
    PATCH,
    WAIT,
    asyncio_on_qt,
    cancel_at,
    check_manifest,
    dataset_fixture,
    decompose_cfg,
    jobs_panel,
    kill_at,
    manager_fixture,
    session_fixture,
    teacher_dir_fixture,
    wait_state,
    worker_fixture,
)
from lorkd_studio.jobs.dialog import JobDialog
from lorkd_studio.jobs.manager import CANCEL_NAME, JobManager
from lorkd_studio.jobs.store import JobStore
from lorkd_studio.jobs.wiring import install_jobs
from lorkd_studio.panels.expert_panel import ExpertPanel

from lorkd_core.engine.checkpoint import latest_checkpoint
from lorkd_core.engine.config import AdaptConfig

pytestmark = pytest.mark.gui
# the shared fixtures this module uses: pytest finds them among its names (asyncio_on_qt is autouse)
SHARED_FIXTURES = (asyncio_on_qt, dataset_fixture, manager_fixture, session_fixture, teacher_dir_fixture,
                   worker_fixture)


@pytest.fixture(scope="module")
def parent(dataset, teacher_dir, tmp_path_factory):
    """A tiny decomposition (teacher 2 steps, experts 2 steps): the experts model the new versions start from."""
    from lorkd_core.engine.train import decompose

    out = tmp_path_factory.mktemp("parent")
    decompose(decompose_cfg(dataset, teacher_dir, out, steps=2))
    return out


@pytest.fixture(scope="module")
def thorax_scan(tmp_path_factory):
    """A CT thorax phantom to load (the blob cases read as MR, for which no CT expert is offered)."""
    from lorkd_core.data.phantoms import write_phantom_dataset

    manifest = write_phantom_dataset(tmp_path_factory.mktemp("phantom"), 1, ["thorax"], size=32, findings=False)
    return Path(manifest).parent / "cases" / "thorax_000" / "ct.nii.gz"


def test_adapt_job_from_the_dialog_gives_a_new_expert_version_that_runs(session, dataset, parent, thorax_scan,
                                                                       tmp_path, qtbot):
    session.auto_run = False  # the test runs the new expert itself
    manager = install_jobs(session, tmp_path / "jobs.json")
    panel = jobs_panel(qtbot, manager)
    experts_panel = ExpertPanel(session.state, session.run_model)
    qtbot.addWidget(experts_panel)
    session.region_override = "thorax"
    session.open_path(thorax_scan)
    qtbot.waitUntil(lambda: session.state.scan is not None and session.state.region == "thorax", timeout=WAIT)

    dialog = JobDialog(manager, job_type="adapt", region="thorax")
    qtbot.addWidget(dialog)
    assert dialog.windowTitle() == "Adapt an expert" and dialog.adapt_page.isVisibleTo(dialog)
    assert not dialog.decompose_page.isVisibleTo(dialog)
    dialog.experts.setText(str(parent))  # a decomposition output: its experts/ is found
    dialog.experts.editingFinished.emit()
    assert dialog.region.currentData() == "thorax"
    assert [dialog.region.itemData(i) for i in range(dialog.region.count())] == ["abdomen", "pelvis", "thorax"]
    assert dialog.adapt_rank.text().startswith("2: the thorax expert keeps its rank (version 1 → 2)")
    out = tmp_path / "adapted"
    check_manifest(qtbot, dialog, dataset, out, "Cases for thorax: 2")
    assert "Labels: the same as the expert's head" in dialog.report.toPlainText()

    dialog.steps.setValue(10)
    dialog.batch.setValue(2)
    dialog.patch.setValue(PATCH[0])
    dialog.lr.setValue(5e-3)
    dialog.device.setCurrentText("cpu")
    on_progress = cancel_at(manager, 3)
    manager.job_progress.connect(on_progress)
    with qtbot.waitSignal(manager.job_added, timeout=30000):
        dialog.start_button.click()
    rec = dialog.started
    assert rec is not None and rec.type == "adapt" and rec.config["region"] == "thorax"
    assert "version 1 → 2" in dialog.report.toPlainText()
    assert rec.config["patch_size"] == list(PATCH) and rec.config["experts"] == str(parent)
    assert wait_state(qtbot, manager, rec.id, ("cancelled", "failed")) == "cancelled", rec.log
    manager.job_progress.disconnect(on_progress)
    assert 3 <= max(on_progress.steps) < 10 and latest_checkpoint(out / "checkpoint") is not None
    assert rec.history and all("loss" in p for p in rec.history)
    qtbot.waitUntil(lambda: len(panel.curve.points) == len(rec.history), timeout=2000)
    cut = len(rec.history)

    def has_new_version(models) -> bool:
        return any(m.path and out in m.path.parents and m.region == "thorax" for m in models)

    panel.select(rec.id)
    qtbot.waitUntil(panel.resume_button.isEnabled, timeout=2000)
    with qtbot.waitSignal(session.state.catalog_changed, timeout=WAIT, check_params_cb=has_new_version):
        panel.resume_button.click()
        assert wait_state(qtbot, manager, rec.id, ("done", "failed")) == "done", rec.log
    assert rec.step == 10 and len(rec.history) > cut
    qtbot.waitUntil(lambda: len(panel.curve.points) == len(rec.history), timeout=2000)
    manager.flush()
    stored = JobStore(tmp_path / "jobs.json").get(rec.id)
    assert stored.state == "done" and stored.type == "adapt"

    # the switcher offers the new version for the scan's region, with its card
    new = next(m for m in session.state.offered if m.path and out in m.path.parents)
    assert new.region == "thorax" and new.name.endswith("· v2") and new.kind == "user"
    assert "adapted from" in new.training and "rank 2 (thorax)" == new.ranks
    texts = [experts_panel.list.item(i).text() for i in range(experts_panel.list.count())]
    assert any(t.startswith(new.name) for t in texts)
    experts_panel.select_model(new.id)
    assert session.state.model_id == new.id and experts_panel.title.text() == new.name
    assert experts_panel.run_button.isEnabled()
    with qtbot.waitSignal(session.state.result_changed, timeout=WAIT,
                          check_params_cb=lambda r: r is not None and r.model_id == new.id):
        experts_panel.run_button.click()
    result = session.state.result
    assert result.labels.shape == session.state.scan.array.shape and result.region == "thorax"
    card = json.loads((out / "experts" / "card.json").read_text())
    assert card["version"] == 2 and card["regions"] == ["thorax"]


@pytest.mark.slow
def test_adapt_subprocess_killed_is_interrupted_then_resume_completes(worker, manager, dataset, parent, tmp_path,
                                                                      qtbot):
    out = tmp_path / "sub"
    on_progress = kill_at(manager, 4)
    manager.job_progress.connect(on_progress)
    cfg = AdaptConfig(data=str(dataset), out=str(out), experts=str(parent), region="abdomen", regions=["abdomen"],
                      steps=12, batch_size=2, patch_size=PATCH, checkpoint_every=2, warmup_steps=1, device="cpu")
    rec = manager.start(cfg, mode="subprocess")
    assert wait_state(qtbot, manager, rec.id, ("interrupted", "failed", "done")) == "interrupted", rec.log
    assert any("signal 9" in line for line in rec.log)
    assert latest_checkpoint(out / "checkpoint") is not None
    manager.flush()
    again = JobManager(worker, tmp_path / "jobs.json").get(rec.id)  # a new app instance sees it too
    assert again.state == "interrupted" and again.type == "adapt" and again.resumable
    manager.resume(rec.id)
    assert wait_state(qtbot, manager, rec.id, ("interrupted", "failed", "done")) == "done", "\n".join(rec.log)
    assert rec.step == 12 and rec.history and not (out / CANCEL_NAME).exists()
    card = json.loads((out / "experts" / "card.json").read_text())
    assert card["regions"] == ["abdomen"] and card["version"] == 2
