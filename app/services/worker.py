"""One long-lived worker thread that owns the torch device and runs queued tasks one at a time.

A task is ``fn(ctx) -> result``. It reports through ``ctx.progress(Progress)`` and stops between steps when
``ctx.cancel`` is set (lorkd_core.progress.CancelToken). The worker turns those reports into Qt signals;
the per-task callbacks (Anki style ``on_result`` / ``on_error``) run on the UI thread. Loading, inference
and, later, in-process training jobs all go through here, so torch only ever runs on this thread.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QThread, Signal, Slot

from lorkd_core.errors import JobCancelled
from lorkd_core.progress import CancelToken, Progress

_ids = itertools.count(1)


class TaskContext:
    """What a task function gets: progress reporting, its cancel token and the worker's device."""

    def __init__(self, worker: TorchWorker, handle: TaskHandle) -> None:
        self._worker = worker
        self._handle = handle
        self.cancel: CancelToken = handle.token
        self._last_emit = 0.0

    @property
    def device_preference(self) -> str:
        return self._worker.device_preference

    @property
    def device(self):
        return self._worker.device()

    def progress(self, report: Progress) -> None:
        # Throttled so a tight loop cannot flood the UI event queue; the last step always goes through.
        now = time.monotonic()
        if report.step >= report.total or now - self._last_emit >= self._handle.throttle_s:
            self._last_emit = now
            self._worker.task_progress.emit(self._handle, report)

    def report(self, step: int, total: int, message: str = "", **metrics: float) -> None:
        self.progress(Progress(step, total, message, dict(metrics)))


@dataclass(eq=False)
class TaskHandle:
    name: str
    fn: Callable[[TaskContext], Any]
    key: str | None = None
    throttle_s: float = 0.03
    on_result: Callable[[Any], None] | None = None
    on_error: Callable[[BaseException], None] | None = None
    on_progress: Callable[[Progress], None] | None = None
    on_cancelled: Callable[[], None] | None = None
    id: int = field(default_factory=lambda: next(_ids))
    token: CancelToken = field(default_factory=CancelToken)
    state: str = "queued"  # queued | running | done | failed | cancelled
    traceback: str = ""

    def cancel(self) -> None:
        self.token.cancel()

    @property
    def cancelled(self) -> bool:
        return self.token.cancelled


class TorchWorker(QThread):
    """Signals carry the TaskHandle first so any panel can follow any task."""

    task_started = Signal(object)
    task_progress = Signal(object, object)  # handle, Progress
    task_succeeded = Signal(object, object)  # handle, result
    task_failed = Signal(object, object)  # handle, exception
    task_cancelled = Signal(object)
    task_finished = Signal(object)  # after any of the three above
    idle = Signal()

    def __init__(self, device_preference: str = "auto", parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("lorkd-torch-worker")
        self._queue: queue.Queue[TaskHandle | None] = queue.Queue()
        self._lock = threading.Lock()
        self._pending: list[TaskHandle] = []
        self._current: TaskHandle | None = None
        self._device_pref = device_preference
        self._device = None
        self._stopping = False
        self.task_progress.connect(self._dispatch_progress)
        self.task_succeeded.connect(self._dispatch_result)
        self.task_failed.connect(self._dispatch_error)
        self.task_cancelled.connect(self._dispatch_cancelled)

    # ---------------------------------------------------------------- UI-thread API

    def submit(self, name: str, fn: Callable[[TaskContext], Any], *, key: str | None = None,
               on_result: Callable[[Any], None] | None = None,
               on_error: Callable[[BaseException], None] | None = None,
               on_progress: Callable[[Progress], None] | None = None,
               on_cancelled: Callable[[], None] | None = None, throttle_s: float = 0.03) -> TaskHandle:
        """Queue ``fn``; a task with the same ``key`` still queued or running is cancelled first
        (switching experts twice quickly only computes the last one)."""
        handle = TaskHandle(name, fn, key, throttle_s, on_result, on_error, on_progress, on_cancelled)
        if self._stopping:
            handle.state = "cancelled"
            return handle
        if key is not None:
            self.cancel_key(key)
        with self._lock:
            self._pending.append(handle)
        if not self.isRunning():
            self.start()
        self._queue.put(handle)
        return handle

    def cancel_key(self, key: str) -> None:
        with self._lock:
            for h in [*self._pending, self._current]:
                if h is not None and h.key == key:
                    h.cancel()

    def cancel_all(self) -> None:
        with self._lock:
            for h in [*self._pending, self._current]:
                if h is not None:
                    h.cancel()

    @property
    def current(self) -> TaskHandle | None:
        return self._current

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._current is not None or bool(self._pending)

    @property
    def device_preference(self) -> str:
        return self._device_pref

    def set_device_preference(self, preference: str) -> None:
        """Takes effect from the next task; the device object is rebuilt on the worker thread."""
        self._device_pref = preference
        self._device = None

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Cancel everything and stop the thread; True when it has stopped."""
        self._stopping = True
        self.cancel_all()
        if not self.isRunning():
            return True
        self._queue.put(None)
        return self.wait(timeout_ms)

    # ---------------------------------------------------------------- worker thread

    def device(self):
        if self._device is None:
            from lorkd_core.device import select_device

            self._device = select_device(self._device_pref)
        return self._device

    def run(self) -> None:
        while True:
            handle = self._queue.get()
            if handle is None:
                return
            with self._lock:
                if handle in self._pending:
                    self._pending.remove(handle)
                self._current = handle
            try:
                self._run_one(handle)
            finally:
                with self._lock:
                    self._current = None
                    empty = not self._pending
                self.task_finished.emit(handle)
                if empty:
                    self.idle.emit()

    def _run_one(self, handle: TaskHandle) -> None:
        if handle.cancelled:
            handle.state = "cancelled"
            self.task_cancelled.emit(handle)
            return
        handle.state = "running"
        self.task_started.emit(handle)
        try:
            result = handle.fn(TaskContext(self, handle))
            handle.token.raise_if_cancelled(handle.name)
        except JobCancelled:
            handle.state = "cancelled"
            self.task_cancelled.emit(handle)
        except BaseException as exc:  # every failure must reach the UI and never kill the thread
            handle.state = "failed"
            handle.traceback = traceback.format_exc()
            self.task_failed.emit(handle, exc)
        else:
            handle.state = "done"
            self.task_succeeded.emit(handle, result)

    # ---------------------------------------------------------------- UI-thread dispatch (queued slots)

    @Slot(object, object)
    def _dispatch_progress(self, handle: TaskHandle, report: Progress) -> None:
        if handle.on_progress is not None and not handle.cancelled:
            handle.on_progress(report)

    @Slot(object, object)
    def _dispatch_result(self, handle: TaskHandle, result: Any) -> None:
        if handle.on_result is not None:
            handle.on_result(result)

    @Slot(object, object)
    def _dispatch_error(self, handle: TaskHandle, exc: BaseException) -> None:
        if handle.on_error is not None:
            handle.on_error(exc)

    @Slot(object)
    def _dispatch_cancelled(self, handle: TaskHandle) -> None:
        if handle.on_cancelled is not None:
            handle.on_cancelled()
