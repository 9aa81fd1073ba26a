"""User-facing dialogs: errors name the file and the problem, never a traceback; none blocks the app."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

ERROR_DIALOG_NAME = "errorDialog"
QUIT_WITH_JOBS_NAME = "quitWithJobsDialog"


def error_text(path: str, problem: str) -> str:
    return f"{path}\n\n{problem}" if path else problem


def show_error(parent: QWidget | None, title: str, path: str, problem: str) -> QMessageBox:
    """Shown non-modally (the viewer stays usable and tests can find and close it by object name)."""
    box = QMessageBox(parent)
    box.setObjectName(ERROR_DIALOG_NAME)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle(title)
    box.setText(f"<b>{_escape(title)}</b>")
    box.setInformativeText(error_text(path, problem))
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setModal(False)
    box.show()
    return box


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def show_info(parent: QWidget | None, title: str, text: str) -> QMessageBox:
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Information)
    box.setWindowTitle(title)
    box.setText(text)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setModal(False)
    box.show()
    return box


def ask_quit_with_jobs(parent: QWidget, job_names: list[str], on_quit) -> QMessageBox:
    """Window-modal but not blocking (``open``): "Quit" calls ``on_quit``; anything else keeps the app."""
    box = QMessageBox(parent)
    box.setObjectName(QUIT_WITH_JOBS_NAME)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("Quit LoRKD Studio")
    n = len(job_names)
    box.setText(f"<b>{n} job{'s' if n != 1 else ''} still running</b>")
    box.setInformativeText(
        "\n".join(job_names[:5]) + ("\n…" if n > 5 else "") +
        "\n\nQuitting stops each at its next step and keeps its last checkpoint; Resume in the Jobs panel "
        "continues it at the next start.")
    quit_button = box.addButton("Stop and quit", QMessageBox.ButtonRole.AcceptRole)
    box.addButton("Keep running", QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(quit_button)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.finished.connect(lambda _result: on_quit() if box.clickedButton() is quit_button else None)
    box.open()
    return box
