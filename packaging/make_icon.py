"""Render ``icons/lorkd-studio.svg`` to the PNG sizes the build and the .desktop entry use.

Run after editing the SVG: ``python packaging/make_icon.py``. Needs only PySide6 (QtSvg), already a
dependency of the app; QT_QPA_PLATFORM=offscreen is set, so no display is required.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ICONS = Path(__file__).resolve().parent / "icons"
SIZES = (256,)  # one PNG: hicolor/256x256 for Linux; PyInstaller turns it into .ico / .icns on Windows / macOS


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 - QPainter needs it
    renderer = QSvgRenderer(str(ICONS / "lorkd-studio.svg"))
    if not renderer.isValid():
        print("make_icon: cannot parse lorkd-studio.svg", file=sys.stderr)
        return 1
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        out = ICONS / ("lorkd-studio.png" if size == 256 else f"lorkd-studio-{size}.png")
        if not image.save(str(out), "PNG"):
            print(f"make_icon: cannot write {out}", file=sys.stderr)
            return 1
        print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
