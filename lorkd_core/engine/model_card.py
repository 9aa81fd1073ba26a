"""Model folders: ``card.json`` (typed, validated) plus ``model.safetensors`` (tensors only, never pickles).

See docs/contracts.md ("Model folders"). Every problem raises :class:`ModelError` naming the file and,
where it applies, the card field or the tensor.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorkd_core.atomic import atomic_path, write_json_atomic
from lorkd_core.errors import ModelError

if TYPE_CHECKING:  # torch is imported lazily so that listing models (the app's UI thread) stays light
    import torch

CARD_NAME = "card.json"
WEIGHTS_NAME = "model.safetensors"
CARD_FORMAT = "lorkd-model/1"
KINDS = ("teacher", "experts", "expert", "baseline")
TASKS = ("segmentation", "classification")
# docs/contracts.md: this order is the region index in EKS batches.
REGION_ORDER = ("abdomen", "brain", "head_neck", "lower_limb", "pelvis", "spine", "thorax", "upper_limb")
_KNOWN_KEYS = {"format", "kind", "task", "architecture", "regions", "labels", "experts", "training", "metrics",
               "parameters"}


@dataclass
class Architecture:
    """How to rebuild the network: a MONAI (or project) network name, its kwargs and the per-region heads."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    heads: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kwargs": self.kwargs, "heads": self.heads, **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Architecture:
        """From a card's "architecture" object (``name``, ``kwargs``, ``heads`` plus any extra keys)."""
        data = copy.deepcopy(dict(data))
        return cls(str(data.pop("name")), dict(data.pop("kwargs", {}) or {}), dict(data.pop("heads", {}) or {}), data)

    @property
    def spatial_dims(self) -> int:
        return int(self.kwargs.get("spatial_dims", self.extra.get("spatial_dims", 3)))


@dataclass
class ExpertsSpec:
    """Ranks, scale and region order of the low-rank experts (kind="experts" only)."""

    ranks: dict[str, int]
    alpha: float | None = None
    region_order: list[str] = field(default_factory=lambda: list(REGION_ORDER))
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"ranks": self.ranks, "alpha": self.alpha, "region_order": self.region_order, **self.extra}


@dataclass
class ModelCard:
    """Typed view of ``card.json``; unknown keys survive a read/write round trip in ``extra``."""

    kind: str
    task: str
    architecture: Architecture
    regions: list[str]
    labels: dict[str, dict[int, str]]
    experts: ExpertsSpec | None = None
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    parameters: int = 0
    format: str = CARD_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def folder(self) -> Path | None:
        return None if self.path is None else self.path.parent

    @property
    def modality(self) -> str:
        return str(self.extra.get("modality") or self.training.get("modality") or "CT")

    @property
    def display_name(self) -> str | None:
        name = self.extra.get("display_name") or self.extra.get("name")
        return None if name is None else str(name)

    def label_names(self, region: str) -> dict[int, str]:
        """Label id -> structure (or class) name for one region; ``{}`` when the card has none."""
        return dict(self.labels.get(region, {}))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": self.format,
            "kind": self.kind,
            "task": self.task,
            "architecture": self.architecture.to_dict(),
            "regions": list(self.regions),
            "labels": {r: {str(k): v for k, v in sorted(names.items())} for r, names in self.labels.items()},
        }
        if self.experts is not None:
            out["experts"] = self.experts.to_dict()
        out.update(training=self.training, metrics=self.metrics, parameters=int(self.parameters))
        out.update(self.extra)
        return copy.deepcopy(out)

    @classmethod
    def from_dict(cls, data: Any, path: str | Path | None = None) -> ModelCard:
        """Validate a parsed card; every problem names ``path`` and the offending field."""
        return _parse_card(data, None if path is None else Path(path))


def card_path(folder_or_card: str | Path) -> Path:
    p = Path(folder_or_card)
    return p if p.name == CARD_NAME or p.suffix == ".json" else p / CARD_NAME


def weights_path(card: ModelCard | str | Path) -> Path:
    folder = card.folder if isinstance(card, ModelCard) else card_path(card).parent
    if folder is None:
        raise ModelError("the model card has no folder (it was never read from or written to disk)")
    return folder / WEIGHTS_NAME


def read_card(folder_or_card: str | Path) -> ModelCard:
    """Read and validate ``card.json`` from a model folder (or the card file itself)."""
    path = card_path(folder_or_card)
    if not path.is_file():
        where = path.parent if path.parent.exists() else path
        raise ModelError(f"not a model folder: {CARD_NAME} is missing", where)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ModelError(f"card is not UTF-8 text ({exc.reason})", path) from exc
    except json.JSONDecodeError as exc:
        raise ModelError(f"card is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", path) from exc
    except OSError as exc:
        raise ModelError(f"cannot read the card ({exc.strerror or exc})", path) from exc
    return _parse_card(data, path)


def write_card(folder: str | Path, card: ModelCard) -> Path:
    """Validate and write ``folder/card.json`` atomically; returns the path and sets ``card.path``."""
    path = card_path(folder)
    _parse_card(card.to_dict(), path)
    write_json_atomic(path, card.to_dict())
    card.path = path
    return path


def update_metrics(folder: str | Path, metrics: Mapping[str, Any]) -> ModelCard:
    """Merge ``metrics`` into the card's "metrics" (top-level keys replaced) and rewrite it atomically."""
    card = read_card(folder)
    card.metrics = {**card.metrics, **copy.deepcopy(dict(metrics))}
    write_card(card.path.parent if card.path else folder, card)
    return card


# ---------------------------------------------------------------- weights


def save_weights(folder: str | Path, state: Mapping[str, torch.Tensor]) -> tuple[Path, str]:
    """Write ``model.safetensors`` atomically; returns its path and SHA-256."""
    from safetensors.torch import save_file

    target = Path(folder) / WEIGHTS_NAME
    # safetensors refuses shared storage (tied weights, views): give every tensor its own copy.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    with atomic_path(target, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        digest = _sha256(tmp)
    return target, digest


def save_model(folder: str | Path, state: Mapping[str, torch.Tensor], card: ModelCard) -> Path:
    """Validate the card, then write weights and card to temp files and rename both at the end.

    A card that fails validation leaves an existing model folder untouched; the renames are the only
    moment the pair can disagree, and the card (renamed last) always describes complete weights.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not card.parameters:
        card.parameters = int(sum(t.numel() for t in state.values() if t.is_floating_point()))
    target = card_path(folder)
    _parse_card(card.to_dict(), target)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    with atomic_path(target, suffix=".json") as card_tmp:
        with atomic_path(folder / WEIGHTS_NAME, suffix=".safetensors") as weights_tmp:
            save_file(tensors, str(weights_tmp), metadata={"format": "pt"})
            card.extra["weights_sha256"] = _sha256(weights_tmp)
            _parse_card(card.to_dict(), target)
            card_tmp.write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")
    card.path = target
    return target


def load_weights(card_or_folder: ModelCard | str | Path) -> dict[str, torch.Tensor]:
    """Load ``model.safetensors`` (CPU tensors). Truncated or foreign files raise ModelError naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    card = card_or_folder if isinstance(card_or_folder, ModelCard) else read_card(card_or_folder)
    path = weights_path(card)
    if not path.is_file():
        raise ModelError(f"weights file {WEIGHTS_NAME} is missing", path.parent)
    expected = card.extra.get("weights_sha256")
    if expected and _sha256(path) != expected:
        raise ModelError("weights do not match the card's weights_sha256 (file changed or truncated)", path)
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"not a readable safetensors file, truncated or corrupt ({exc})", path) from exc


def load_state_checked(module: torch.nn.Module, state: Mapping[str, torch.Tensor], path: str | Path,
                       *, strict: bool = True) -> None:
    """``module.load_state_dict`` with errors that name the weights file and the first bad tensors."""
    own = module.state_dict()
    bad_shapes = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items()
                  if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if bad_shapes:
        k, got, want = bad_shapes[0]
        more = f" (and {len(bad_shapes) - 1} more)" if len(bad_shapes) > 1 else ""
        raise ModelError(f"tensor '{k}' has shape {got} but the architecture expects {want}{more}", path)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing tensors {_first(missing)}")
        if unexpected:
            parts.append(f"unexpected tensors {_first(unexpected)}")
        raise ModelError("weights do not match the architecture in the card: " + "; ".join(parts), path)
    module.load_state_dict(dict(state), strict=False)


def state_nbytes(state: Mapping[str, torch.Tensor]) -> int:
    return int(sum(t.numel() * t.element_size() for t in state.values()))


# ---------------------------------------------------------------- label spaces


def region_labels(card: ModelCard, region: str) -> dict[int, str]:
    """The labels a model outputs for ``region``: segmentation ``{1: "liver", ...}`` (0 = background),
    classification ``{0: "none", 1: ...}``. A teacher's union labels are restricted and renumbered."""
    if card.kind != "teacher":
        names = card.label_names(region)
        if not names:
            raise ModelError(f"field 'labels.{region}' is missing: the model has no labels for that region",
                             card.path)
        return names
    return teacher_channels(card, region)[1]


def teacher_channels(card: ModelCard, region: str) -> tuple[list[int], dict[int, str]]:
    """For a teacher: its output channels of ``region``'s classes and their region-local labels.

    The union label space is ``labels["union"]`` (or ``"all"``) when present, else the per-region label
    objects taken as teacher channel ids (they must then agree where they overlap).
    """
    union = card.labels.get("union") or card.labels.get("all")
    if union is None:
        union = {}
        for reg, names in card.labels.items():
            for idx, name in names.items():
                if union.setdefault(idx, name) != name:
                    raise ModelError(f"field 'labels.{reg}' gives channel {idx} the name {name!r}, another "
                                     f"region calls it {union[idx]!r}; add a 'union' label object", card.path)
    if region in card.labels:
        wanted = [n for _, n in sorted(card.labels[region].items())]
    else:
        wanted = [n for n in _taxonomy_structures(region) if n in set(union.values())]
    by_name = {name: idx for idx, name in sorted(union.items(), reverse=True)}
    if card.task == "segmentation":
        wanted = [n for n in wanted if n != "background" and by_name.get(n, 0) != 0]
        local = {i + 1: n for i, n in enumerate(wanted)}
    else:
        wanted = [n for n in wanted if n in by_name]
        local = dict(enumerate(wanted))
    if not wanted:
        raise ModelError(f"the teacher has no labels for region '{region}'", card.path)
    return [by_name[n] for n in wanted], local


def _taxonomy_structures(region: str) -> list[str]:
    from lorkd_core.regions import load_taxonomy

    reg = load_taxonomy().regions.get(region)
    return [] if reg is None else list(reg.structures)


# ---------------------------------------------------------------- validation


def _parse_card(data: Any, path: Path | None) -> ModelCard:
    where = path if path is not None else Path(CARD_NAME)

    def fail(fld: str, problem: str) -> ModelError:
        return ModelError(f"field '{fld}' {problem}", where)

    if not isinstance(data, dict):
        raise ModelError("card must be a JSON object", where)
    fmt = data.get("format")
    if not isinstance(fmt, str) or fmt.split(".")[0] != CARD_FORMAT:
        raise fail("format", f"must be '{CARD_FORMAT}', found {fmt!r}")
    kind = data.get("kind")
    if kind not in KINDS:
        raise fail("kind", f"must be one of {', '.join(KINDS)}; found {kind!r}")
    task = data.get("task")
    if task not in TASKS:
        raise fail("task", f"must be one of {', '.join(TASKS)}; found {task!r}")

    arch = data.get("architecture")
    if not isinstance(arch, dict):
        raise fail("architecture", "is missing or not an object")
    if not isinstance(arch.get("name"), str) or not arch["name"]:
        raise fail("architecture.name", "is missing or not a string")
    for sub in ("kwargs", "heads"):
        if not isinstance(arch.get(sub, {}), dict):
            raise fail(f"architecture.{sub}", "must be an object")
    architecture = Architecture(arch["name"], dict(arch.get("kwargs", {})), dict(arch.get("heads", {})),
                                {k: v for k, v in arch.items() if k not in ("name", "kwargs", "heads")})

    regions = data.get("regions")
    if not isinstance(regions, list) or not regions or not all(isinstance(r, str) for r in regions):
        raise fail("regions", "must be a non-empty list of region names")
    unknown = [r for r in regions if r not in REGION_ORDER]
    if unknown:
        raise fail("regions", f"names unknown region(s) {unknown}; known: {', '.join(REGION_ORDER)}")
    if len(set(regions)) != len(regions):
        raise fail("regions", "lists a region twice")
    if kind == "expert" and len(regions) != 1:
        raise fail("regions", f"must hold exactly one region for kind 'expert', found {len(regions)}")

    labels = _parse_labels(data.get("labels"), regions, fail)

    experts = None
    if kind == "experts":
        experts = _parse_experts(data.get("experts"), regions, fail)

    for name in ("training", "metrics"):
        if not isinstance(data.get(name, {}), dict):
            raise fail(name, "must be an object")
    params = data.get("parameters", 0)
    if isinstance(params, bool) or not isinstance(params, int) or params < 0:
        raise fail("parameters", f"must be a non-negative integer, found {params!r}")

    extra = {k: v for k, v in data.items() if k not in _KNOWN_KEYS}
    return ModelCard(kind=kind, task=task, architecture=architecture, regions=list(regions), labels=labels,
                     experts=experts, training=dict(data.get("training", {})),
                     metrics=dict(data.get("metrics", {})), parameters=params, format=fmt,
                     extra=copy.deepcopy(extra), path=path)


def _parse_labels(raw: Any, regions: list[str], fail) -> dict[str, dict[int, str]]:
    if not isinstance(raw, dict):
        raise fail("labels", "is missing or not an object of region -> {id: name}")
    labels: dict[str, dict[int, str]] = {}
    for region, names in raw.items():
        if not isinstance(names, dict):
            raise fail(f"labels.{region}", "must be an object of id -> name")
        parsed: dict[int, str] = {}
        for key, name in names.items():
            try:
                idx = int(key)
            except (TypeError, ValueError):
                raise fail(f"labels.{region}", f"has a non-integer label id {key!r}") from None
            if idx < 0 or not isinstance(name, str) or not name:
                raise fail(f"labels.{region}.{key}", f"must map a non-negative id to a name, found {name!r}")
            parsed[idx] = name
        labels[region] = parsed
    missing = [r for r in regions if r not in labels]
    # A teacher may store its union label space under one key instead of per region.
    if missing and not any(k in labels for k in ("union", "all")):
        raise fail("labels", f"has no label names for region(s) {missing}")
    return labels


def _parse_experts(raw: Any, regions: list[str], fail) -> ExpertsSpec:
    if not isinstance(raw, dict):
        raise fail("experts", "is required for kind 'experts' (ranks, alpha, region_order)")
    ranks = raw.get("ranks")
    if isinstance(ranks, int) and not isinstance(ranks, bool):
        ranks = {r: ranks for r in regions}
    if not isinstance(ranks, dict) or not all(isinstance(v, int) and v >= 0 for v in ranks.values()):
        raise fail("experts.ranks", "must map each region to a non-negative integer rank")
    missing = [r for r in regions if r not in ranks]
    if missing:
        raise fail("experts.ranks", f"has no rank for region(s) {missing}")
    alpha = raw.get("alpha")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float))):
        raise fail("experts.alpha", f"must be a number or null, found {alpha!r}")
    order = raw.get("region_order", list(REGION_ORDER))
    if not isinstance(order, list) or any(r not in REGION_ORDER for r in order):
        raise fail("experts.region_order", f"must list known regions, found {order!r}")
    extra = {k: v for k, v in raw.items() if k not in ("ranks", "alpha", "region_order")}
    return ExpertsSpec(dict(ranks), None if alpha is None else float(alpha), list(order), extra)


def _first(names: list[str], n: int = 3) -> str:
    shown = ", ".join(f"'{k}'" for k in names[:n])
    return shown + (f" (+{len(names) - n} more)" if len(names) > n else "")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
