"""The small, Qt-free lorkd_core types the rest of the app may hold, re-exported from one place.

Panels, jobs and the session import these from here, never from lorkd_core: ``app/services`` is the
only package of the app that imports lorkd_core (tests/test_architecture.py checks it). All of them
are cheap to import (no torch, no SimpleITK), so the UI thread can use them at startup.
"""

from __future__ import annotations

from lorkd_core.atomic import write_json_atomic, write_text_atomic
from lorkd_core.engine.config import AdaptConfig, DecomposeConfig, JobConfig, default_student_network
from lorkd_core.errors import ConfigError, DatasetError, JobCancelled, LorkdError, ModelError, ScanError
from lorkd_core.progress import CancelToken, Progress
from lorkd_core.regions import REGION_NAMES

__all__ = [
    "REGION_NAMES",
    "AdaptConfig",
    "CancelToken",
    "ConfigError",
    "DatasetError",
    "DecomposeConfig",
    "JobCancelled",
    "JobConfig",
    "LorkdError",
    "ModelError",
    "Progress",
    "ScanError",
    "default_student_network",
    "write_json_atomic",
    "write_text_atomic",
]
