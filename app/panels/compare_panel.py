"""Compare: a second expert on the same scan, per-structure volume changes and a difference overlay."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..state import Comparison, StudioState

COLUMNS = ("Structure", "A (mL)", "B (mL)", "Δ (mL)", "Δ %")


class ComparePanel(QWidget):
    difference_toggled = Signal(bool)

    def __init__(self, state: StudioState, compare, display_name, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._state = state
        self._display_name = display_name
        self.other = QComboBox()
        self.other.setObjectName("compareCombo")
        self.button = QPushButton("Compare")
        self.button.setObjectName("primaryButton")
        self.button.clicked.connect(lambda: compare(self.other.currentData()) if self.other.currentData() else None)
        self.heading = QLabel("Pick a second expert to compare with the current one")
        self.heading.setObjectName("muted")
        self.heading.setWordWrap(True)
        self.difference = QCheckBox("Show difference overlay")
        self.difference.setObjectName("differenceToggle")
        self.difference.setEnabled(False)
        self.legend = QLabel("<span style='color:#ff6347'>■</span> only A &nbsp; "
                             "<span style='color:#1e90ff'>■</span> only B &nbsp; "
                             "<span style='color:#ffd700'>■</span> A and B disagree")
        self.legend.setObjectName("muted")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("compareTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in range(1, len(COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        row = QHBoxLayout()
        row.addWidget(QLabel("B:"))
        row.addWidget(self.other, 1)
        row.addWidget(self.button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.heading)
        layout.addWidget(self.difference)
        layout.addWidget(self.legend)
        layout.addWidget(self.table, 1)
        self.difference.toggled.connect(self.difference_toggled)
        state.offered_changed.connect(lambda _m: self._fill_choices())
        state.model_changed.connect(lambda _m: self._fill_choices())
        state.scan_changed.connect(lambda _s: self._fill_choices())
        state.comparison_changed.connect(self.show_comparison)
        self._fill_choices()

    def _fill_choices(self) -> None:
        keep = self.other.currentData()
        self.other.clear()
        for m in self._state.offered:
            if m.id != self._state.model_id and m.task == "segmentation":
                self.other.addItem(m.name, m.id)
        index = self.other.findData(keep)
        self.other.setCurrentIndex(index if index >= 0 else 0)
        self.button.setEnabled(self._state.scan is not None and self.other.count() > 0)

    def show_comparison(self, comparison: Comparison | None) -> None:
        self.table.setRowCount(0)
        if comparison is None:
            self.heading.setText("Pick a second expert to compare with the current one")
            self.difference.setChecked(False)
            self.difference.setEnabled(False)
            return
        a = self._state.model
        self.heading.setText(f"A: {a.name if a else '?'}\nB: {comparison.model.name}")
        self.difference.setEnabled(True)
        self.table.setRowCount(len(comparison.changes))
        for r, c in enumerate(comparison.changes):
            pct = "new" if c.percent is None else f"{c.percent:+.1f}"
            cells = [QTableWidgetItem(self._display_name(c.name)), _num(c.volume_a), _num(c.volume_b),
                     _num(c.delta, signed=True), QTableWidgetItem(pct)]
            cells[4].setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if c.percent is None or abs(c.percent) >= 10:
                for item in cells[3:]:
                    item.setForeground(QColor("#e0a030"))
            for col, item in enumerate(cells):
                self.table.setItem(r, col, item)


def _num(value: float, signed: bool = False) -> QTableWidgetItem:
    item = QTableWidgetItem(f"{value:+,.2f}" if signed else f"{value:,.2f}")
    item.setData(Qt.ItemDataRole.UserRole, float(value))
    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item
