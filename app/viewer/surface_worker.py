"""Builds label surfaces on one worker thread and hands them to the GUI thread through a Qt signal.

A new request cancels the one in flight (checked between structures), so switching experts quickly
never queues stale work, and only the newest label map's surfaces are ever delivered.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from PySide6.QtCore import QCoreApplication, QEventLoop, QObject, Signal

LOG = logging.getLogger(__name__)


class SurfaceWorker(QObject):
    built = Signal(int, object)  # (labels version, {label id: pv.PolyData}), queued to the GUI thread

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._executor: ThreadPoolExecutor | None = None
        self._future: Future | None = None
        self._version: int | None = None
        self._cancel = threading.Event()

    @property
    def pending_version(self) -> int | None:
        return self._version if self._future is not None else None

    def submit(self, version: int, labels: np.ndarray, spacing: tuple, origin: tuple) -> None:
        if self.pending_version == version:
            return
        self._cancel.set()
        self._cancel = cancel = threading.Event()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lorkd-surfaces")
        # The label view goes as is: copying 512^3 voxels here would stall the UI; label maps are
        # replaced, never mutated, by the app.
        future = self._executor.submit(_build, labels, spacing, origin, cancel)
        self._future, self._version = future, version
        future.add_done_callback(lambda f: self._deliver(version, f, cancel))

    def _deliver(self, version: int, future: Future, cancel: threading.Event) -> None:
        if cancel.is_set() or future.cancelled():
            return
        if future.exception() is not None:
            LOG.error("building 3D surfaces failed: %s", future.exception())
            return
        try:
            self.built.emit(version, future.result())
        except RuntimeError:  # the receiver was deleted while building
            pass

    def mark_delivered(self) -> None:
        self._future = None

    def wait(self, timeout: float) -> None:
        """Spin the GUI event loop until the pending build is delivered, fails or times out."""
        deadline = time.monotonic() + timeout
        while self._future is not None and time.monotonic() < deadline:
            done = self._future.done()
            if done and (self._future.cancelled() or self._future.exception() is not None):
                self._future = None
                break
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
            time.sleep(0.002)

    def shutdown(self) -> None:
        self._cancel.set()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._future = None


def _build(labels: np.ndarray, spacing: tuple, origin: tuple, cancel: threading.Event) -> dict:
    from .surfaces import build_surfaces  # imported here so scipy/pyvista load off the GUI thread

    return build_surfaces(labels, spacing, origin, cancel)
