"""Outputs: structure table (volume, mean intensity, border warning, visibility) or class probabilities."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHeaderView,
    QLabel,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..services.types import ClassificationResult, SegmentationResult
from ..state import StudioState
from .bar_chart import BarChart
from .guard import Guard

COLUMNS = ("Structure", "mL", "Mean", "3D", "")
BORDER_MARK = "⚠"


class OutputsPanel(QWidget):
    structure_visibility_changed = Signal(int, bool)
    surface_visibility_changed = Signal(int, bool)
    saliency_toggled = Signal(bool)

    def __init__(self, state: StudioState, colors_for, display_name, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._state = state
        self._colors_for = colors_for
        self._display_name = display_name
        self._guard = Guard()
        self.summary = QLabel("Run an expert to see its results")
        self.summary.setObjectName("muted")
        self.summary.setWordWrap(True)
        self.warning = QLabel("")
        self.warning.setObjectName("warning")
        self.warning.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("structureTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        for col, tip in enumerate(("Tick to show the structure's overlay", "Volume in millilitres",
                                   "Mean intensity inside the structure", "Tick to show the 3D surface",
                                   "⚠: touches the scan's edge, so the volume is incomplete")):
            self.table.horizontalHeaderItem(col).setToolTip(tip)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setDefaultSectionSize(24)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in (1, 2, 3, 4):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.chart = BarChart()
        self.saliency = QCheckBox("Show saliency overlay")
        self.saliency.setObjectName("saliencyToggle")
        self.pages = QStackedWidget()
        self.pages.addWidget(self.table)
        class_page = QWidget()
        class_layout = QVBoxLayout(class_page)
        class_layout.setContentsMargins(0, 0, 0, 0)
        class_layout.addWidget(self.chart)
        class_layout.addWidget(self.saliency)
        class_layout.addStretch(1)
        self.pages.addWidget(class_page)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.warning)
        layout.addWidget(self.pages, 1)
        self.table.itemChanged.connect(self._on_item_changed)
        self.saliency.toggled.connect(self.saliency_toggled)
        state.result_changed.connect(self.show_result)
        self.show_result(state.result)

    def show_result(self, result) -> None:
        with self._guard():
            self.table.setRowCount(0)
            self.warning.setText("")
            if isinstance(result, SegmentationResult):
                self._show_segmentation(result)
            elif isinstance(result, ClassificationResult):
                self._show_classification(result)
            else:
                self.summary.setText("Run an expert to see its results")
                self.pages.setCurrentIndex(0)
        self.warning.setVisible(bool(self.warning.text()))

    def _show_segmentation(self, result: SegmentationResult) -> None:
        self.pages.setCurrentIndex(0)
        # the whole label set, as the viewer's overlay gets it: a clash-free colour depends on the set
        colors = self._colors_for(dict(result.label_names) or {s.label_id: s.name for s in result.stats})
        self.table.setRowCount(len(result.stats))
        for row, s in enumerate(result.stats):
            name = QTableWidgetItem(_swatch(colors.get(s.label_id, (200, 200, 200))), self._display_name(s.name))
            name.setFlags(name.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            name.setCheckState(Qt.CheckState.Checked)
            name.setData(Qt.ItemDataRole.UserRole, s.label_id)
            name.setToolTip(f"{s.name} (label {s.label_id}): untick to hide")
            surface = QTableWidgetItem("")
            surface.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
            surface.setCheckState(Qt.CheckState.Checked)
            surface.setData(Qt.ItemDataRole.UserRole, s.label_id)
            surface.setToolTip("Show this structure's 3D surface")
            border = QTableWidgetItem(BORDER_MARK if s.touches_border else "")
            if s.touches_border:
                border.setForeground(QColor("#e0a030"))
                border.setToolTip("Touches the scan border: the structure continues outside, its volume is incomplete")
            cells = [name, _number(s.volume_ml, 2), _number(s.mean_intensity, 1), surface, border]
            for col, item in enumerate(cells):
                self.table.setItem(row, col, item)
        self.table.setHorizontalHeaderItem(2, QTableWidgetItem("Mean HU" if self._is_ct() else "Mean"))
        total = sum(s.volume_ml for s in result.stats)
        self.summary.setText(f"{len(result.stats)} structures · {total:.1f} mL labelled · {result.seconds:.2f} s")
        touching = [self._display_name(s.name) for s in result.stats if s.touches_border]
        if touching:
            self.warning.setText(f"⚠ {len(touching)} of {len(result.stats)} structures reach the scan's edge: "
                                 "their volumes are incomplete")
            self.warning.setToolTip(", ".join(touching))

    def _show_classification(self, result: ClassificationResult) -> None:
        self.pages.setCurrentIndex(1)
        self.chart.set_values(result.probabilities)
        self.saliency.setEnabled(result.saliency is not None)
        best = max(result.probabilities.items(), key=lambda kv: kv[1], default=("", 0.0))
        self.summary.setText(f"Most likely: {best[0].replace('_', ' ')} ({100 * best[1]:.1f}%) · "
                             f"{result.seconds:.2f} s")

    def _is_ct(self) -> bool:
        return self._state.scan is not None and self._state.scan.modality == "CT"

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if self._guard.active or item.column() not in (0, 3):
            return
        signal = self.structure_visibility_changed if item.column() == 0 else self.surface_visibility_changed
        signal.emit(int(item.data(Qt.ItemDataRole.UserRole)), item.checkState() == Qt.CheckState.Checked)

    def rows(self) -> list[tuple[str, float, float, bool]]:
        """(structure, volume mL, mean, touches border) as shown."""
        return [(self.table.item(r, 0).text(), float(self.table.item(r, 1).data(Qt.ItemDataRole.UserRole)),
                 float(self.table.item(r, 2).data(Qt.ItemDataRole.UserRole)), bool(self.table.item(r, 4).text()))
                for r in range(self.table.rowCount())]


def _number(value: float, digits: int) -> QTableWidgetItem:
    item = QTableWidgetItem(f"{value:,.{digits}f}")
    item.setData(Qt.ItemDataRole.UserRole, float(value))
    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


def _swatch(color: tuple[int, int, int]) -> QIcon:
    pix = QPixmap(12, 12)
    pix.fill(QColor(*color))
    return QIcon(pix)
