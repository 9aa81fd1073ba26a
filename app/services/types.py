"""Plain data the panels display. Qt-free and torch-free, so the UI thread can hold it cheaply."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lorkd_core.regions import REGION_NAMES

if TYPE_CHECKING:  # lorkd_core.io loads SimpleITK: the UI thread only needs the names for annotations
    from lorkd_core.engine.catalog import ModelEntry
    from lorkd_core.io import Scan

REGION_ORDER = REGION_NAMES  # for the panels and the command line, which do not import lorkd_core


@dataclass(frozen=True)
class RegionInfo:
    name: str
    display_name: str
    structures: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelInfo:
    """One selectable model for one region, as the expert switcher shows it.

    For a model of the catalog it is :meth:`from_entry`: the catalog entry's fields (same names, the entry's
    ``display_name`` as ``name``) plus the card texts the switcher shows; the entry itself rides along.
    """

    id: str
    name: str
    kind: str  # teacher | expert | experts-set | baseline | user
    task: str  # segmentation | classification
    region: str
    modality: str = "CT"
    parameters: int = 0
    ranks: str = ""
    training: str = ""
    dice: float | None = None
    label_names: dict[int, str] = field(default_factory=dict)
    path: Path | None = None
    bundled: bool = False
    entry: ModelEntry | None = None  # None for a model registered with its own runner (Backend.register_model)

    @classmethod
    def from_entry(cls, entry: ModelEntry) -> ModelInfo:
        """The switcher's view of a catalog entry (lorkd_core.engine.catalog.ModelEntry)."""
        shared = {f.name for f in fields(cls)} & {f.name for f in fields(entry)}
        values = {name: getattr(entry, name) for name in shared}
        values["label_names"] = dict(entry.label_names)
        name = entry.display_name
        version = entry.card.extra.get("version")
        if isinstance(version, int) and version > 1:
            name += f" · v{version}"
        return cls(name=name, ranks=_ranks_text(entry), training=_training_text(entry), entry=entry, **values)

    @property
    def kind_label(self) -> str:
        return {"teacher": "Teacher", "expert": "Region expert", "experts-set": "Region expert",
                "baseline": "Baseline", "user": "User expert"}.get(self.kind, self.kind.title())


def _ranks_text(entry: ModelEntry) -> str:
    card = entry.card
    if card.experts is not None and card.experts.ranks:
        rank = card.experts.ranks.get(entry.region)
        return f"rank {rank} ({entry.region})" if rank is not None else ""
    if isinstance(card.extra.get("rank"), int):
        return f"rank {card.extra['rank']}"
    return ""


def _training_text(entry: ModelEntry) -> str:
    card = entry.card
    training = dict(card.training or {})
    text = str(training.get("data", "")) or "not recorded"
    cases = training.get("cases")
    if isinstance(cases, dict) and cases.get(entry.region) is not None:
        text += f" · {cases[entry.region]} {entry.region} cases"
    elif isinstance(cases, int):
        text += f" · {cases} cases"
    if training.get("steps"):
        text += f" · {training['steps']} steps"
    parent = card.extra.get("parent")
    if isinstance(parent, str) and parent:
        text += f" · adapted from {Path(parent).parent.name}/{Path(parent).name}"
    return text


@dataclass(frozen=True)
class ModelProblem:
    """A model folder the catalog had to leave out, and why (the ModelError's text)."""

    folder: Path
    problem: str


@dataclass(frozen=True)
class StructureStat:
    label_id: int
    name: str
    voxels: int
    volume_ml: float
    mean_intensity: float
    touches_border: bool


@dataclass
class SegmentationResult:
    labels: np.ndarray  # (z, y, x) int16 on the scan's grid
    label_names: dict[int, str]
    model_id: str
    region: str
    stats: list[StructureStat] = field(default_factory=list)
    seconds: float = 0.0
    task: str = "segmentation"


@dataclass
class ClassificationResult:
    probabilities: dict[str, float]
    saliency: np.ndarray | None
    model_id: str
    region: str
    seconds: float = 0.0
    task: str = "classification"


@dataclass
class LoadedScan:
    """What the app keeps of a scan: the core object plus the suggestion made while loading it."""

    scan: Scan
    suggested_region: str | None
    source: Path

    @property
    def array(self) -> np.ndarray:
        return self.scan.array

    @property
    def modality(self) -> str:
        return self.scan.modality

    @property
    def is_dicom(self) -> bool:
        return self.source.is_dir() or str(self.scan.meta.get("format", "")).upper().startswith("DICOM")

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in self.scan.spacing)  # type: ignore[return-value]


@dataclass(frozen=True)
class VolumeChange:
    name: str
    volume_a: float
    volume_b: float

    @property
    def delta(self) -> float:
        return self.volume_b - self.volume_a

    @property
    def percent(self) -> float | None:
        return None if self.volume_a <= 0 else 100.0 * self.delta / self.volume_a
