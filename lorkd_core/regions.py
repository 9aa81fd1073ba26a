"""The eight body regions, their label sets, colours and CT windows (``resources/regions.json``).

Every structure has one primary region (:meth:`Taxonomy.region_of`); a region's label set may also
list structures owned by a neighbour (see the ``notes`` field of the JSON for the rule).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

REGION_NAMES: tuple[str, ...] = (
    "abdomen",
    "brain",
    "head_neck",
    "lower_limb",
    "pelvis",
    "spine",
    "thorax",
    "upper_limb",
)

Color = tuple[int, int, int]
Window = tuple[float, float]  # (width, level) in HU


@dataclass(frozen=True)
class Region:
    """One body region: its label set (``structures``, label id = index + 1) and default CT window."""

    name: str
    display_name: str
    structures: list[str]
    color: Color
    default_window: Window
    default_window_name: str = "soft_tissue"
    shared: list[str] = field(default_factory=list)

    @property
    def index(self) -> int:
        return REGION_NAMES.index(self.name)

    def label_map(self) -> dict[int, str]:
        """The region's full label set, ``{1: first structure, ...}``."""
        return {i + 1: s for i, s in enumerate(self.structures)}


@dataclass(frozen=True)
class Structure:
    name: str
    display_name: str
    region: str
    color: Color
    totalseg_v2_id: int | None = None


@dataclass(frozen=True)
class Taxonomy:
    regions: dict[str, Region]
    structures: dict[str, Structure]
    windows: dict[str, Window]
    aliases: dict[str, str]
    notes: str = ""

    def canonical_name(self, name: str) -> str | None:
        """Map a free-form label name (``"Left Kidney"``, ``"bladder"``) to a structure name, or None."""
        key = normalize_name(name)
        if key in self.structures:
            return key
        key = self.aliases.get(key, key)
        return key if key in self.structures else None

    def region_of(self, structure: str) -> str | None:
        """Primary region of a structure (aliases accepted), None when unknown."""
        name = self.canonical_name(structure)
        return None if name is None else self.structures[name].region

    def regions_of(self, structure: str) -> list[str]:
        """Every region whose label set contains the structure, primary region first."""
        name = self.canonical_name(structure)
        if name is None:
            return []
        primary = self.structures[name].region
        return [primary] + [r for r in REGION_NAMES if r != primary and name in self.regions[r].structures]

    def color_of(self, structure: str) -> Color:
        """Display colour; unknown names (lesions, user labels) get a stable colour derived from the name."""
        name = self.canonical_name(structure)
        if name is not None:
            return self.structures[name].color
        digest = hashlib.sha1(structure.encode("utf-8")).digest()
        # keep it away from black and white so it shows on both CT windows
        return (60 + digest[0] % 180, 60 + digest[1] % 180, 60 + digest[2] % 180)

    def display_name_of(self, structure: str) -> str:
        name = self.canonical_name(structure)
        return self.structures[name].display_name if name else structure.replace("_", " ")

    @property
    def totalseg_label_to_region(self) -> dict[str, str]:
        """TotalSegmentator v2 "total" class name -> primary region (all 117 classes)."""
        return {s.name: s.region for s in self.structures.values() if s.totalseg_v2_id is not None}

    @property
    def totalseg_ids(self) -> dict[int, str]:
        """TotalSegmentator v2 "total" label id -> class name."""
        return dict(
            sorted(
                (s.totalseg_v2_id, s.name) for s in self.structures.values() if s.totalseg_v2_id is not None
            )
        )


def normalize_name(name: str) -> str:
    """``"Left Kidney "`` -> ``"left_kidney"``; keeps vertebra level capitals (``vertebrae_L1``)."""
    key = re.sub(r"[^0-9a-zA-Z]+", "_", name.strip()).strip("_")
    match = re.fullmatch(r"(?i)vertebrae?_([CTLS])(\d+)", key)
    if match:
        return f"vertebrae_{match.group(1).upper()}{match.group(2)}"
    return key.lower()


def _resource_file() -> Path:
    try:
        from lorkd_resources import resource_path

        return resource_path("regions.json")
    except ImportError:  # running from a source tree without the package installed
        return Path(__file__).resolve().parents[1] / "resources" / "regions.json"


def _rgb(value: object) -> Color:
    r, g, b = (int(c) for c in value)  # type: ignore[union-attr]
    return (r, g, b)


@functools.lru_cache(maxsize=4)
def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Read the region taxonomy (the bundled one by default); cached."""
    raw = json.loads(Path(path or _resource_file()).read_text(encoding="utf-8"))
    windows = {k: (float(v["width"]), float(v["level"])) for k, v in raw["window_presets"].items()}
    structures = {
        name: Structure(
            name=name,
            display_name=s.get("display_name", name),
            region=s["region"],
            color=_rgb(s["color"]),
            totalseg_v2_id=s.get("totalseg_v2_id"),
        )
        for name, s in raw["structures"].items()
    }
    regions: dict[str, Region] = {}
    for r in raw["regions"]:
        regions[r["name"]] = Region(
            name=r["name"],
            display_name=r["display_name"],
            structures=list(r["structures"]),
            color=_rgb(r["color"]),
            default_window=windows[r["default_window"]],
            default_window_name=r["default_window"],
            shared=list(r.get("shared", [])),
        )
    if tuple(regions) != REGION_NAMES:
        raise ValueError(
            f"{path or _resource_file()}: regions must be {REGION_NAMES}, found {tuple(regions)}"
        )
    return Taxonomy(
        regions=regions,
        structures=structures,
        windows=windows,
        aliases={normalize_name(k): v for k, v in raw.get("aliases", {}).items()},
        notes=raw.get("notes", ""),
    )


def region_of(structure: str) -> str | None:
    """Primary region of a structure in the bundled taxonomy."""
    return load_taxonomy().region_of(structure)


def color_of(structure: str) -> Color:
    """Display colour of a structure in the bundled taxonomy."""
    return load_taxonomy().color_of(structure)


# Fallback colours for a label set whose anatomical colours clash (Tableau 20 without its greys).
_DISTINCT: tuple[Color, ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (188, 189, 34), (23, 190, 207), (174, 199, 232), (255, 187, 120), (152, 223, 138),
    (255, 152, 150), (197, 176, 213), (196, 156, 148), (247, 182, 210), (219, 219, 141), (158, 218, 229),
)
MIN_COLOR_DISTANCE = 30.0  # RGB distance below which two overlay colours are hard to tell apart


def distinct_colors(names: dict[int, str]) -> dict[int, Color]:
    """Display colours of one label set: the taxonomy's (Slicer-style anatomical) colours, except where two
    structures would look alike (liver and stomach differ by 7 RGB units there): the later label, in id
    order, then takes the fallback colour nearest its own among those far enough from all before it. Left/right twins may share
    a colour. A pure function of the whole set, so the viewer and the results table always agree."""
    out: dict[int, Color] = {}
    for label in sorted(names):
        name = names[label]
        twin = next((c for other, c in out.items() if _twins(names[other], name)), None)
        color = twin or color_of(name)
        others = [c for other, c in out.items() if not _twins(names[other], name)]
        if any(_distance(c, color) < MIN_COLOR_DISTANCE for c in others):
            free = [c for c in _DISTINCT if all(_distance(c, used) >= MIN_COLOR_DISTANCE for used in out.values())]
            if free:  # the nearest free colour: an artery stays reddish, a bone light
                color = min(free, key=lambda c: _distance(c, color))
        out[label] = color
    return out


def _distance(a: Color, b: Color) -> float:
    return float(sum((x - y) ** 2 for x, y in zip(a, b)) ** 0.5)


def _twins(a: str, b: str) -> bool:
    return a != b and a.replace("_left", "_right") == b.replace("_left", "_right")


def totalseg_label_to_region() -> dict[str, str]:
    """TotalSegmentator v2 "total" class name -> primary region."""
    return load_taxonomy().totalseg_label_to_region
