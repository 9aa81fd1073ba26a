"""Training jobs from the GUI: in-process on the torch worker, subprocesses (torchrun), cancel, kill,
resume, the persistent store, the panel's curve, and the UI heartbeat while training."""

from __future__ import annotations

import gc
import json
import sys
import time

import pytest
from gui_job_support import (
    WAIT,
    asyncio_on_qt,
    cancel_at,
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
from lorkd_studio.jobs.manager import CANCEL_NAME, JobManager
from lorkd_studio.jobs.store import JobStore
from lorkd_studio.jobs.wiring import install_jobs
from lorkd_studio.runtime_policy import responsive_gil_switching
from PySide6.QtCore import QTimer

from lorkd_core.engine.checkpoint import latest_checkpoint
from lorkd_core.engine.config import DecomposeConfig

pytestmark = pytest.mark.gui
# the shared fixtures this module uses: pytest finds them among its names (asyncio_on_qt is autouse)
SHARED_FIXTURES = (asyncio_on_qt, dataset_fixture, manager_fixture, session_fixture, teacher_dir_fixture,
                   worker_fixture)


def job_cfg(dataset, teacher_dir, out, **changes) -> DecomposeConfig:
    return decompose_cfg(dataset, teacher_dir, out, **{"steps": 8, "lr": 5e-3, **changes})


def test_store_round_trip_thins_history_and_recovers_running_jobs(worker, tmp_path, qtbot):
    store = JobStore(tmp_path / "jobs.json")
    rec = store.new("decompose", {"steps": 2000}, str(tmp_path / "out"), mode="subprocess")
    rec.total = 2000
    for step in range(1, 2001):
        rec.add_point(step, {"loss": 1.0 / step})
    assert len(rec.history) <= 401 and rec.history[-1]["step"] == 2000
    rec.state, rec.pid = "running", 999999999  # no such process
    done = store.new("decompose", {}, str(tmp_path / "done"))
    done.state = "running"
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "job.json").write_text(json.dumps({"status": "done"}))
    store.save()

    manager = JobManager(worker, tmp_path / "jobs.json")
    assert manager.get(rec.id).state == "interrupted" and manager.get(rec.id).resumable
    assert manager.get(done.id).state == "done"
    assert JobStore(tmp_path / "jobs.json").get(rec.id).state == "interrupted"  # persisted
    panel = jobs_panel(qtbot, manager)
    panel.select(rec.id)
    assert panel.resume_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_inprocess_job_progress_cancel_resume_finish_and_new_experts(session, dataset, teacher_dir, tmp_path,
                                                                     qtbot):
    manager = install_jobs(session, tmp_path / "jobs.json")
    panel = jobs_panel(qtbot, manager)
    out = tmp_path / "run"
    on_progress = cancel_at(manager, 3)
    manager.job_progress.connect(on_progress)
    rec = manager.start(job_cfg(dataset, teacher_dir, out, steps=12), mode="inprocess")
    assert wait_state(qtbot, manager, rec.id, ("cancelled", "failed")) == "cancelled", rec.log
    manager.job_progress.disconnect(on_progress)
    assert 3 <= max(on_progress.steps) < 12
    assert latest_checkpoint(out / "checkpoint") is not None
    assert rec.history and all("loss" in p and "kd" in p for p in rec.history)
    qtbot.waitUntil(lambda: len(panel.curve.points) == len(rec.history), timeout=2000)
    cut = len(rec.history)
    panel.select(rec.id)
    qtbot.waitUntil(panel.resume_button.isEnabled, timeout=2000)

    with qtbot.waitSignal(session.state.catalog_changed, timeout=WAIT,
                          check_params_cb=lambda models: any(m.path and out in m.path.parents for m in models)):
        panel.resume_button.click()
        assert wait_state(qtbot, manager, rec.id, ("done", "failed")) == "done", rec.log
    assert rec.step == 12 and len(rec.history) > cut
    assert [p["step"] for p in rec.history] == sorted(p["step"] for p in rec.history)
    qtbot.waitUntil(lambda: len(panel.curve.points) == len(rec.history), timeout=2000)
    assert "region/abdomen" in panel.curve.series()
    manager.flush()
    assert JobStore(tmp_path / "jobs.json").get(rec.id).state == "done"
    experts = [m for m in session.state.catalog if m.path and out in m.path.parents]
    assert {m.region for m in experts} >= {"abdomen", "pelvis", "thorax"}
    # the new expert runs: segment a training case with the abdomen expert on the session's backend
    from lorkd_core.engine.inference import Predictor
    from lorkd_core.io import load_scan

    expert = next(m for m in experts if m.region == "abdomen")
    scan = load_scan(dataset.parent / "cases" / "abdomen_000" / "ct.nii.gz")
    seg = Predictor("cpu").segment(scan, expert.entry)
    assert seg.labels.shape == scan.array.shape and seg.region == "abdomen"


def test_ui_heartbeat_during_inprocess_training(manager, dataset, teacher_dir, tmp_path, qtbot):
    panel = jobs_panel(qtbot, manager)
    panel.show()
    beats: list[float] = []
    training = {"on": False}

    marks: list[tuple[float, int]] = []

    def beat():
        if training["on"]:
            beats.append(time.perf_counter())

    gc.collect()  # measure the training, not the collection of earlier tests' garbage
    switch = sys.getswitchinterval()
    responsive_gil_switching()  # as lorkd-studio sets it at start
    timer = QTimer(interval=10)
    timer.timeout.connect(beat)
    timer.start()
    def on_progress(_id, step, *_):
        training["on"] = step > 0
        marks.append((time.perf_counter(), step))

    manager.job_progress.connect(on_progress)
    try:
        rec = manager.start(job_cfg(dataset, teacher_dir, tmp_path / "hb", steps=25), mode="inprocess")
        assert wait_state(qtbot, manager, rec.id, ("done", "failed")) == "done", rec.log
    finally:
        timer.stop()
        sys.setswitchinterval(switch)
    gaps = [b - a for a, b in zip(beats, beats[1:])]
    assert len(gaps) > 10
    worst = max(range(len(gaps)), key=gaps.__getitem__)
    last_step = max((st for t, st in marks if t <= beats[worst]), default=0)
    assert max(gaps) < 0.150, f"worst UI gap {max(gaps) * 1000:.0f} ms after step {last_step} of 25"


@pytest.mark.slow
def test_subprocess_killed_is_interrupted_then_resume_completes(worker, manager, dataset, teacher_dir, tmp_path,
                                                                qtbot):
    out = tmp_path / "sub"
    on_progress = kill_at(manager, 4)
    manager.job_progress.connect(on_progress)
    # the UI heartbeat while asyncio watches the subprocess (beats counted only while the job is live)
    beats: list[list[float]] = []
    live = {"id": None, "was": False}

    def beat():
        now_live = live["id"] is not None and manager.is_live(live["id"])
        if now_live:
            if not live["was"]:
                beats.append([])  # a new stretch: between the kill and the resume the job is not live
            beats[-1].append(time.perf_counter())
        live["was"] = now_live

    timer = QTimer(interval=10)
    timer.timeout.connect(beat)
    gc.collect()
    timer.start()
    rec = manager.start(job_cfg(dataset, teacher_dir, out, steps=16, checkpoint_every=2), mode="subprocess")
    live["id"] = rec.id
    assert wait_state(qtbot, manager, rec.id, ("interrupted", "failed", "done")) == "interrupted", rec.log
    assert any("signal 9" in line for line in rec.log)
    assert latest_checkpoint(out / "checkpoint") is not None
    # a new app instance sees the job as interrupted too
    manager.flush()
    assert JobManager(worker, tmp_path / "jobs.json").get(rec.id).state == "interrupted"
    manager.resume(rec.id)
    assert wait_state(qtbot, manager, rec.id, ("interrupted", "failed", "done")) == "done", rec.log
    timer.stop()
    assert (out / "experts" / "card.json").is_file() and rec.step == 16
    assert not (out / CANCEL_NAME).exists()
    gaps = [b - a for stretch in beats for a, b in zip(stretch, stretch[1:])]
    assert len(gaps) > 100
    assert max(gaps) < 0.150, f"worst UI gap {max(gaps) * 1000:.0f} ms while the subprocess job ran"


@pytest.mark.slow
def test_subprocess_job_with_two_processes_under_torchrun(manager, dataset, teacher_dir, tmp_path, qtbot):
    out = tmp_path / "ddp"
    rec = manager.start(job_cfg(dataset, teacher_dir, out, steps=4, batch_size=2), mode="subprocess",
                        processes=2)
    assert wait_state(qtbot, manager, rec.id, ("interrupted", "failed", "done"), timeout=120000) == "done", \
        "\n".join(rec.log)
    assert any("2 process(es)" in line for line in rec.log)
    assert rec.step == 4 and rec.history
    assert json.loads((out / "experts" / "card.json").read_text())["training"]["processes"] == 2


def test_finished_job_is_evaluated_and_the_table_shown(manager, dataset, teacher_dir, tmp_path, qtbot):
    panel = jobs_panel(qtbot, manager)
    cfg = job_cfg(dataset, teacher_dir, tmp_path / "ev", steps=2, baseline=True, baseline_steps=1, copy_teacher=True)
    with qtbot.waitSignal(manager.evaluated, timeout=WAIT) as blocker:
        rec = manager.start(cfg, mode="inprocess", evaluate=True)
    text = blocker.args[1]
    assert "abdomen" in text and rec.evaluation == text
    qtbot.waitUntil(lambda: "abdomen" in panel.evaluation.toPlainText(), timeout=2000)
    assert (tmp_path / "ev" / "evaluation.md").is_file()
