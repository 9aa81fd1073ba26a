"""The job dialog (data check, preflight problems, start) and the main window's Jobs menu and dock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gui_job_support import (
    check_manifest,
    manager_fixture,
    small_dataset_fixture,
    wait_report,
    worker_fixture,
)
from lorkd_studio.jobs.dialog import JobDialog

pytestmark = pytest.mark.gui
# the shared fixtures this module uses: pytest finds them among its names
SHARED_FIXTURES = (manager_fixture, small_dataset_fixture, worker_fixture)


def test_dialog_shows_counts_and_preflight_problems_then_starts(small_dataset, manager, tmp_path, qtbot):
    dialog = JobDialog(manager)
    qtbot.addWidget(dialog)
    check_manifest(qtbot, dialog, small_dataset, tmp_path / "out", "abdomen 1")
    assert "thorax 1" in dialog.report.toPlainText()

    dialog.teacher.setText(str(tmp_path / "no-teacher"))
    dialog.start_button.click()
    wait_report(qtbot, dialog, "Cannot start")
    assert "teacher not found" in dialog.report.toPlainText() and dialog.started is None
    assert dialog.isVisible() or not dialog.result()

    # a good teacher path (preflight only checks that it exists) and a patch the tiny student accepts:
    # the job starts and fails fast in the engine, which is enough to see the dialog hand it over
    (tmp_path / "teacher").mkdir()
    dialog.teacher.setText(str(tmp_path / "teacher"))
    dialog.student.setCurrentText("tiny")
    dialog.patch.setValue(16)
    dialog.steps.setValue(2)
    dialog.batch.setValue(3)
    dialog.device.setCurrentText("cpu")
    with qtbot.waitSignal(manager.job_added, timeout=30000):
        dialog.start_button.click()
    rec = dialog.started
    assert rec is not None and rec.config["patch_size"] == [16, 16, 16] and rec.config["data"] == str(small_dataset)
    qtbot.waitUntil(lambda: rec.state in ("failed", "done"), timeout=30000)


def test_main_window_has_jobs_menu_and_dock(tmp_path, qtbot, monkeypatch):
    from lorkd_studio.main_window import MainWindow
    from lorkd_studio.services.settings import AppSettings
    from lorkd_studio.session import Session

    monkeypatch.setenv("LORKD_JOBS_FILE", str(tmp_path / "jobs.json"))
    window = MainWindow(Session(AppSettings(tmp_path / "settings.ini")), restore_layout=False)
    qtbot.addWidget(window)
    try:
        menus = [a.text().replace("&", "") for a in window.menuBar().actions()]
        assert "Jobs" in menus and menus.index("Jobs") < menus.index("Help")
        assert window.new_job_action.text() == "New decomposition…"
        assert window.adapt_action.text() == "Adapt an expert…"
        assert window.jobs_panel.manager is window.jobs
        assert window.jobs.store.path == tmp_path / "jobs.json"
    finally:
        window.close()


def test_adapt_type_shows_the_experts_regions_ranks_and_refuses_a_region_without_cases(small_dataset, manager,
                                                                                     tmp_path, qtbot):
    from lorkd_studio.services.jobs import bundled_experts, bundled_teacher

    if bundled_experts() is None:
        pytest.skip("no bundled experts model")
    dialog = JobDialog(manager)
    qtbot.addWidget(dialog)
    assert dialog.windowTitle() == "New decomposition" and not dialog.adapt_page.isVisibleTo(dialog)
    dialog.set_job_type("adapt")
    assert dialog.windowTitle() == "Adapt an expert" and dialog.adapt_page.isVisibleTo(dialog)
    assert not dialog.decompose_page.isVisibleTo(dialog)
    assert dialog.steps.value() == 100 and dialog.lr.value() == pytest.approx(1e-3)
    card = json.loads((Path(bundled_experts()) / "card.json").read_text(encoding="utf-8"))
    trained_patch = card["training"]["config"]["patch_size"][0]
    assert dialog.region.count() == 8 and dialog.patch.value() == trained_patch  # the experts' training patch
    dialog.experts.setText(str(bundled_teacher()))
    dialog.experts.editingFinished.emit()
    assert dialog.region.count() == 0 and "not region experts" in dialog.adapt_rank.text()
    dialog.experts.setText(str(bundled_experts()))
    dialog.experts.editingFinished.emit()
    dialog.region.setCurrentIndex(dialog.region.findData("brain"))
    assert dialog.adapt_rank.text().startswith("4: the brain expert keeps its rank")
    check_manifest(qtbot, dialog, small_dataset, tmp_path / "out", "Cases for brain")
    assert "Cases for brain: 0 (nothing to adapt on)" in dialog.report.toPlainText()
    dialog.start_button.click()
    wait_report(qtbot, dialog, "Cannot start")
    assert "region 'brain' has no training cases" in dialog.report.toPlainText() and dialog.started is None
    cfg = dialog.config(str(small_dataset))
    assert type(cfg).__name__ == "AdaptConfig" and cfg.region == "brain" and cfg.regions == ["brain"]
    assert cfg.spacing == (4.0, 4.0, 4.0)  # the resolution the bundled experts were trained at


def test_memory_estimate_is_checked_against_the_machine():
    from lorkd_studio.jobs.dialog import machine_memory, memory_problem

    assert machine_memory() > 0
    assert memory_problem(10 * machine_memory(), "cpu").startswith("the job needs about")
    assert memory_problem(1024, "cpu") == ""
