"""Loop guard: state -> widget updates must not echo back as widget -> state changes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class Guard:
    def __init__(self) -> None:
        self._depth = 0

    @property
    def active(self) -> bool:
        return self._depth > 0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
