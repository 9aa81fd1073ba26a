"""Progress of the worker's current task, with a cancel button (lives in the status bar)."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QStackedLayout, QToolButton, QWidget

from ..services.core import Progress
from ..services.worker import TaskHandle, TorchWorker

# Every repaint recomposes the whole window through OpenGL once the 3D view is embedded: tens of ms with
# software rendering. So progress reaches the screen a few times a second, not at the worker's rate.
REFRESH_MS = 300


class JobPanel(QWidget):
    def __init__(self, worker: TorchWorker, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._worker = worker
        self._latest: tuple[TaskHandle, Progress] | None = None
        self.label = QLabel("")
        self.label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.bar = QProgressBar()
        self.bar.setObjectName("jobProgress")
        self.bar.setFixedWidth(220)
        self.bar.setRange(0, 1000)
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
        # Fixed size plus a stacked idle page: showing progress never relayouts the window (a resize of the
        # OpenGL views would cost a full 3D re-render).
        self._pages = QStackedLayout(self)
        self._pages.addWidget(QWidget())
        self._pages.addWidget(busy)
        self.setFixedSize(560, 24)
        self._refresh = QTimer(self, interval=REFRESH_MS)
        self._refresh.timeout.connect(self._apply_latest)
        # Hiding is delayed so a stream of short tasks does not make the bar flicker.
        self._hide_timer = QTimer(self, singleShot=True, interval=400)
        self._hide_timer.timeout.connect(self._hide_if_idle)
        worker.task_started.connect(self._on_started)
        worker.task_progress.connect(self._on_progress)
        worker.idle.connect(self._hide_timer.start)

    @property
    def busy_shown(self) -> bool:
        return self._pages.currentIndex() == 1

    def _on_started(self, handle: TaskHandle) -> None:
        self._hide_timer.stop()
        self._latest = None
        self.label.setText(handle.name)
        self.bar.setValue(0)
        self.bar.setFormat("")
        self.cancel.setEnabled(True)
        self._pages.setCurrentIndex(1)
        self._refresh.start()

    def _on_progress(self, handle: TaskHandle, report: Progress) -> None:
        self._latest = (handle, report)

    def _apply_latest(self) -> None:
        if self._latest is None:
            return
        handle, report = self._latest
        self._latest = None
        if handle is not self._worker.current:
            return
        self.bar.setValue(int(1000 * report.fraction))
        self.bar.setFormat(f"{100 * report.fraction:.0f}%")
        text = f"{handle.name}: {report.message}" if report.message else handle.name
        if text != self.label.text():
            self.label.setText(text)

    def _on_cancel(self) -> None:
        current = self._worker.current
        if current is not None:
            current.cancel()
            self.label.setText(f"{current.name}: cancelling…")
            self.cancel.setEnabled(False)

    def _hide_if_idle(self) -> None:
        if not self._worker.busy:
            self._refresh.stop()
            self._pages.setCurrentIndex(0)
