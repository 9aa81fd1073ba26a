"""The thin title bar above each view (3D Slicer style): coloured tag, view controls, maximise button."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QWidget

VIEWER_STYLE = """
ViewerWidget { background: #0d1016; }
QWidget#viewHeader { background: #1e222a; }
QWidget#viewHeader QLabel { color: #cbd5e1; }
QWidget#viewHeader QToolButton { color: #cbd5e1; border: none; padding: 0 4px; }
QWidget#viewHeader QToolButton:hover { background: #343a46; }
QWidget#viewHeader QSlider::groove:horizontal { height: 4px; background: #3a404c; border-radius: 2px; }
QWidget#viewHeader QSlider::handle:horizontal { width: 10px; margin: -5px 0; background: #9aa4b8; border-radius: 5px; }
"""


class ViewHeader(QWidget):
    maximize_clicked = Signal()

    def __init__(self, title: str, color: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("viewHeader")
        self.setFixedHeight(24)
        tag = QLabel(title, self)
        tag.setObjectName("viewTag")
        tag.setStyleSheet(
            f"background:{color}; color:#111; font-weight:bold; padding:0 8px; border-radius:3px;"
        )
        self.row = QHBoxLayout(self)
        self.row.setContentsMargins(4, 2, 4, 2)
        self.row.addWidget(tag)
        maximize = _button(self, "\u2922", "Maximise / restore this view (or double-click it)")
        maximize.clicked.connect(self.maximize_clicked)
        self.row.addWidget(maximize)

    def add_button(self, text: str, tip: str) -> QToolButton:
        button = _button(self, text, tip)
        self.insert(button)
        return button

    def insert(self, widget: QWidget, stretch: int = 0) -> None:
        """Place a control between the tag and the maximise button."""
        self.row.insertWidget(self.row.count() - 1, widget, stretch)


def _button(parent: QWidget, text: str, tip: str) -> QToolButton:
    button = QToolButton(parent)
    button.setText(text)
    button.setToolTip(tip)
    return button
