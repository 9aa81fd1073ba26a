"""Typed job configurations with a strict JSON round trip (unknown keys are errors, not silently dropped).

Conventions shared by every config:
- ``patch_size`` is in voxels, in the axis order of the training arrays (channel-first MONAI arrays);
  ``spacing`` is the target voxel size in mm for the same axes.
- ``device`` is "auto" (CUDA, then MPS, then CPU), "cpu" or "cuda"; ``amp`` only has an effect on CUDA.
- ``augment`` scales the training augmentation (0 = none; see lorkd_core.data.transforms).
- ``crop_sampling`` picks the centre of a segmentation patch's foreground draws: "class" takes a labelled
  class uniformly, then one of its voxels (small structures get as many patches as large ones); "voxel" takes
  a foreground voxel uniformly (large organs dominate).
- Paths are stored as given (strings); the engine resolves them against the working directory.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from lorkd_core.atomic import write_text_atomic
from lorkd_core.errors import ConfigError

TASKS = ("segmentation", "classification")
DEVICES = ("auto", "cpu", "cuda", "mps")
AMP_DTYPES = ("bf16", "fp16")
CROP_SAMPLING = ("class", "voxel")
C = TypeVar("C", bound="JobConfig")


def default_teacher_network() -> dict[str, Any]:
    return {"name": "monai.UNet",
            "kwargs": {"channels": [16, 32, 64, 128], "strides": [2, 2, 2], "num_res_units": 1}}


def default_student_network() -> dict[str, Any]:
    return {"name": "monai.UNet",
            "kwargs": {"channels": [8, 16, 32, 64], "strides": [2, 2, 2], "num_res_units": 1}}


def default_classifier_network() -> dict[str, Any]:
    return {"name": "lorkd.SmallCNN", "kwargs": {"channels": [8, 16, 32, 64]}}


@dataclass
class JobConfig:
    """Settings every training job shares; subclasses add their own. JSON keys are the field names."""

    data: str = ""
    out: str = ""
    task: str = "segmentation"
    steps: int = 200
    batch_size: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-5
    patch_size: tuple[int, ...] = (64, 64, 64)
    spacing: tuple[float, ...] = (3.0, 3.0, 3.0)
    spatial_dims: int = 3
    seed: int = 0
    checkpoint_every: int = 50
    device: str = "auto"
    amp: bool = True
    amp_dtype: str = "bf16"
    regions: list[str] | None = None
    cache_cases_per_region: int | None = None
    warmup_steps: int = 10
    augment: float = 1.0
    crop_sampling: str = "voxel"

    # ------------------------------------------------------------- JSON

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else json.loads(json.dumps(value))
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls: type[C], data: Any, *, where: str = "config") -> C:
        """Build and validate; raises ConfigError naming an unknown or badly typed key."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: a job configuration must be a JSON object")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in data if k not in fields)
        if unknown:
            raise ConfigError(f"{where}: unknown key '{unknown[0]}' for {cls.__name__}"
                              + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
                              + f"; known keys: {', '.join(sorted(fields))}")
        kwargs = {}
        for key, value in data.items():
            default = _default_of(fields[key])
            if isinstance(default, tuple) and isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    @classmethod
    def from_json(cls: type[C], text: str, *, where: str = "config") -> C:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
        return cls.from_dict(data, where=where)

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the job configuration ({exc.strerror or exc})", path) from exc
        return cls.from_json(text, where=str(path))

    def save(self, path: str | Path) -> Path:
        write_text_atomic(path, self.to_json())
        return Path(path)

    def replace(self: C, **changes: Any) -> C:
        """A validated copy with some fields changed (``None`` values are ignored, as CLI flags left out)."""
        data = self.to_dict()
        data.update({k: v for k, v in changes.items() if v is not None})
        return type(self).from_dict(data)

    # ------------------------------------------------------------- checks

    def validate(self) -> None:
        """Raise ConfigError for values the engine cannot run with."""
        _check_type(self, "data", str)
        _check_type(self, "out", str)
        _check_choice(self, "task", TASKS)
        _check_choice(self, "device", DEVICES)
        _check_choice(self, "amp_dtype", AMP_DTYPES)
        _check_choice(self, "crop_sampling", CROP_SAMPLING)
        for name in ("steps", "batch_size", "seed", "checkpoint_every", "spatial_dims", "warmup_steps"):
            _check_type(self, name, int)
        for name in ("lr", "weight_decay", "augment"):
            _check_type(self, name, (int, float))
        _check_type(self, "amp", bool)
        if self.steps < 0:
            raise ConfigError(f"steps must be >= 0, found {self.steps}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, found {self.batch_size}")
        if self.checkpoint_every < 0:
            raise ConfigError(f"checkpoint_every must be >= 0 (0 = only at the end), found {self.checkpoint_every}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, found {self.lr}")
        if self.spatial_dims not in (2, 3):
            raise ConfigError(f"spatial_dims must be 2 or 3, found {self.spatial_dims}")
        for name, kind in (("patch_size", int), ("spacing", (int, float))):
            value = getattr(self, name)
            if (not isinstance(value, tuple) or len(value) != self.spatial_dims
                    or not all(isinstance(v, kind) and not isinstance(v, bool) and v > 0 for v in value)):
                raise ConfigError(f"{name} must list {self.spatial_dims} positive numbers, found {value!r}")
        if self.regions is not None and (not isinstance(self.regions, list)
                                         or not all(isinstance(r, str) for r in self.regions)):
            raise ConfigError(f"regions must be a list of region names or null, found {self.regions!r}")
        if self.cache_cases_per_region is not None:
            _check_type(self, "cache_cases_per_region", int)


@dataclass
class FoundationConfig(JobConfig):
    """Train the teacher: one network over all regions with the union label space."""

    network: dict[str, Any] = field(default_factory=default_teacher_network)
    steps: int = 600

    def validate(self) -> None:
        super().validate()
        _check_network(self, "network")


@dataclass
class DecomposeConfig(JobConfig):
    """LoRKD: student backbone + per-region low-rank experts + region heads, distilled from a teacher.

    ``ranks``: one int for every region, a ``{region: rank}`` dict, or "proportional" (ranks scaled by
    each region's share of the training cases so their mean is ``rank``). Decoder convolutions get
    ``decoder_rank_factor`` x the region's rank. ``alpha``: expert scale numerator (None = the rank).
    Loss = task + ``lam`` * tau^2 * KL(teacher_tau || student_tau).
    """

    teacher: str = ""
    teacher_spec: str = ""
    student: dict[str, Any] = field(default_factory=default_student_network)
    feature_channels: int = 16
    ranks: int | dict[str, int] | str = 4
    rank: int = 4
    decoder_rank_factor: float = 2.0
    alpha: float | None = None
    lam: float = 1.0
    tau: float = 2.0
    train_backbone: bool = True
    baseline: bool = True
    baseline_steps: int | None = None
    copy_teacher: bool = True

    def validate(self) -> None:
        super().validate()
        _check_type(self, "teacher", str)
        _check_type(self, "teacher_spec", str)
        _check_network(self, "student")
        for name in ("feature_channels", "rank"):
            _check_type(self, name, int)
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, found {getattr(self, name)}")
        ranks = self.ranks
        if isinstance(ranks, str):
            if ranks != "proportional":
                raise ConfigError(f"ranks must be an int, a {{region: rank}} object or 'proportional', found {ranks!r}")
        elif isinstance(ranks, dict):
            bad = {k: v for k, v in ranks.items() if isinstance(v, bool) or not isinstance(v, int) or v < 0}
            if bad:
                raise ConfigError(f"ranks must map regions to non-negative integers, found {bad}")
        elif isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 0:
            raise ConfigError(f"ranks must be a non-negative integer, found {ranks!r}")
        _check_type(self, "decoder_rank_factor", (int, float))
        if self.decoder_rank_factor <= 0:
            raise ConfigError(f"decoder_rank_factor must be > 0, found {self.decoder_rank_factor}")
        if self.alpha is not None:
            _check_type(self, "alpha", (int, float))
        for name in ("lam", "tau"):
            _check_type(self, name, (int, float))
        if self.lam < 0 or self.tau <= 0:
            raise ConfigError(f"lam must be >= 0 and tau > 0, found lam={self.lam}, tau={self.tau}")
        for name in ("train_backbone", "baseline", "copy_teacher"):
            _check_type(self, name, bool)
        if self.baseline_steps is not None:
            _check_type(self, "baseline_steps", int)


@dataclass
class AdaptConfig(JobConfig):
    """Fine-tune one region's expert (and head) of an experts model on a small dataset: a new expert version.

    The shared backbone and the other regions stay frozen; the region keeps its rank. ``teacher``
    (optional) adds distillation with weight ``lam`` when the teacher knows the labels. When the small
    dataset's labels differ from the head's, the head is replaced (``train_head`` must then be true).
    """

    experts: str = ""
    region: str = ""
    teacher: str = ""
    lam: float = 0.0
    tau: float = 2.0
    train_head: bool = True
    steps: int = 100
    lr: float = 1e-3

    def validate(self) -> None:
        super().validate()
        _check_type(self, "experts", str)
        _check_type(self, "region", str)
        _check_type(self, "teacher", str)
        for name in ("lam", "tau"):
            _check_type(self, name, (int, float))
        _check_type(self, "train_head", bool)


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _check_type(cfg: JobConfig, name: str, kind: type | tuple[type, ...]) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ConfigError(f"{name} must be {_kind_name(kind)}, found {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"{name} must be {_kind_name(kind)}, found {value!r}")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "an object"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _check_choice(cfg: JobConfig, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(cfg, name)
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; found {value!r}")


def _check_network(cfg: JobConfig, name: str) -> None:
    spec = getattr(cfg, name)
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ConfigError(f"{name} must be a network spec {{\"name\": ..., \"kwargs\": {{...}}}}, found {spec!r}")
    extra = sorted(set(spec) - {"name", "kwargs"})
    if extra:
        raise ConfigError(f"{name}: unknown key '{extra[0]}' in the network spec (expected name, kwargs)")
    if not isinstance(spec.get("kwargs", {}), dict):
        raise ConfigError(f"{name}.kwargs must be an object")
