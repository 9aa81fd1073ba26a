"""Dark theme: Fusion with a dark palette, plus a short style sheet for the panel headers."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

ACCENT = "#3d8fd6"
WARNING = "#e0a030"

_STYLE = f"""
QMainWindow::separator {{ background: #1b1d21; width: 3px; height: 3px; }}
QDockWidget {{ font-weight: 600; }}
QDockWidget::title {{ background: #2a2d33; padding: 5px 8px; border-bottom: 1px solid #15171a; }}
QGroupBox {{ border: 1px solid #3a3e45; border-radius: 4px; margin-top: 14px; padding: 8px 6px 6px 6px; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 8px; padding: 0 4px; color: #9fb3c8; font-weight: 600; }}
QListWidget, QTableWidget {{ background: #1f2125; alternate-background-color: #24272c; border: 1px solid #3a3e45;
                             gridline-color: #2f3238; }}
QListWidget::item {{ padding: 5px 4px; }}
QListWidget::item:selected, QTableWidget::item:selected {{ background: {ACCENT}; color: white; }}
QHeaderView::section {{ background: #2a2d33; color: #c8d0da; padding: 4px 6px; border: none;
                         border-right: 1px solid #1b1d21; border-bottom: 1px solid #1b1d21; }}
QPushButton {{ background: #33373e; border: 1px solid #474c55; border-radius: 4px; padding: 5px 12px; }}
QPushButton:hover {{ background: #3c4149; }}
QPushButton:pressed {{ background: #2b2e34; }}
QPushButton:disabled {{ color: #6c727b; background: #2a2d32; }}
QPushButton#primaryButton {{ background: {ACCENT}; border-color: #2f79b9; color: white; font-weight: 600; }}
QPushButton#primaryButton:hover {{ background: #4a9be0; }}
QPushButton#primaryButton:disabled {{ background: #2a2d32; border-color: #3a3e45; color: #6c727b; }}
QComboBox {{ background: #2b2e34; border: 1px solid #474c55; border-radius: 4px; padding: 4px 8px; }}
QToolBar {{ background: #25282d; border-bottom: 1px solid #15171a; spacing: 4px; padding: 3px; }}
QToolButton {{ padding: 4px 8px; border-radius: 4px; }}
QToolButton:hover {{ background: #353941; }}
QStatusBar {{ background: #1f2125; border-top: 1px solid #15171a; }}
QProgressBar {{ border: 1px solid #474c55; border-radius: 3px; background: #1f2125; text-align: center;
                 max-height: 16px; }}
QProgressBar::chunk {{ background: {ACCENT}; border-radius: 2px; }}
QLabel#cardTitle {{ font-size: 13px; font-weight: 700; color: #e6edf5; }}
QLabel#muted {{ color: #8b95a1; }}
QLabel#warning {{ color: {WARNING}; }}
QLabel#hint {{ color: #8b95a1; font-size: 14px; }}
QLabel#welcomeTitle {{ color: #e6edf5; font-size: 28px; font-weight: 300; }}
QWidget#welcomePage {{ background: #16181b; }}
QTabWidget::pane {{ border: 1px solid #3a3e45; top: -1px; }}
QTabBar::tab {{ background: #2a2d33; padding: 6px 14px; border: 1px solid #3a3e45; border-bottom: none; }}
QTabBar::tab:selected {{ background: #33373e; color: white; }}
"""


def apply_dark_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    pal = QPalette()
    colors = {
        QPalette.ColorRole.Window: "#25282d", QPalette.ColorRole.WindowText: "#dfe5ec",
        QPalette.ColorRole.Base: "#1f2125", QPalette.ColorRole.AlternateBase: "#24272c",
        QPalette.ColorRole.ToolTipBase: "#2f3238", QPalette.ColorRole.ToolTipText: "#e6edf5",
        QPalette.ColorRole.Text: "#dfe5ec", QPalette.ColorRole.Button: "#33373e",
        QPalette.ColorRole.ButtonText: "#dfe5ec", QPalette.ColorRole.BrightText: "#ff6b6b",
        QPalette.ColorRole.Highlight: ACCENT, QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Link: ACCENT, QPalette.ColorRole.PlaceholderText: "#7d8590",
    }
    for role, value in colors.items():
        pal.setColor(role, QColor(value))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6c727b"))
    app.setPalette(pal)
    app.setStyleSheet(_STYLE)
