"""Expert switcher: the models valid for the region and modality, with the selected one's card."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..services.types import ModelInfo
from ..state import StudioState
from .guard import Guard

EMPTY_TEXT = "No expert for this region and modality.\nAdd a model folder in Settings > Model folders."


def format_parameters(n: int) -> str:
    if n <= 0:
        return "unknown"
    if n >= 1_000_000:
        return f"{n / 1e6:.2f} M"
    return f"{n / 1e3:.1f} k" if n >= 1000 else str(n)


class ExpertPanel(QGroupBox):
    def __init__(self, state: StudioState, run, parent: QWidget | None = None) -> None:
        super().__init__("Expert", parent)
        self._state = state
        self._guard = Guard()
        self.list = QListWidget()
        self.list.setObjectName("expertList")
        self.list.setAlternatingRowColors(True)
        self.empty = QLabel(EMPTY_TEXT)
        self.empty.setObjectName("muted")
        self.empty.setWordWrap(True)
        self.title = QLabel("")
        self.title.setObjectName("cardTitle")
        self.title.setWordWrap(True)
        self.card = QFormLayout()
        self.card.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
        self.card.setHorizontalSpacing(10)
        self._fields: dict[str, QLabel] = {}
        for key in ("Kind", "Task", "Parameters", "Ranks", "Training data", "Dice", "Modality"):
            value = QLabel("")
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self._fields[key] = value
            self.card.addRow(QLabel(key), value)
        self.run_button = QPushButton("Run expert")
        self.run_button.setObjectName("primaryButton")
        self.run_button.clicked.connect(lambda: run())
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.run_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)
        layout.addWidget(self.empty)
        layout.addWidget(self.title)
        layout.addLayout(self.card)
        layout.addLayout(buttons)
        layout.addStretch(1)
        self.list.currentItemChanged.connect(self._on_item)
        state.offered_changed.connect(self._fill)
        state.model_changed.connect(self._on_model)
        state.scan_changed.connect(lambda _s: self._update_enabled())
        state.region_changed.connect(lambda _r: self._fill(state.offered))
        self._fill(state.offered)

    def _fill(self, models: list[ModelInfo]) -> None:
        with self._guard():
            self.list.clear()
            for m in models:
                dice = f"   Dice {m.dice:.2f}" if m.dice is not None else ""
                item = QListWidgetItem(f"{m.name}\n{m.kind_label} · {format_parameters(m.parameters)} params{dice}")
                item.setData(Qt.ItemDataRole.UserRole, m.id)
                item.setToolTip(m.id)
                self.list.addItem(item)
            self._select(self._state.model_id)
        self.empty.setText(EMPTY_TEXT if self._state.region else "Open a scan and pick its region to see its experts.")
        self.empty.setVisible(not models)
        self.list.setVisible(bool(models))
        # As tall as its entries (up to six), so the card sits right below the list.
        rows = max(1, min(6, len(models)))
        self.list.setFixedHeight(rows * max(self.list.sizeHintForRow(0), 40) + 2 * self.list.frameWidth() + 4)
        self._show_card(self._state.model)
        self._update_enabled()

    def _select(self, model_id: str) -> None:
        for row in range(self.list.count()):
            if self.list.item(row).data(Qt.ItemDataRole.UserRole) == model_id:
                self.list.setCurrentRow(row)
                return
        self.list.setCurrentRow(-1)

    def _on_model(self, model_id: str) -> None:
        with self._guard():
            self._select(model_id)
        self._show_card(self._state.model)
        self._update_enabled()

    def _on_item(self, current: QListWidgetItem | None, _previous) -> None:
        if self._guard.active or current is None:
            return
        self._state.set_model(current.data(Qt.ItemDataRole.UserRole))

    def _update_enabled(self) -> None:
        self.run_button.setEnabled(self._state.scan is not None and self._state.model is not None)

    def _show_card(self, m: ModelInfo | None) -> None:
        has = m is not None
        self.title.setVisible(has)
        for row in range(self.card.rowCount()):
            for role in (QFormLayout.ItemRole.LabelRole, QFormLayout.ItemRole.FieldRole):
                item = self.card.itemAt(row, role)
                if item is not None and item.widget() is not None:
                    item.widget().setVisible(has)
        if m is None:
            return
        self.title.setText(m.name)
        values = {"Kind": m.kind_label + (" (bundled)" if m.bundled else ""), "Task": m.task.capitalize(),
                  "Parameters": format_parameters(m.parameters), "Ranks": m.ranks or "n/a",
                  "Training data": m.training or "not recorded",
                  "Dice": "not evaluated" if m.dice is None else f"{m.dice:.3f}", "Modality": m.modality}
        for key, text in values.items():
            self._fields[key].setText(text)

    def select_model(self, model_id: str) -> None:
        """As a user clicking the list entry."""
        for row in range(self.list.count()):
            if self.list.item(row).data(Qt.ItemDataRole.UserRole) == model_id:
                self.list.setCurrentRow(row)
                return
        raise KeyError(model_id)
