"""Region names, structure colours and window presets, from lorkd_core.regions when it is installed.

Until then the bundled regions.json is read directly, and failing that a built-in list of the eight
regions keeps the app usable.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
from dataclasses import dataclass, field

from .types import REGION_ORDER, RegionInfo

DEFAULT_WINDOWS = {"soft_tissue": (350.0, 40.0), "lung": (1400.0, -500.0), "bone": (1000.0, 400.0),
                   "brain": (100.0, 50.0)}
_DISPLAY = {"head_neck": "Head & neck", "lower_limb": "Lower limb", "upper_limb": "Upper limb"}


@dataclass
class TaxonomyView:
    regions: dict[str, RegionInfo]
    colors: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    display_names: dict[str, str] = field(default_factory=dict)
    windows: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_WINDOWS))

    def color_of(self, structure: str) -> tuple[int, int, int]:
        return self.colors.get(structure) or _stable_color(structure)

    def display_name_of(self, structure: str) -> str:
        return self.display_names.get(structure) or structure.replace("_", " ").capitalize()


def load_taxonomy_view() -> TaxonomyView:
    try:
        from lorkd_core.regions import load_taxonomy
    except ImportError:
        return _from_resource_file()
    tax = load_taxonomy()
    regions = {name: RegionInfo(name, reg.display_name, tuple(reg.structures),
                                str(getattr(reg, "default_window_name", "soft_tissue")))
               for name in REGION_ORDER if (reg := tax.regions.get(name)) is not None}
    structures = getattr(tax, "structures", {})
    colors = {k: tuple(int(c) for c in s.color)[:3] for k, s in structures.items()}
    names = {k: s.display_name for k, s in structures.items()}
    windows = {k: _window_tuple(v) for k, v in tax.windows.items()} or dict(DEFAULT_WINDOWS)
    return TaxonomyView(regions, colors, names, windows)  # type: ignore[arg-type]


def _from_resource_file() -> TaxonomyView:
    try:
        from lorkd_resources import resource_path

        data = json.loads(resource_path("regions.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, ImportError):
        return TaxonomyView({n: RegionInfo(n, _DISPLAY.get(n, n.title())) for n in REGION_ORDER})
    regions = {r["name"]: RegionInfo(r["name"], r.get("display_name", r["name"]), tuple(r.get("structures", [])),
                                     r.get("default_window", "soft_tissue")) for r in data.get("regions", [])}
    structures = data.get("structures", {})
    colors = {k: tuple(v["color"][:3]) for k, v in structures.items() if isinstance(v, dict) and v.get("color")}
    names = {k: v["display_name"] for k, v in structures.items() if isinstance(v, dict) and v.get("display_name")}
    windows = {k: _window_tuple(v) for k, v in data.get("window_presets", {}).items()} or dict(DEFAULT_WINDOWS)
    ordered = {n: regions.get(n, RegionInfo(n, _DISPLAY.get(n, n.title()))) for n in REGION_ORDER}
    return TaxonomyView(ordered, colors, names, windows)  # type: ignore[arg-type]


def _window_tuple(value) -> tuple[float, float]:
    if isinstance(value, dict):
        return float(value["width"]), float(value["level"])
    width, level = value
    return float(width), float(level)


def _stable_color(name: str) -> tuple[int, int, int]:
    hue = int(hashlib.md5(name.encode()).hexdigest()[:6], 16) / 0xFFFFFF
    r, g, b = colorsys.hsv_to_rgb(hue, 0.55, 0.9)
    return int(r * 255), int(g * 255), int(b * 255)
