"""Closing the window while a job runs asks first; "Stop and quit" stops the job, "Keep running" keeps both."""

from __future__ import annotations

import threading

from lorkd_studio.dialogs import QUIT_WITH_JOBS_NAME
from lorkd_studio.services import jobs as job_service
from PySide6.QtWidgets import QApplication, QMessageBox

from lorkd_core.engine.config import DecomposeConfig
from lorkd_core.progress import Progress


def _quit_box() -> QMessageBox | None:
    return next((w for w in QApplication.topLevelWidgets()
                 if w.objectName() == QUIT_WITH_JOBS_NAME and w.isVisible()), None)


def _click(box: QMessageBox, text: str) -> None:
    button = next(b for b in box.buttons() if b.text() == text)
    button.click()


def test_closing_with_a_running_job_asks_then_keeps_or_stops_it(tmp_path, qtbot, monkeypatch):
    from lorkd_studio.main_window import MainWindow
    from lorkd_studio.services.settings import AppSettings
    from lorkd_studio.session import Session

    steps = threading.Event()
    done_steps: list[int] = []

    def endless_train(job_type, cfg, progress, cancel, *, resume=False):
        step = 0
        while True:  # until the cancel token stops it, as the engine checks between steps
            step += 1
            progress(Progress(step, 10_000, "training"))
            done_steps.append(step)
            steps.set()
            cancel.raise_if_cancelled()
            threading.Event().wait(0.02)

    monkeypatch.setattr(job_service, "train", endless_train)
    monkeypatch.setenv("LORKD_JOBS_FILE", str(tmp_path / "jobs.json"))
    window = MainWindow(Session(AppSettings(tmp_path / "settings.ini")), restore_layout=False)
    qtbot.addWidget(window)
    window.confirm_quit_with_jobs = True
    window.show()
    rec = window.jobs.start(DecomposeConfig(data=str(tmp_path / "m.jsonl"), out=str(tmp_path / "job"), steps=10_000))
    qtbot.waitUntil(steps.is_set, timeout=20_000)

    window.close()
    qtbot.waitUntil(lambda: _quit_box() is not None, timeout=5_000)
    box = _quit_box()
    assert "1 job still running" in box.text() and rec.name in box.informativeText()
    assert window.isVisible() and window.jobs.is_live(rec.id)
    window.close()  # a second close while it is open does not stack a second question
    assert sum(w.objectName() == QUIT_WITH_JOBS_NAME and w.isVisible() for w in QApplication.topLevelWidgets()) == 1

    _click(box, "Keep running")
    qtbot.waitUntil(lambda: _quit_box() is None, timeout=5_000)
    assert window.isVisible() and window.jobs.is_live(rec.id)

    window.close()
    qtbot.waitUntil(lambda: _quit_box() is not None, timeout=5_000)
    _click(_quit_box(), "Stop and quit")
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=20_000)
    # the job was told to stop: the worker has left the training loop (no step since), and the job list on
    # disk still says "running", which the next start shows as interrupted with Resume
    stopped_at = len(done_steps)
    threading.Event().wait(0.3)
    assert len(done_steps) == stopped_at
    assert not window.session.worker.isRunning()


def test_without_jobs_the_window_closes_without_asking(tmp_path, qtbot, monkeypatch):
    from lorkd_studio.main_window import MainWindow
    from lorkd_studio.services.settings import AppSettings
    from lorkd_studio.session import Session

    monkeypatch.setenv("LORKD_JOBS_FILE", str(tmp_path / "jobs.json"))
    window = MainWindow(Session(AppSettings(tmp_path / "settings.ini")), restore_layout=False)
    qtbot.addWidget(window)
    window.confirm_quit_with_jobs = True
    window.show()
    window.close()
    assert not window.isVisible() and _quit_box() is None
