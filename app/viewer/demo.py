"""Show the viewer on a synthetic abdomen: ``python -m lorkd_studio.viewer.demo [--screenshot OUT.png]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

DEMO_NAMES = {1: "liver", 2: "spleen", 3: "kidney_right", 4: "kidney_left", 5: "vertebrae_L1", 6: "aorta"}
DEMO_COLORS = {
    1: (221, 130, 101),
    2: (157, 108, 162),
    3: (120, 170, 210),
    4: (120, 170, 210),
    5: (241, 214, 145),
    6: (224, 97, 76),
}


def synthetic_abdomen(
    shape: tuple[int, int, int] = (60, 160, 192), seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like (z, y, x) phantom in HU on an LPS identity grid (x toward patient left, y posterior)."""
    nz, ny, nx = shape
    z, y, x = np.meshgrid(
        np.linspace(-1, 1, nz, dtype=np.float32),
        np.linspace(-1, 1, ny, dtype=np.float32),
        np.linspace(-1, 1, nx, dtype=np.float32),
        indexing="ij",
    )

    def blob(cx: float, cy: float, cz: float, rx: float, ry: float, rz: float) -> np.ndarray:
        return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2 < 1.0

    rng = np.random.default_rng(seed)
    ct = np.full(shape, -1000.0, dtype=np.float32)
    body = (x / 0.92) ** 2 + (y / 0.72) ** 2 < 1.0
    ct[body] = -90.0  # subcutaneous fat
    ct[(x / 0.84) ** 2 + (y / 0.62) ** 2 < 1.0] = 35.0  # muscle and bowel
    labels = np.zeros(shape, dtype=np.int16)
    organs = [
        (1, blob(-0.38, -0.05, 0.25, 0.36, 0.42, 0.7), 62.0),  # liver on the patient's right (low x)
        (2, blob(0.5, 0.2, 0.35, 0.16, 0.2, 0.4), 48.0),
        (3, blob(-0.3, 0.38, -0.3, 0.12, 0.14, 0.45), 150.0),
        (4, blob(0.3, 0.38, -0.25, 0.12, 0.14, 0.45), 150.0),
        (6, (x + 0.05) ** 2 / 0.06**2 + (y - 0.22) ** 2 / 0.06**2 < 1.0, 180.0),
    ]
    for label_id, mask, hu in organs:
        ct[mask] = hu
        labels[mask] = label_id
    lungs = (blob(-0.45, 0.1, 0.95, 0.32, 0.45, 0.45) | blob(0.45, 0.1, 0.95, 0.32, 0.45, 0.45)) & ~(
        labels > 0
    )
    ct[lungs] = -850.0
    column = (x / 0.13) ** 2 + ((y - 0.5) / 0.13) ** 2 < 1.0
    body_part = np.cos(z * np.pi * 3.5) > -0.55  # vertebral bodies separated by discs
    ct[column] = 80.0
    vertebra = column & body_part
    ct[vertebra] = 650.0
    ct[vertebra & ((x / 0.08) ** 2 + ((y - 0.5) / 0.08) ** 2 < 1.0)] = 250.0  # cancellous core
    labels[vertebra] = 5
    ct += rng.normal(0.0, 12.0, size=shape).astype(np.float32)
    return ct, labels


_DEMO_STYLE = """
QMainWindow, QToolBar, QStatusBar { background: #16191f; color: #cbd5e1; border: none; }
QToolBar QLabel, QToolBar QCheckBox { color: #cbd5e1; }
QComboBox { background: #262b35; color: #e5e7eb; border: 1px solid #3a404c; border-radius: 3px; padding: 2px 8px; }
QComboBox QAbstractItemView { background: #262b35; color: #e5e7eb; selection-background-color: #3b82f6; }
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--screenshot", help="save a grab of the window to this PNG and exit")
    parser.add_argument("--size", default="1400x900")
    args = parser.parse_args(argv)

    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtWidgets import QApplication, QCheckBox, QComboBox, QLabel, QMainWindow, QSlider, QToolBar

    from .viewer_widget import LAYOUTS, ViewerWidget

    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = QMainWindow()
    window.setWindowTitle("LoRKD Studio viewer demo")
    window.setStyleSheet(_DEMO_STYLE)
    viewer = ViewerWidget()
    window.setCentralWidget(viewer)
    ct, labels = synthetic_abdomen()
    viewer.set_volume(ct, spacing=(1.5, 1.5, 4.0), modality="CT")
    viewer.set_labels(labels, DEMO_COLORS, DEMO_NAMES)
    viewer.show_surfaces(True)

    bar = QToolBar("View", window)
    bar.setMovable(False)
    presets = QComboBox(bar)
    presets.addItems(list(viewer.presets()))
    presets.currentTextChanged.connect(viewer.set_preset)
    opacity = QSlider(Qt.Orientation.Horizontal, bar)
    opacity.setRange(0, 100)
    opacity.setValue(50)
    opacity.setMaximumWidth(140)
    opacity.valueChanged.connect(lambda v: viewer.set_opacity(v / 100))
    surfaces = QCheckBox("3D surfaces", bar)
    surfaces.setChecked(True)
    surfaces.toggled.connect(viewer.show_surfaces)
    layout = QComboBox(bar)
    layout.addItems(list(LAYOUTS))
    layout.currentTextChanged.connect(viewer.set_layout)
    viewer.layout_changed.connect(layout.setCurrentText)
    for text, widget in (
        ("Window ", presets),
        ("  Opacity ", opacity),
        ("  ", surfaces),
        ("  Layout ", layout),
    ):
        bar.addWidget(QLabel(text, bar))
        bar.addWidget(widget)
    window.addToolBar(bar)
    status = window.statusBar()
    viewer.cursor_info.connect(
        lambda v, value, label, name: status.showMessage(f"voxel {v}   {value:.0f} HU   {name or '-'}")
    )
    window.resize(*(int(s) for s in args.size.split("x")))
    window.show()
    if args.screenshot:

        def shoot() -> None:
            viewer.set_crosshair((34, 80, 70))
            viewer.grab_composite()
            window.grab().save(args.screenshot)
            viewer.close()
            app.quit()

        QTimer.singleShot(500, shoot)
    code = app.exec()
    viewer.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
