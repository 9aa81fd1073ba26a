"""Find selectable models: the bundled ones (``resources/models/``) plus user folders.

A :class:`ModelEntry` is one model for one region: an experts set yields one entry per region, and the
teacher one entry per region it covers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lorkd_core.engine.model_card import CARD_NAME, ModelCard, read_card, region_labels
from lorkd_core.errors import ModelError

ENTRY_KINDS = ("teacher", "expert", "experts-set", "baseline", "user")
_MAX_DEPTH = 3
# The order in which `find_entry` prefers models for a region when several are available.
_PREFERENCE = {"expert": 0, "experts-set": 1, "user": 2, "teacher": 3, "baseline": 4}


@dataclass(frozen=True)
class ModelEntry:
    """One selectable model for one region (what the app's expert switcher lists).

    ``kind``: "teacher" / "baseline" as the card says; "expert" (a standalone export) or "experts-set"
    for bundled region experts; "user" for region experts found in user folders.
    """

    id: str
    display_name: str
    kind: str  # teacher | expert | experts-set | baseline | user
    region: str
    task: str
    modality: str
    label_names: dict[int, str]
    card: ModelCard
    path: Path
    parameters: int
    dice: float | None
    bundled: bool = False

    def __hash__(self) -> int:  # the dict fields are unhashable; the id is unique per catalog
        return hash(self.id)

    @property
    def card_kind(self) -> str:
        """The card's own kind (teacher/experts/expert/baseline): what inference dispatches on."""
        return self.card.kind


def bundled_models_dir() -> Path:
    """``resources/models`` of the installed package (may not exist until the demo models ship)."""
    from lorkd_resources import resource_path

    return resource_path("models")


@dataclass(frozen=True)
class BrokenModel:
    """A model folder left out of the catalog, with the reason (``str(error)`` names the file and problem)."""

    folder: Path
    error: ModelError


@dataclass(frozen=True)
class Catalog:
    """What :func:`read_catalog` found: the selectable entries and the folders it had to skip."""

    entries: list[ModelEntry]
    problems: list[BrokenModel]


def read_catalog(dirs: Iterable[str | Path] | None = None, *, include_bundled: bool = True) -> Catalog:
    """All model entries in the bundled folder (unless ``include_bundled=False``) and in ``dirs``, plus
    every model folder whose card cannot be read (in the order they were found)."""
    roots: list[tuple[Path, bool]] = []
    if include_bundled:
        roots.append((bundled_models_dir(), True))
    roots += [(Path(d), False) for d in (dirs or [])]
    entries: list[ModelEntry] = []
    problems: list[BrokenModel] = []
    seen: set[Path] = set()
    for root, bundled in roots:
        for folder in _model_folders(root):
            key = folder.resolve()
            if key in seen:
                continue
            seen.add(key)
            try:
                card = read_card(folder)
            except ModelError as exc:
                problems.append(BrokenModel(folder, exc))
                continue
            entries += entries_for_card(card, bundled=bundled, root=root)
    return Catalog(entries, problems)


def list_models(dirs: Iterable[str | Path] | None = None, *, include_bundled: bool = True,
                strict: bool = False) -> list[ModelEntry]:
    """The entries of :func:`read_catalog`. Broken model folders are skipped, unless ``strict`` is set
    (then the first one's ModelError propagates); use :func:`read_catalog` to learn which were skipped."""
    catalog = read_catalog(dirs, include_bundled=include_bundled)
    if strict and catalog.problems:
        raise catalog.problems[0].error
    return catalog.entries


def entries_for_folder(folder: str | Path, *, bundled: bool = False) -> list[ModelEntry]:
    """Entries of one model folder (a card folder, or a decomposition output with experts/, teacher/...)."""
    folder = Path(folder)
    if (folder / CARD_NAME).is_file():
        return entries_for_card(read_card(folder), bundled=bundled, root=folder.parent)
    if not folder.is_dir():
        raise ModelError("model folder does not exist", folder)
    entries = list_models([folder], include_bundled=False, strict=True)
    if not entries:
        raise ModelError(f"no model found ({CARD_NAME} missing)", folder)
    return entries


def entries_for_card(card: ModelCard, *, bundled: bool = False, root: Path | None = None) -> list[ModelEntry]:
    assert card.path is not None
    folder = card.path.parent
    rel = _relative_name(folder, root)
    prefix = f"bundled:{rel}" if bundled else str(folder.resolve())
    entry_kind = {"teacher": "teacher", "baseline": "baseline", "experts": "experts-set", "expert": "expert"}[card.kind]
    if not bundled and entry_kind in ("expert", "experts-set"):
        entry_kind = "user"
    regions = card.regions if card.kind != "expert" else card.regions[:1]
    out = []
    for region in regions:
        out.append(ModelEntry(
            id=f"{prefix}#{region}",
            display_name=_display_name(card, region, rel),
            kind=entry_kind,
            region=region,
            task=card.task,
            modality=card.modality,
            label_names=_labels_or_empty(card, region),
            card=card,
            path=folder,
            parameters=_region_metric(card, "parameters", region, card.parameters),
            dice=_region_metric(card, "dice", region, None),
            bundled=bundled,
        ))
    return out


def find_entry(region: str, task: str = "segmentation", model: str | Path | None = None,
               dirs: Sequence[str | Path] | None = None) -> ModelEntry:
    """The model to use for ``region``: from ``model`` (a folder) when given, else the bundled demo models."""
    if model is not None:
        candidates = entries_for_folder(model)
        where: Path = Path(model)
    else:
        candidates = list_models(dirs)
        where = bundled_models_dir()
        if not candidates:
            raise ModelError("no bundled models are installed (the demo models are not shipped yet); "
                             "pass --model DIR with a trained model folder", where)
    usable = [e for e in candidates if e.region == region and e.task == task]
    if not usable:
        offered = sorted({f"{e.region} ({e.task})" for e in candidates})
        raise ModelError(f"no {task} model for region '{region}'; available: {', '.join(offered) or 'none'}", where)
    # among equals, the newest version of an expert (an adapted one) wins over the one it was adapted from
    return min(usable, key=lambda e: (not e.bundled if model is None else 0, _PREFERENCE.get(e.kind, 9),
                                      -card_version(e.card)))


def card_version(card: ModelCard) -> int:
    """A model's version: 1, or what ``lorkd adapt`` wrote (the parent's version + 1)."""
    version = card.extra.get("version")
    return version if isinstance(version, int) and not isinstance(version, bool) and version > 0 else 1


def _labels_or_empty(card: ModelCard, region: str) -> dict[int, str]:
    try:
        return region_labels(card, region)
    except ModelError:
        return {}


def _region_metric(card: ModelCard, key: str, region: str, default):
    value = card.metrics.get(key)
    if isinstance(value, dict):
        value = value.get(region, default)
    elif value is None:
        value = default
    if key == "parameters":
        return int(value or 0)
    return None if value is None else float(value)


def _display_name(card: ModelCard, region: str, rel: str) -> str:
    base = card.display_name
    region_title = region.replace("_", " ").title()
    what = {"teacher": "Teacher", "baseline": "Baseline student", "experts": "Expert", "expert": "Expert"}[card.kind]
    label = f"{what} · {region_title}"
    return f"{label} ({base or rel})"


def _relative_name(folder: Path, root: Path | None) -> str:
    if root is not None:
        try:
            rel = folder.resolve().relative_to(root.resolve())
            if str(rel) != ".":
                return rel.as_posix()
        except ValueError:
            pass
    return folder.name


def _model_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        depth = len(Path(dirpath).relative_to(root).parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        if CARD_NAME in filenames:
            found.append(Path(dirpath))
            dirnames[:] = []  # a model folder does not nest other models
        elif depth >= _MAX_DEPTH:
            dirnames[:] = []
    return found

