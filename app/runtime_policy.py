"""The app's process-wide interpreter policies, so that work on other threads does not freeze the UI.

GIL hand-over (``responsive_gil_switching``): PySide6 releases the GIL around Qt calls, so while a job's
threads (training, batch preparation) keep the GIL busy, each Qt call of the UI thread waits until the
holder is asked to let go, by default after 5 ms. Painting makes hundreds of such calls. Measured here with
two busy Python threads: 100 ``drawLine`` calls took 45-400 ms at 5 ms and 30-70 ms at 1 ms.

Garbage collection (the rest of this module): full collections must not freeze the UI.

A full (generation 2) collection walks every tracked object with the GIL held, so every thread waits,
the UI thread included. With torch, MONAI, VTK and Qt loaded that is hundreds of thousands of objects:
measured 550-800 ms per collection on the 2-core machine. Two moments create most of them:

- start-up: the viewer's background import of pyvista / VTK / matplotlib (``freeze_after_3d_preload``);
- a job's set-up on the worker thread: its first optimizer imports ``torch._dynamo`` (and with it sympy),
  MONAI transforms and metrics load, the training cases are read (``JobSetupGuard``).

``gc.freeze()`` moves everything alive out of the collector's reach (an O(1) list splice), so later
collections only walk what was allocated since. Freezing keeps cyclic garbage that exists at that moment
forever, so it is done at these few points only, never per step.
"""

from __future__ import annotations

import gc
import sys

UI_SWITCH_INTERVAL_S = 0.001


def responsive_gil_switching() -> None:
    """Ask a thread holding the GIL to hand it over after 1 ms instead of 5. The demo job's steps did not get
    slower for it (1.03-1.08 s per step in the app against 1.16-1.26 s before, docs/gui_decomposition_timing.md)."""
    sys.setswitchinterval(min(sys.getswitchinterval(), UI_SWITCH_INTERVAL_S))


def freeze_after_3d_preload(app) -> None:
    """Freeze once the viewer's 3D preload thread has finished (polled on the GUI thread, so never before)."""
    from PySide6.QtCore import QTimer

    from .viewer.volume_view import preload_3d

    preload = preload_3d()  # already started by the window's viewer; this only gets the thread
    timer = QTimer(app)
    timer.setInterval(200)

    def check() -> None:
        if not preload.is_alive():
            timer.stop()
            timer.deleteLater()
            gc.freeze()

    timer.timeout.connect(check)
    timer.start()


class JobSetupGuard:
    """Automatic collection off while a worker job sets up; on again, after a freeze, at its first step.

    Set-up (imports, model building, reading the cases) allocates a burst of long-lived objects that
    triggers full collections one after another; the job's own steps allocate little that survives.
    ``step(n)`` is called from the job's progress callback; the first ``n >= 1`` ends the set-up. Leaving
    the ``with`` block always restores the collector as it was (error, cancel or done).
    """

    def __init__(self) -> None:
        self._was_enabled = gc.isenabled()
        self._set_up = False

    def __enter__(self) -> JobSetupGuard:
        gc.disable()
        return self

    def step(self, n: int) -> None:
        if n >= 1 and not self._set_up:
            self._end_setup()

    def __exit__(self, *exc) -> None:
        if not self._set_up:
            self._end_setup()

    @property
    def in_setup(self) -> bool:
        return not self._set_up

    def _end_setup(self) -> None:
        self._set_up = True
        gc.freeze()
        if self._was_enabled:
            gc.enable()
