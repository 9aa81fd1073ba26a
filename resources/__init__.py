"""Bundled resources (region taxonomy, demo scan, demo models), importable as ``lorkd_resources``."""

from pathlib import Path

RESOURCES_DIR = Path(__file__).resolve().parent


def resource_path(*parts: str) -> Path:
    """Path of a bundled resource file, e.g. ``resource_path("regions.json")``."""
    return RESOURCES_DIR.joinpath(*parts)
