"""Persisted preferences (QSettings): device, model folders, recent files, last folder, window layout."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

DEVICES = ("auto", "cpu", "cuda")
MAX_RECENT = 10
# Lets tests, screenshots and CI use a throw-away file instead of the user's settings.
SETTINGS_ENV = "LORKD_STUDIO_SETTINGS"


class AppSettings:
    def __init__(self, path: str | Path | None = None) -> None:
        path = path or os.environ.get(SETTINGS_ENV)
        if path:
            self._qs = QSettings(str(path), QSettings.Format.IniFormat)
        else:
            self._qs = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "LoRKD", "LoRKD Studio")

    @property
    def file_name(self) -> str:
        return self._qs.fileName()

    def sync(self) -> None:
        self._qs.sync()

    # ---------------------------------------------------------------- device

    @property
    def device(self) -> str:
        value = str(self._qs.value("device", "auto"))
        return value if value in DEVICES else "auto"

    @device.setter
    def device(self, value: str) -> None:
        if value not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}")
        self._qs.setValue("device", value)

    # ---------------------------------------------------------------- model folders

    @property
    def model_dirs(self) -> list[Path]:
        return [Path(p) for p in self._list("model_dirs")]

    @model_dirs.setter
    def model_dirs(self, dirs: list[str | Path]) -> None:
        unique = list(dict.fromkeys(str(Path(d)) for d in dirs))
        self._qs.setValue("model_dirs", unique)

    # ---------------------------------------------------------------- files

    @property
    def recent_files(self) -> list[Path]:
        return [Path(p) for p in self._list("recent_files")]

    def add_recent(self, path: str | Path) -> None:
        path = str(Path(path).resolve())
        recent = [p for p in self._list("recent_files") if p != path]
        self._qs.setValue("recent_files", [path, *recent][:MAX_RECENT])

    def remove_recent(self, path: str | Path) -> None:
        path = str(Path(path).resolve())
        self._qs.setValue("recent_files", [p for p in self._list("recent_files") if p != path])

    def clear_recent(self) -> None:
        self._qs.setValue("recent_files", [])

    @property
    def last_dir(self) -> Path:
        value = self._qs.value("last_dir", "")
        return Path(str(value)) if value and Path(str(value)).is_dir() else Path.home()

    @last_dir.setter
    def last_dir(self, folder: str | Path) -> None:
        self._qs.setValue("last_dir", str(folder))

    @property
    def first_run(self) -> bool:
        return not _bool(self._qs.value("demo_shown", False))

    def mark_demo_shown(self) -> None:
        self._qs.setValue("demo_shown", True)

    # ---------------------------------------------------------------- window layout

    def window_geometry(self) -> QByteArray | None:
        value = self._qs.value("window/geometry")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def window_state(self) -> QByteArray | None:
        value = self._qs.value("window/state")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def save_window(self, geometry: QByteArray, state: QByteArray) -> None:
        self._qs.setValue("window/geometry", geometry)
        self._qs.setValue("window/state", state)

    # ---------------------------------------------------------------- helpers

    def _list(self, key: str) -> list[str]:
        # QSettings returns a str for a one-item list and None for an empty one in INI files.
        value = self._qs.value(key, [])
        if value is None:
            return []
        if isinstance(value, str):
            return [value] if value else []
        return [str(v) for v in value]


def _bool(value) -> bool:
    return value is True or str(value).lower() in ("true", "1", "yes")
