"""Window grabs, and the ``--screenshot`` run: load, run the expert, wait for the result, save, exit."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEventLoop, QObject, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import QApplication, QWidget

from .viewer import ViewerWidget

SETTLE_MS = 700  # lets the viewer finish its first renders (surfaces, slices) before the grab


def grab_window(window: QWidget) -> QImage:
    """The window as on screen. A screen grab includes OpenGL views (a widget grab can leave them black),
    so it is used whenever the window lies fully on a real screen."""
    QApplication.processEvents()
    screen = window.screen()
    on_screen = screen is not None and screen.geometry().contains(window.frameGeometry())
    if QGuiApplication.platformName() not in ("offscreen", "minimal") and on_screen and window.isVisible():
        pixmap = screen.grabWindow(window.winId())
        if not pixmap.isNull():
            return pixmap.toImage()
    return window.grab().toImage()


def image_stats(image: QImage) -> tuple[float, int]:
    """(standard deviation of grey values, number of distinct colours in a sample): is the grab non-trivial?"""
    img = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h = img.width(), img.height()
    buf = np.frombuffer(img.constBits(), dtype=np.uint8, count=img.bytesPerLine() * h)
    rgb = buf.reshape(h, img.bytesPerLine())[:, : 3 * w].reshape(h, w, 3)
    sample = rgb[::4, ::4].reshape(-1, 3)
    colors = len(np.unique(sample[:, 0].astype(np.int32) << 16 | sample[:, 1].astype(np.int32) << 8 | sample[:, 2]))
    return float(rgb.mean(axis=2).std()), colors


def settle_viewer(viewer: ViewerWidget, timeout_s: float = 60.0) -> None:
    """Let the viewer finish background work (3D surfaces) so the grab shows the final picture."""
    viewer.volume_view.wait_for_surfaces(timeout_s)
    # The 3D view renders on a short timer and then repaints: give both a moment.
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        QApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.01)


def save_window_png(window: QWidget, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not grab_window(window).save(str(path), "PNG"):
        raise OSError(f"cannot write PNG to {path}")
    return path


class ScreenshotRun(QObject):
    """Drives a MainWindow through one case and reports an exit code (0 saved, 1 failed)."""

    finished = Signal(int)

    def __init__(self, window, out: str | Path, scan: str | Path | None = None, region: str | None = None,
                 model: str | None = None, timeout_s: float = 600.0) -> None:
        super().__init__(window)
        self.window = window
        self.session = window.session
        self.out = Path(out)
        self.scan = scan
        self.model = model
        self._done = False
        self.session.region_override = region
        self.session.model_override = model
        window.show_errors_in_dialogs = False
        self.session.failed.connect(lambda title, path, problem: self._fail(
            f"{title}: {path + ': ' if path else ''}{problem}"))
        self.session.no_model.connect(self._on_no_model)
        self.session.demo_unavailable.connect(lambda why: self._fail(f"no demo case available ({why}); pass a SCAN"))
        self.session.state.result_changed.connect(self._on_result)
        self.session.state.offered_changed.connect(self._check_model)
        self._timeout = QTimer(self, singleShot=True, interval=int(timeout_s * 1000))
        self._timeout.timeout.connect(lambda: self._fail(f"timed out after {timeout_s:.0f} s"))

    def start(self) -> None:
        self._timeout.start()
        self.session.refresh_models()
        if self.scan is not None:
            self.session.open_path(self.scan)
        else:
            self.session.open_demo()

    def _check_model(self, offered) -> None:
        from .session import match_model

        if self.model and self.session.state.scan is not None and offered and match_model(self.model, offered) is None:
            names = ", ".join(m.name for m in offered)
            self._fail(f"no model '{self.model}' for region {self.session.state.region}; available: {names}")

    def _on_no_model(self, region: str) -> None:
        if self.model:
            self._fail(f"no model '{self.model}' for region {region}: none is installed for it")
        else:
            print(f"lorkd-studio: warning: no expert is installed for region {region}; "
                  "saving the screenshot without a segmentation", file=sys.stderr)
            self._grab_soon()

    def _on_result(self, result) -> None:
        if result is not None and result.model_id == self.session.state.model_id:
            self._grab_soon()

    def _grab_soon(self) -> None:
        if not self._done:
            QTimer.singleShot(SETTLE_MS, self._grab)

    def _grab(self) -> None:
        if self._done:
            return
        settle_viewer(self.window.viewer)
        try:
            save_window_png(self.window, self.out)
        except OSError as exc:
            self._fail(str(exc))
            return
        print(f"lorkd-studio: saved {self.out}")
        self._finish(0)

    def _fail(self, message: str) -> None:
        if not self._done:
            print(f"lorkd-studio: error: {message}", file=sys.stderr)
            self._finish(1)

    def _finish(self, code: int) -> None:
        self._done = True
        self._timeout.stop()
        self.finished.emit(code)
