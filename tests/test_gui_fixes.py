"""Regression tests: the job panel follows every job change (not only the first), and the expert switcher
shows a re-evaluated model's new Dice even though its id is unchanged."""

from __future__ import annotations

import dataclasses

import pytest
from lorkd_studio.jobs.manager import JobManager
from lorkd_studio.jobs.store import JobStore
from lorkd_studio.panels.expert_panel import ExpertPanel
from lorkd_studio.panels.jobs_panel import COLUMNS, REFRESH_MS, JobsPanel
from lorkd_studio.services.types import ModelInfo
from lorkd_studio.state import StudioState
from PySide6.QtCore import QObject, Signal

pytestmark = pytest.mark.gui

STATE_COLUMN = COLUMNS.index("State")
WAIT_MS = 20 * REFRESH_MS


class _Worker(QObject):
    """What a JobManager needs of a TorchWorker when no job is started."""

    task_started = Signal(object)


def test_jobs_panel_shows_job_changes_after_its_first_refresh(tmp_path, qtbot):
    store = JobStore(tmp_path / "jobs.json")
    rec = store.new("decompose", {}, str(tmp_path / "out"))
    rec.state = "failed"
    store.save()
    store.flush()
    worker = _Worker()
    manager = JobManager(worker, tmp_path / "jobs.json")
    panel = JobsPanel(manager)
    qtbot.addWidget(panel)
    job = manager.get(rec.id)

    def shown() -> str:
        return panel.table.item(0, STATE_COLUMN).text()

    assert shown() == "failed"
    # job_changed without a progress step (a job's end, a log line): each one must reach the table,
    # the later ones too (the panel's refresh swaps its set of changed jobs)
    for state in ("cancelled", "interrupted", "done"):
        job.state = state
        job.add_log(f"now {state}")
        manager.job_changed.emit(job.id)
        qtbot.waitUntil(lambda state=state: shown() == state, timeout=WAIT_MS)
        assert panel.eta.text() == state  # the selected job's detail follows too
        assert panel.log.toPlainText().endswith(f"now {state}")
    job.step, job.total = 3, 8  # a progress step reaches the table as well
    manager.job_progress.emit(job.id, 3, 8, {"loss": 0.5})
    qtbot.waitUntil(lambda: panel.table.item(0, COLUMNS.index("Progress")).text() == "38% (3/8)", timeout=WAIT_MS)


def _model(**changes) -> ModelInfo:
    base = ModelInfo(id="experts:abdomen", name="Abdomen expert", kind="expert", task="segmentation",
                     region="abdomen", parameters=1000, dice=0.50)
    return dataclasses.replace(base, **changes)


def test_set_offered_emits_when_a_model_changes_under_the_same_id(qtbot):
    state = StudioState()
    seen: list[list[ModelInfo]] = []
    state.offered_changed.connect(seen.append)
    state.set_offered([_model()])
    assert len(seen) == 1
    state.set_offered([_model()])  # the same models again: a no-op
    assert len(seen) == 1
    state.set_offered([_model(dice=0.81)])  # re-evaluated: same id, new Dice
    assert len(seen) == 2 and state.offered[0].dice == 0.81
    state.set_offered([_model(dice=0.81, name="Abdomen expert · v2")])
    assert len(seen) == 3 and state.offered[0].name.endswith("v2")


def test_expert_switcher_shows_the_new_dice_of_a_reevaluated_model(qtbot):
    state = StudioState()
    panel = ExpertPanel(state, run=lambda: None)
    qtbot.addWidget(panel)
    for dice in (0.50, 0.81):
        model = _model(dice=dice)
        state.set_catalog([model])
        state.set_offered([model])
        state.set_model(model.id)
        assert panel.list.count() == 1
        assert f"Dice {dice:.2f}" in panel.list.item(0).text()
