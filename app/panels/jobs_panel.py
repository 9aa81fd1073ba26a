"""The job panel (a dock): every job's state, progress with ETA, a live loss curve, the log, and
Cancel / Resume / Open output. It only reads the JobManager and calls its commands."""

from __future__ import annotations

from PySide6.QtCore import QTimer, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..jobs.manager import JobManager
from ..jobs.store import JobRecord
from .loss_curve import LossCurve

REFRESH_MS = 250
COLUMNS = ("Job", "Where", "State", "Progress")


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(round(seconds))
    return f"ETA {s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"ETA {s // 60}m{s % 60:02d}s"


class JobsPanel(QWidget):
    def __init__(self, manager: JobManager, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("jobsPanel")
        self.manager = manager
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("jobsTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.bar = QProgressBar()
        self.bar.setObjectName("jobProgressBar")
        self.bar.setRange(0, 1000)
        self.eta = QLabel("")
        self.curve = LossCurve()
        self.log = QPlainTextEdit()
        self.log.setObjectName("jobLog")
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(1000)
        self.evaluation = QPlainTextEdit()
        self.evaluation.setObjectName("jobEvaluation")
        self.evaluation.setReadOnly(True)
        self.cancel_button = QPushButton("Cancel")
        self.resume_button = QPushButton("Resume")
        self.open_button = QPushButton("Open output")
        self.cancel_button.clicked.connect(lambda: self._command(self.manager.cancel))
        self.resume_button.clicked.connect(lambda: self._command(self.manager.resume))
        self.open_button.clicked.connect(self._open_output)

        buttons = QHBoxLayout()
        for b in (self.cancel_button, self.resume_button, self.open_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        progress = QHBoxLayout()
        progress.addWidget(self.bar, 1)
        progress.addWidget(self.eta)
        tabs = QTabWidget()
        tabs.addTab(self.curve, "Loss")
        tabs.addTab(self.log, "Log")
        tabs.addTab(self.evaluation, "Evaluation")
        self.tabs = tabs
        detail = QWidget()
        dl = QVBoxLayout(detail)
        dl.setContentsMargins(0, 0, 0, 0)
        dl.addLayout(progress)
        dl.addWidget(tabs, 1)
        dl.addLayout(buttons)
        split = QSplitter()
        split.setOrientation(split.orientation().Vertical)
        split.addWidget(self.table)
        split.addWidget(detail)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(split)

        self._dirty: set[str] = set()
        self._rows: dict[str, int] = {}
        self._timer = QTimer(self, interval=REFRESH_MS)
        self._timer.timeout.connect(self._flush)
        self._timer.start()
        manager.job_added.connect(self._on_added)
        # a method, not ``self._dirty.add``: _flush swaps the set, and a bound ``add`` would keep filling the old one
        manager.job_changed.connect(self._mark_dirty)
        manager.job_progress.connect(self._mark_dirty)
        manager.evaluated.connect(self._on_evaluated)
        for rec in manager.jobs:
            self._add_row(rec)
        if manager.jobs:
            self.select(manager.jobs[-1].id)
        self._update_detail()

    # ---------------------------------------------------------------- selection

    def selected_id(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return None if item is None else item.data(0x0100)  # Qt.UserRole

    def select(self, job_id: str) -> None:
        row = self._rows.get(job_id)
        if row is not None:
            self.table.selectRow(row)
            self._update_detail()

    def _on_selection(self) -> None:
        self._update_detail()

    # ---------------------------------------------------------------- updates

    def _on_added(self, job_id: str) -> None:
        self._add_row(self.manager.get(job_id))
        self.select(job_id)

    def _mark_dirty(self, job_id: str, *_args) -> None:
        """Refresh the job's row (and the detail, when selected) at the next flush."""
        self._dirty.add(job_id)

    def _on_evaluated(self, job_id: str, _text: str) -> None:
        self._mark_dirty(job_id)
        if job_id == self.selected_id():
            self.tabs.setCurrentWidget(self.evaluation)

    def _add_row(self, rec: JobRecord) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        self._rows[rec.id] = row
        for col in range(len(COLUMNS)):
            self.table.setItem(row, col, QTableWidgetItem(""))
        self.table.item(row, 0).setData(0x0100, rec.id)
        self._update_row(rec)

    def _update_row(self, rec: JobRecord) -> None:
        row = self._rows[rec.id]
        where = "in app" if rec.mode == "inprocess" else f"torchrun ×{rec.processes}" if rec.processes > 1 \
            else "subprocess"
        pct = f"{100 * rec.step / rec.total:.0f}% ({rec.step}/{rec.total})" if rec.total else ""
        for col, text in enumerate((rec.name, where, rec.state, pct)):
            self.table.item(row, col).setText(text)

    def _flush(self) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        for job_id in dirty:
            if job_id in self._rows:
                self._update_row(self.manager.get(job_id))
        if self.selected_id() in dirty:
            self._update_detail()

    _shown_log: tuple = ()
    _shown_evaluation: str | None = None

    def _update_detail(self) -> None:
        job_id = self.selected_id()
        rec = self.manager.get(job_id) if job_id else None
        live = rec is not None and self.manager.is_live(rec.id)
        self.cancel_button.setEnabled(live)
        self.resume_button.setEnabled(rec is not None and not live and rec.resumable)
        self.open_button.setEnabled(rec is not None)
        if rec is None:
            self.bar.setValue(0)
            self.eta.setText("")
            self.curve.set_history([])
            return
        self.bar.setValue(int(1000 * rec.step / rec.total) if rec.total else 0)
        self.bar.setFormat(f"{rec.phase or rec.state} %p%")
        self.eta.setText(eta_text(rec.eta_s) if live else rec.state)
        self.curve.set_history(rec.history)
        key = (rec.id, len(rec.log), rec.log[-1] if rec.log else "")
        if key != self._shown_log:
            self._shown_log = key
            self.log.setPlainText("\n".join(rec.log))
            self.log.verticalScrollBar().setValue(self.log.verticalScrollBar().maximum())
        evaluation = rec.evaluation or "Not evaluated (tick 'Evaluate when done' in the job dialog)."
        if evaluation != self._shown_evaluation:  # re-laying out the text on every step costs the UI time
            self._shown_evaluation = evaluation
            self.evaluation.setPlainText(evaluation)

    def _command(self, fn) -> None:
        job_id = self.selected_id()
        if job_id:
            fn(job_id)
            self._mark_dirty(job_id)
            self._flush()

    def _open_output(self) -> None:
        job_id = self.selected_id()
        if job_id:
            QDesktopServices.openUrl(QUrl.fromLocalFile(self.manager.get(job_id).out))
