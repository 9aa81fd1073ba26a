"""Viewer settings: window/level preset, overlay opacity, 3D surfaces."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QGroupBox, QSlider, QWidget

from ..viewer import ViewerWidget
from .guard import Guard


class DisplayPanel(QGroupBox):
    def __init__(self, viewer: ViewerWidget, parent: QWidget | None = None) -> None:
        super().__init__("Display", parent)
        self._viewer = viewer
        self._guard = Guard()
        self._presets: dict[str, tuple[float, float]] = {}
        self.preset = QComboBox()
        self.preset.setObjectName("windowPreset")
        self.preset.setToolTip("Window/level preset (drag with the right mouse button in a slice view to adjust)")
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setObjectName("opacitySlider")
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.surfaces = QCheckBox("Show 3D surfaces")
        self.surfaces.setChecked(True)
        layout = QFormLayout(self)
        layout.addRow("Window", self.preset)
        layout.addRow("Overlay opacity", self.opacity)
        layout.addRow("", self.surfaces)
        self.preset.currentTextChanged.connect(self._on_preset)
        self.opacity.valueChanged.connect(lambda v: viewer.set_opacity(v / 100.0))
        self.surfaces.toggled.connect(viewer.show_surfaces)
        viewer.set_opacity(self.opacity.value() / 100.0)
        viewer.show_surfaces(self.surfaces.isChecked())
        viewer.window_changed.connect(self._on_window_changed)

    def set_presets(self, presets: dict[str, tuple[float, float]], current: tuple[float, float] | None) -> None:
        self._presets = dict(presets)
        with self._guard():
            self.preset.clear()
            self.preset.addItems(list(presets))
            self.preset.addItem("Custom")
            self._on_window_changed(*(current or (0.0, 0.0)))

    def _on_preset(self, name: str) -> None:
        if self._guard.active or name not in self._presets:
            return
        self._viewer.set_window(*self._presets[name])

    def _on_window_changed(self, width: float, level: float, *_rest) -> None:
        match = next((n for n, (w, lv) in self._presets.items() if abs(w - width) < 1e-3 and abs(lv - level) < 1e-3),
                     "Custom")
        with self._guard():
            self.preset.setCurrentText(match)
