"""Region picker: the eight regions, the one suggested for the scan marked and preselected."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QGroupBox, QLabel, QVBoxLayout, QWidget

from ..services.types import RegionInfo
from ..state import StudioState
from .guard import Guard


class RegionPanel(QGroupBox):
    def __init__(self, state: StudioState, regions: list[RegionInfo], parent: QWidget | None = None) -> None:
        super().__init__("Region", parent)
        self._state = state
        self._guard = Guard()
        self._regions = regions
        self.combo = QComboBox()
        self.combo.setObjectName("regionCombo")
        self.combo.setToolTip("Body region of the scan: decides which experts are offered")
        self.hint = QLabel("Open a scan to get a suggestion")
        self.hint.setObjectName("muted")
        self.hint.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.combo)
        layout.addWidget(self.hint)
        self._fill()
        self.combo.currentIndexChanged.connect(self._on_combo)
        state.region_changed.connect(self._on_region)
        state.suggested_region_changed.connect(lambda _r: self._fill())
        state.scan_changed.connect(lambda _s: self._fill())

    def _fill(self) -> None:
        with self._guard():
            self.combo.clear()
            for info in self._regions:
                mark = "  ★ suggested" if info.name == self._state.suggested_region else ""
                self.combo.addItem(info.display_name + mark, info.name)
            self._select(self._state.region)
        suggested = next((r.display_name for r in self._regions if r.name == self._state.suggested_region), None)
        if self._state.scan is None:
            self.hint.setText("Open a scan to get a suggestion")
        else:
            self.hint.setText(f"Suggested for this scan: {suggested}" if suggested else
                              "No suggestion for this scan: pick its region")

    def _select(self, region: str) -> None:
        index = self.combo.findData(region)
        self.combo.setCurrentIndex(index if index >= 0 else -1)

    def _on_region(self, region: str) -> None:
        with self._guard():
            self._select(region)

    def _on_combo(self, index: int) -> None:
        if self._guard.active or index < 0:
            return
        self._state.set_region(self.combo.itemData(index))

    def select_region(self, region: str) -> None:
        """As a user picking from the list (tests and the command line use this)."""
        self.combo.setCurrentIndex(self.combo.findData(region))
