"""Entry point of ``lorkd-studio``.

Startup imports only Qt and the app's own modules; torch is imported on the worker thread when the first
task needs it, so the window appears at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .runtime_policy import freeze_after_3d_preload, responsive_gil_switching
from .services.types import REGION_ORDER


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lorkd-studio", description="LoRKD Studio: region experts for medical scans")
    parser.add_argument("scan", nargs="?", help="scan to open: a NIfTI/NRRD/MHA file or a DICOM folder")
    parser.add_argument("--screenshot", metavar="OUT.png",
                        help="load (the demo by default), run the expert, save a PNG of the window and exit")
    parser.add_argument("--region", choices=REGION_ORDER, help="region to use instead of the suggested one")
    parser.add_argument("--model", help="model to run: an id, a name, a model folder, or a kind such as 'teacher'")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="compute device for this session")
    parser.add_argument("--timeout", type=float, default=600.0, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.screenshot and sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if args.scan is not None and not Path(args.scan).exists():
        print(f"lorkd-studio: error: {args.scan}: file or folder does not exist", file=sys.stderr)
        return 2

    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow
    from .qt_fixes import protect_singletons
    from .screenshot import ScreenshotRun
    from .services.settings import AppSettings
    from .session import Session
    from .theme import apply_dark_theme

    protect_singletons()  # PySide6 6.12 + Python 3.11: each Signal.emit would cost True one reference
    app = QApplication.instance() or QApplication(["lorkd-studio"])
    app.setApplicationName("LoRKD Studio")
    app.setOrganizationName("LoRKD")
    apply_dark_theme(app)
    loop = _install_event_loop(app)  # before the window: subprocess jobs are watched on this loop

    scratch = None
    if args.screenshot:
        # A throw-away settings file: a documentation run must not touch the user's recent files or layout.
        scratch = tempfile.TemporaryDirectory(prefix="lorkd-studio-")
        settings = AppSettings(Path(scratch.name) / "settings.ini")
    else:
        settings = AppSettings()
    if args.device:
        settings.device = args.device
    session = Session(settings)
    window = MainWindow(session, restore_layout=not args.screenshot)
    # the process-wide interpreter policies live in runtime_policy.py, nowhere else
    responsive_gil_switching()
    freeze_after_3d_preload(app)
    result = {"code": 0}

    if args.screenshot:
        runner = ScreenshotRun(window, args.screenshot, args.scan, args.region, args.model, args.timeout)

        def finish(code: int) -> None:
            result["code"] = code
            window.close()
            app.quit()

        runner.finished.connect(finish)
        window.move(0, 0)
        window.show()
        runner.start()
    else:
        window.confirm_quit_with_jobs = True
        session.region_override = args.region
        session.model_override = args.model
        window.show()
        window.start(args.scan)
    _run_event_loop(app, loop)
    if scratch is not None:
        scratch.cleanup()
    return result["code"]


def _install_event_loop(app):
    """qasync's asyncio loop on Qt's event loop (app/aio.py), or None when it cannot be made (the app then
    runs on plain Qt, and subprocess jobs say that they cannot be watched)."""
    try:
        from .aio import install

        return install(app)
    except Exception as exc:  # any failure here must not keep the app from running
        print(f"lorkd-studio: warning: asyncio integration unavailable ({exc}); running without it",
              file=sys.stderr)
        return None


def _run_event_loop(app, loop) -> None:
    """Run the app: the qasync loop until the application quits (plain ``app.exec()`` without one)."""
    if loop is None:
        app.exec()
        return
    import asyncio

    quit_event = asyncio.Event()
    app.aboutToQuit.connect(quit_event.set)
    with loop:
        loop.run_until_complete(quit_event.wait())


if __name__ == "__main__":
    sys.exit(main())
