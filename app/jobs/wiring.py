"""Connect a JobManager to the session: a finished job's output joins the model folders and the expert
switcher is refreshed at once."""

from __future__ import annotations

from pathlib import Path

from .manager import JobManager


def install_jobs(session, store_path: str | Path | None = None) -> JobManager:
    manager = JobManager(session.worker, store_path, parent=session)

    def on_finished(job_id: str, state: str) -> None:
        if state != "done":
            return
        rec = manager.get(job_id)
        out = Path(rec.out)
        dirs = session.settings.model_dirs
        if all(Path(d).resolve() != out for d in dirs):
            session.settings.model_dirs = [*dirs, out]
        session.refresh_models()
        if rec.type == "adapt":
            session.message.emit(f"Job finished: a new {rec.config.get('region', '')} expert version in {out}")
        else:
            session.message.emit(f"Job finished: new experts in {out}")

    manager.job_finished.connect(on_finished)
    # the evaluation writes each model's Dice into its card: list the models again so the switcher shows it
    manager.evaluated.connect(lambda _id, _text: session.refresh_models())
    return manager


def default_job_folder(store_path: str | Path, job_type: str) -> Path:
    """A new output folder for a job: ``jobs/<type>-<date>-<time>`` beside the job list (a number is added when
    that name is taken), so a job can start without the user choosing a folder first."""
    import time

    base = Path(store_path).parent / "jobs"
    stem = f"{job_type}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder, n = base / stem, 1
    while folder.exists():
        n += 1
        folder = base / f"{stem}-{n}"
    return folder


def store_path_for(settings) -> Path:
    """``$LORKD_JOBS_FILE``; else beside an explicitly chosen settings file (tests, portable setups);
    else ``jobs.json`` in the user data directory."""
    import os

    from PySide6.QtCore import QStandardPaths

    from .manager import STORE_ENV, default_store_path

    if os.environ.get(STORE_ENV):
        return Path(os.environ[STORE_ENV])
    name = getattr(settings, "file_name", "") or ""
    standard = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericConfigLocation)
    if name and name != os.devnull and not (standard and name.startswith(standard)):
        return Path(name).parent / "jobs.json"
    return default_store_path()


def attach_jobs(window) -> JobManager:
    """Main-window wiring: the Jobs menu ("New decomposition…", "Adapt an expert…"), the Jobs dock, and
    model refreshes."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QAction
    from PySide6.QtWidgets import QDockWidget, QMenu

    from ..panels.jobs_panel import JobsPanel

    session = window.session
    manager = install_jobs(session, store_path_for(session.settings))
    panel = JobsPanel(manager)
    dock = QDockWidget("Jobs", window)
    dock.setObjectName("jobsDock")
    dock.setWidget(panel)
    window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
    dock.setVisible(bool(manager.jobs))
    window.jobs_panel = panel
    window.jobs_dock = dock

    def new_job(job_type: str) -> None:
        from .dialog import JobDialog

        dialog = JobDialog(manager, default_job_folder(manager.store.path, job_type), parent=window,
                           job_type=job_type, region=session.state.region or None)
        if dialog.exec() and dialog.started is not None:
            dock.show()
            dock.raise_()

    menu = QMenu("&Jobs", window)
    action = QAction("New decomposition…", window)
    action.setObjectName("newDecompositionAction")
    action.triggered.connect(lambda: new_job("decompose"))
    menu.addAction(action)
    adapt_action = QAction("Adapt an expert…", window)
    adapt_action.setObjectName("adaptExpertAction")
    adapt_action.triggered.connect(lambda: new_job("adapt"))
    menu.addAction(adapt_action)
    menu.addAction(dock.toggleViewAction())
    bar = window.menuBar()
    help_action = next((a for a in bar.actions() if a.text().replace("&", "") == "Help"), None)
    if help_action is not None:
        bar.insertMenu(help_action, menu)
    else:
        bar.addMenu(menu)
    window.new_job_action = action
    window.adapt_action = adapt_action
    manager.job_added.connect(lambda _id: (dock.show(), dock.raise_()))
    return manager
