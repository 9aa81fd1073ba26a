"""Slice and 3D viewer for LoRKD Studio (numpy in, Qt signals out; no lorkd_core, no torch)."""

from .colormaps import PRESETS
from .viewer_widget import LAYOUTS, ViewerWidget

__all__ = ["LAYOUTS", "PRESETS", "ViewerWidget"]
