"""Entry point of the frozen (PyInstaller) LoRKD Studio.

A frozen program has no Python interpreter, but the app starts Python children in two places:

* training jobs in "subprocess" mode run ``sys.executable -m lorkd_core ...`` or
  ``sys.executable -m torch.distributed.run ... -m lorkd_core ...`` (app/jobs/process.py), and torchrun
  then starts each rank as ``sys.executable -u -m lorkd_core ...``;
* ``ProcessPoolExecutor`` / ``multiprocessing`` with the "spawn" start method (default on Windows and
  macOS) re-runs the executable with multiprocessing's own arguments.

In the frozen program ``sys.executable`` is this executable, so it accepts the interpreter options those
callers use: ``[-u] -m MODULE ARGS...`` for the modules in ``RUNNABLE_MODULES`` (nothing else: this is not
a general Python interpreter), and ``multiprocessing.freeze_support()`` handles the spawn children.
Everything else is the GUI's own command line (``lorkd_studio.main``).

The ``lorkd`` command line: build.py writes a ``lorkd`` launcher beside the executable (Linux, macOS) that
runs ``lorkd-studio -m lorkd_core``; on Windows the spec builds a console ``lorkd.exe`` from this same
script, which runs the command line when its own name is ``lorkd``.
"""

from __future__ import annotations

import multiprocessing
import os
import sys

# Modules that ``-m`` may run in the frozen program (the spec collects them).
RUNNABLE_MODULES = ("lorkd_core", "torch.distributed.run")


def _unbuffered() -> None:
    """``-u`` / PYTHONUNBUFFERED: the frozen interpreter ignores PYTHON* variables, so apply it by hand
    (the GUI reads a job's JSON progress lines as they are written)."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None and hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True, write_through=True)


def _run_module(argv: list[str]) -> int:
    """``[-u] -m MODULE ARGS...`` as the interpreter would run it."""
    import runpy

    args = list(argv)
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    while args and args[0] == "-u":
        unbuffered = True
        args.pop(0)
    if len(args) < 2 or args[0] != "-m":
        print("lorkd-studio: error: expected [-u] -m MODULE", file=sys.stderr)
        return 2
    module = args[1]
    if module not in RUNNABLE_MODULES:
        print(f"lorkd-studio: error: -m {module}: only {', '.join(RUNNABLE_MODULES)} can run in the frozen "
              "program", file=sys.stderr)
        return 2
    if unbuffered:
        _unbuffered()
    sys.argv = [sys.executable, *args[2:]]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:  # the module's own sys.exit(code)
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0


def main() -> int:
    multiprocessing.freeze_support()  # a spawn child never returns from here
    argv = sys.argv[1:]
    if argv[:1] in (["-m"], ["-u"]):
        return _run_module(argv)
    if os.path.splitext(os.path.basename(sys.executable))[0].lower() == "lorkd":
        return _run_module(["-m", "lorkd_core", *argv])
    from lorkd_studio.main import main as studio_main

    return studio_main(argv)


if __name__ == "__main__":
    sys.exit(main())
