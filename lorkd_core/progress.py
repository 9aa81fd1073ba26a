"""Qt-free progress reports and cancellation, shared by the engine, the CLI and the app's worker."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from lorkd_core.errors import JobCancelled


@dataclass(frozen=True)
class Progress:
    step: int
    total: int
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return 0.0 if self.total <= 0 else min(1.0, self.step / self.total)


ProgressCallback = Callable[[Progress], None]


class CancelToken:
    """Set from any thread; long work checks it between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self, what: str = "job") -> None:
        if self._event.is_set():
            raise JobCancelled(f"{what} was cancelled")


def report(callback: ProgressCallback | None, step: int, total: int, message: str = "", **metrics: float) -> None:
    if callback is not None:
        callback(Progress(step, total, message, dict(metrics)))
