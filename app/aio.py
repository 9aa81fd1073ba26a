"""The app's asyncio event loop: qasync's QEventLoop, so coroutines run on the Qt (UI) thread between Qt events.

``lorkd-studio`` installs it before the window exists (:func:`install`) and runs it as the main loop
(app/main.py). Anywhere else, e.g. under pytest-qt, where the QApplication already exists and Qt events are
processed by nested event loops (``qtbot.waitUntil``), :func:`qt_loop` installs one on first use with
``already_running=True``: asyncio then sees a running loop on the UI thread, and its callbacks, timers and
pipe readers fire whenever Qt processes events.

Such a lazily installed loop is never ``stop()``-ped: qasync's stop() calls ``QApplication.exit()``, and
outside ``exec()`` that leaves Qt's "quit now" flag set, so every later ``QEventLoop.exec()`` in the
process returns at once (pytest-qt's waits included). :func:`detach` only hands the thread back to plain
asyncio (tests call it when done).
"""

from __future__ import annotations

import asyncio

_loop: asyncio.AbstractEventLoop | None = None


def install(app) -> asyncio.AbstractEventLoop:
    """The main loop of ``lorkd-studio`` (not running yet: ``loop.run_until_complete(...)`` runs the app)."""
    import qasync

    global _loop
    _loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(_loop)
    return _loop


def qt_loop() -> asyncio.AbstractEventLoop:
    """The asyncio loop on the Qt thread, installed on an existing QApplication at first use (RuntimeError
    when there is no QApplication or qasync cannot run)."""
    global _loop
    if _loop is not None and not _loop.is_closed():
        if asyncio._get_running_loop() is None and _loop.is_running():
            asyncio.events._set_running_loop(_loop)  # re-attach after detach()
        return _loop
    import qasync
    from PySide6.QtCore import QCoreApplication

    app = QCoreApplication.instance()
    if app is None:
        raise RuntimeError("no QApplication: the asyncio loop runs on Qt's event loop")
    running = asyncio._get_running_loop()
    if isinstance(running, qasync.QEventLoop):
        _loop = running
        return _loop
    if running is not None:
        raise RuntimeError(f"another asyncio loop is running on the UI thread ({type(running).__name__})")
    _loop = qasync.QEventLoop(app, already_running=True)
    asyncio.set_event_loop(_loop)
    return _loop


def detach() -> None:
    """Tests: no running asyncio loop on this thread any more (``asyncio.run`` works again); the loop object
    stays and :func:`qt_loop` re-attaches it. Call only when no coroutine of the loop is still waiting."""
    if _loop is not None and asyncio._get_running_loop() is _loop:
        asyncio.events._set_running_loop(None)
