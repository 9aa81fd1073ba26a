"""Progress of the worker's current task, with a cancel button (lives in the status bar)."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QStackedLayout, QToolButton, QWidget

from lorkd_core.progress import Progress

from ..services.worker import TaskHandle, TorchWorker


class JobPanel(QWidget):
    def __init__(self, worker: TorchWorker, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._worker = worker
        self.label = QLabel("")
        self.label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.bar = QProgressBar()
        self.bar.setObjectName("jobProgress")
        self.bar.setFixedWidth(220)
        self.bar.setTextVisible(True)
        self.cancel = QToolButton()
        self.cancel.setObjectName("cancelButton")
        self.cancel.setText("Cancel")
        self.cancel.setToolTip("Stop the running task after its current step")
        self.cancel.clicked.connect(self._on_cancel)
        busy = QWidget()
        layout = QHBoxLayout(busy)
        layout.setContentsMargins(0, 0, 6, 0)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.bar)
        layout.addWidget(self.cancel)
        # A fixed size and a stacked idle page: showing progress must never relayout the window, since a
        # resize of the OpenGL views costs a full 3D re-render (hundreds of ms with software rendering).
        self._pages = QStackedLayout(self)
        self._pages.addWidget(QWidget())
        self._pages.addWidget(busy)
        self.setFixedSize(560, 24)
        # Hiding is delayed so a stream of short tasks does not make the bar flicker.
        self._hide_timer = QTimer(self, singleShot=True, interval=400)
        self._hide_timer.timeout.connect(self._hide_if_idle)
        worker.task_started.connect(self._on_started)
        worker.task_progress.connect(self._on_progress)
        worker.idle.connect(self._hide_timer.start)

    def _on_started(self, handle: TaskHandle) -> None:
        self._hide_timer.stop()
        self.label.setText(handle.name)
        self.bar.setRange(0, 0)  # busy until the first report
        self.cancel.setEnabled(True)
        self._pages.setCurrentIndex(1)

    def _on_progress(self, handle: TaskHandle, report: Progress) -> None:
        if handle is not self._worker.current:
            return
        self.bar.setRange(0, 1000)
        self.bar.setValue(int(1000 * report.fraction))
        self.bar.setFormat(f"{100 * report.fraction:.0f}%")
        if report.message:
            self.label.setText(f"{handle.name}: {report.message}")

    def _on_cancel(self) -> None:
        current = self._worker.current
        if current is not None:
            current.cancel()
            self.label.setText(f"{current.name}: cancelling…")
            self.cancel.setEnabled(False)

    def _hide_if_idle(self) -> None:
        if not self._worker.busy:
            self._pages.setCurrentIndex(0)

    @property
    def busy_shown(self) -> bool:
        return self._pages.currentIndex() == 1
