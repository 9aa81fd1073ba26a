"""Error types with messages meant for users: each names the file or object and the problem.

The CLI prints ``str(error)`` on one line and exits non-zero; the app shows it in a dialog.
"""

from __future__ import annotations

from pathlib import Path


class LorkdError(Exception):
    """Base class for every error the CLI and the app report to the user without a traceback."""

    exit_code = 2

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.problem = problem
        self.path = None if path is None else Path(path)
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


class ScanError(LorkdError):
    """A scan cannot be read or is not usable (corrupt, unsupported, NaNs, wrong dimensionality, too big)."""


class LabelError(LorkdError):
    """A label map does not fit its scan or holds values outside the declared label set."""


class DatasetError(LorkdError):
    """A dataset folder or manifest cannot be imported at all."""


class ModelError(LorkdError):
    """A model card or weight file is missing, tampered with or does not match the architecture."""


class ConfigError(LorkdError):
    """A job configuration is invalid."""


class JobCancelled(LorkdError):
    """A long-running job stopped because its cancel token was set."""

    exit_code = 130
