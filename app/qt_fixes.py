"""A guard against reference-count bugs of PySide6 6.12.0 that abort the interpreter on Python < 3.12.

Measured with PySide6 6.12.0 / shiboken6 6.12.0 on CPython 3.11.7:
- ``SignalInstance.emit()`` returns ``True`` without taking a reference for it: every emit from Python,
  connected or not, leaves ``True`` with one reference fewer;
- ``QTimer.singleShot(0, callable)`` does the same to ``None``.
When the count reaches zero, CPython aborts ("Fatal Python error: bool_dealloc: deallocating True or
False"). With the app, torch and MONAI loaded, ``True`` starts near 24,000 references, so a session that
emits that many signals from Python (a job's progress, a flood of subprocess records, a long session
in the viewer) dies. Python 3.12 made these objects immortal; this guard does the same for 3.11: when a
probe shows the leak, it adds 2**40 references to ``None``, ``True`` and ``False`` (their reference
count is only a number; nothing frees them while the interpreter runs).
"""

from __future__ import annotations

import sys

EXTRA_REFERENCES = 1 << 40
_applied = False


def emit_leaks_true(probes: int = 64) -> bool:
    """Whether ``Signal.emit`` loses a reference to ``True`` in this PySide6 (measured, not looked up)."""
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(probes):
        probe.ping.emit()
    lost = before - sys.getrefcount(True)
    probe.deleteLater()
    return lost >= probes // 2


def protect_singletons() -> bool:
    """Make None, True and False as good as immortal when PySide6 leaks references to them; True if done.
    Idempotent; does nothing on Python >= 3.12 (immortal already) or outside CPython."""
    global _applied
    if _applied:
        return True
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False
    leaked = emit_leaks_true()
    if leaked:
        import ctypes

        for obj in (None, True, False):
            # ob_refcnt is the first field of every CPython object, at the address id() gives
            ctypes.c_ssize_t.from_address(id(obj)).value += EXTRA_REFERENCES
        _applied = True
    return _applied
