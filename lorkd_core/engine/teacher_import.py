"""Load or import a teacher (foundation model): a model folder, a MONAI bundle, TorchScript, or safetensors.

Safety: nothing here unpickles arbitrary objects. A bundle's ``models/model.pt`` is read with
``torch.load(weights_only=True)`` (PyTorch's restricted loader: tensors and plain containers only); a
bundle's ``network_def`` is interpreted, never executed: ``_target_`` must name a network class in
``monai.networks.nets``, ``@key`` references resolve to literal config values, and ``$`` expressions are
refused. A TorchScript file is loaded with ``torch.jit.load`` (compiled TorchScript, not pickled Python).

Label names are mapped to the taxonomy's canonical structure names (aliases such as ``left_kidney``) and
from there to regions; names the taxonomy does not know stay as they are (in the ``union`` labels only).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorkd_core.engine.model_card import CARD_NAME, Architecture, ModelCard, save_model
from lorkd_core.engine.model_io import TORCHSCRIPT, load_model
from lorkd_core.engine.networks import build_network, plain_architecture
from lorkd_core.errors import ModelError

TORCHSCRIPT_FILE = "model.torchscript"
_BUNDLE_NAMES = {"UNet": "monai.UNet", "SegResNet": "monai.SegResNet", "DynUNet": "monai.DynUNet"}


@dataclass
class Teacher:
    """A frozen teacher: its module and output channel -> name (channel 0 is background for segmentation)."""

    model: nn.Module
    labels: dict[int, str]
    task: str = "segmentation"
    architecture: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None
    card: ModelCard | None = None

    def channel_of(self, name: str) -> int | None:
        """The teacher channel of a structure (or class) name, matching canonical names and aliases."""
        wanted = canonical(name)
        for ch, n in self.labels.items():
            if canonical(n) == wanted and (ch != 0 or self.task == "classification"):
                return ch
        return None

    def class_ids(self, names: Sequence[str]) -> list[int] | None:
        """Channels for ``names`` in order, or None when the teacher lacks any of them."""
        ids = [self.channel_of(n) for n in names]
        return None if any(i is None for i in ids) else [int(i) for i in ids]  # type: ignore[arg-type]

    def region_labels(self) -> dict[str, dict[int, str]]:
        """{region: {teacher channel: name}} for every region whose label set holds a teacher structure."""
        return region_labels(self.labels)


def canonical(name: str) -> str:
    try:
        from lorkd_core.regions import load_taxonomy
    except ImportError:  # pragma: no cover
        return name
    return load_taxonomy().canonical_name(name) or name


def region_labels(labels: Mapping[int, str]) -> dict[str, dict[int, str]]:
    """Group channel -> name by the taxonomy regions whose label sets contain the name."""
    try:
        from lorkd_core.regions import load_taxonomy
    except ImportError:  # pragma: no cover
        return {}
    tax = load_taxonomy()
    out: dict[str, dict[int, str]] = {}
    for ch, name in sorted(labels.items()):
        if ch == 0 and name.lower() == "background":
            continue
        for region in tax.regions_of(name):
            out.setdefault(region, {})[int(ch)] = canonical(name)
    return {r: out[r] for r in tax.regions if r in out}


def teacher_card(architecture: Mapping[str, Any], labels: Mapping[int, str], *, task: str = "segmentation",
                 per_region: Mapping[str, Mapping[int, str]] | None = None,
                 training: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None) -> ModelCard:
    """A kind=teacher card: per-region labels keyed by teacher channel, plus the full ``union`` labels.

    ``per_region`` defaults to the taxonomy grouping of the label names (segmentation).
    """
    groups = {r: dict(v) for r, v in (per_region or region_labels(labels)).items()}
    if not groups:
        raise ModelError("none of the teacher's labels belongs to a known region "
                         f"({', '.join(list(labels.values())[:6])}...); check the label names")
    arch = dict(architecture)
    return ModelCard(kind="teacher", task=task,
                     architecture=Architecture(arch.pop("name"), arch.pop("kwargs", {}), arch.pop("heads", {}), arch),
                     regions=list(groups), labels={**groups, "union": {int(k): v for k, v in labels.items()}},
                     training=dict(training or {}), extra=dict(extra or {}))


# ------------------------------------------------------------------ loading


def load_teacher(source: str | Path, *, spec: str | Path | Mapping[str, Any] | None = None,
                 device: str | torch.device = "cpu") -> Teacher:
    """A frozen eval-mode teacher from a model folder, a MONAI bundle folder, a TorchScript file, or a
    safetensors state dict (``spec``: network spec JSON with ``labels``)."""
    path = Path(source)
    if path.is_dir() and (path / CARD_NAME).is_file():
        model, card = load_model(path, device)
        union = card.labels.get("union") or {k: v for names in card.labels.values() for k, v in names.items()}
        return _frozen(Teacher(model, dict(union), card.task, card.architecture.to_dict(), path, card))
    if path.is_dir() and (path / "configs" / "metadata.json").is_file():
        return _frozen(read_monai_bundle(path), device)
    if path.is_file() and path.suffix == ".safetensors":
        return _frozen(read_safetensors_teacher(path, spec), device)
    if path.is_file():
        return _frozen(read_torchscript_teacher(path, spec), device)
    raise ModelError("not a teacher: expected a model folder (card.json), a MONAI bundle folder "
                     "(configs/metadata.json), a TorchScript file or a .safetensors file", path)


def import_teacher(source: str | Path, out: str | Path, *, spec: str | Path | Mapping[str, Any] | None = None) -> Path:
    """Write any supported teacher as a standard kind=teacher model folder at ``out``; returns ``out``."""
    src = Path(source)
    out = Path(out)
    if src.is_dir() and (src / CARD_NAME).is_file():
        if src.resolve() != out.resolve():
            copy_model_folder(src, out)
        return out
    teacher = load_teacher(src, spec=spec)
    if teacher.architecture.get("name") == TORCHSCRIPT:
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out / TORCHSCRIPT_FILE)
        teacher.architecture["file"] = TORCHSCRIPT_FILE
    card = teacher_card(teacher.architecture, teacher.labels, task=teacher.task,
                        extra={"imported_from": str(src.resolve())})
    save_model(out, teacher.model.state_dict(), card)
    return out


def copy_model_folder(src: Path, out: Path) -> None:
    """Copy a model folder's card, weights and TorchScript file (not checkpoints or reports)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in (TORCHSCRIPT_FILE, "model.safetensors", CARD_NAME):  # the card last
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)


def _frozen(teacher: Teacher, device: str | torch.device | None = None) -> Teacher:
    if device is not None:
        teacher.model = teacher.model.to(device)
    teacher.model.eval()
    for p in teacher.model.parameters():
        p.requires_grad_(False)
    return teacher


def read_monai_bundle(folder: str | Path) -> Teacher:
    """A MONAI bundle: ``configs/metadata.json`` (channel_def), ``configs/inference.json`` (network_def),
    ``models/model.pt`` (state dict, weights_only) or ``models/model.ts`` (TorchScript)."""
    folder = Path(folder)
    meta_path = folder / "configs" / "metadata.json"
    meta = _read_json(meta_path)
    try:
        channel_def = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
        labels = {int(k): str(v) for k, v in channel_def.items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError("metadata has no network_data_format.outputs.pred.channel_def", meta_path) from exc
    weights = folder / "models" / "model.pt"
    scripted = folder / "models" / "model.ts"
    infer_path = folder / "configs" / "inference.json"
    if not weights.is_file():
        if scripted.is_file():
            return read_torchscript_teacher(scripted, {"labels": labels})
        raise ModelError("bundle has neither models/model.pt nor models/model.ts", folder)
    config = _read_json(infer_path)
    spec = bundle_network_spec(config, infer_path)
    model = build_network(spec)
    state = _load_state_dict_safely(weights)
    _load_strict(model, state, weights)
    return Teacher(model, labels, "segmentation", plain_architecture(spec, _out_channels(spec, labels)), folder)


def bundle_network_spec(config: Mapping[str, Any], where: Path) -> dict[str, Any]:
    """``network_def`` -> {"name": "monai.X", "kwargs": {...}} without executing anything."""
    net = config.get("network_def")
    if not isinstance(net, dict):
        raise ModelError("inference config has no 'network_def' object", where)
    target = str(net.get("_target_", ""))
    cls = target.rsplit(".", 1)[-1]
    if target.startswith("$") or (target.count(".") and not target.startswith("monai.networks.nets")):
        raise ModelError(f"network_def _target_ {target!r} is not a monai.networks.nets class", where)
    kwargs = {k: _resolve(v, config, where, k) for k, v in net.items() if not k.startswith("_")}
    return {"name": _BUNDLE_NAMES.get(cls, f"monai.{cls}"), "kwargs": kwargs}


def _resolve(value: Any, config: Mapping[str, Any], where: Path, key: str, depth: int = 0) -> Any:
    if depth > 8:
        raise ModelError(f"network_def.{key}: references nest too deeply", where)
    if isinstance(value, str) and value.startswith("@"):
        ref = value[1:]
        if ref not in config:
            raise ModelError(f"network_def.{key}: reference {value!r} not found in the config", where)
        return _resolve(config[ref], config, where, key, depth + 1)
    if isinstance(value, str) and value.startswith(("$", "%")):
        raise ModelError(f"network_def.{key}: expressions ({value!r}) are not evaluated; give a literal", where)
    if isinstance(value, list):
        return [_resolve(v, config, where, key, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, config, where, key, depth + 1) for k, v in value.items()}
    return value


def read_torchscript_teacher(path: str | Path, spec: str | Path | Mapping[str, Any] | None) -> Teacher:
    """A TorchScript teacher; label names from ``spec`` ({"labels": {...}}) or a sidecar ``<file>.json``."""
    path = Path(path)
    meta = _spec_dict(spec, path)
    labels = _labels_of(meta, path)
    try:
        model = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"not a TorchScript file ({str(exc).splitlines()[0]})", path) from exc
    arch = {"name": TORCHSCRIPT, "kwargs": {}, "heads": {}, "file": TORCHSCRIPT_FILE}
    return Teacher(model, labels, str(meta.get("task", "segmentation")), arch, path)


def read_safetensors_teacher(path: str | Path, spec: str | Path | Mapping[str, Any] | None) -> Teacher:
    """A safetensors state dict plus a spec {"name": ..., "kwargs": {...}, "labels": {...}}."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = _spec_dict(spec, path)
    if "name" not in meta:
        raise ModelError("a safetensors teacher needs a network spec with 'name' and 'kwargs' (--teacher-spec)", path)
    labels = _labels_of(meta, path)
    net_spec = {"name": meta["name"], "kwargs": dict(meta.get("kwargs", {}))}
    model = build_network(net_spec)
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors' own error type for corrupt files
        raise ModelError(f"not a readable safetensors file ({exc})", path) from exc
    _load_strict(model, state, path)
    task = str(meta.get("task", "segmentation"))
    return Teacher(model, labels, task, plain_architecture(net_spec, _out_channels(net_spec, labels)), path)


def _spec_dict(spec: str | Path | Mapping[str, Any] | None, path: Path) -> dict[str, Any]:
    if spec is None:
        sidecar = path.with_suffix(".json")
        if not sidecar.is_file():
            raise ModelError(f"label names are needed: pass a spec JSON or put {sidecar.name} beside the file", path)
        return _read_json(sidecar)
    if isinstance(spec, Mapping):
        return dict(spec)
    return _read_json(Path(spec))


def _labels_of(meta: Mapping[str, Any], path: Path) -> dict[int, str]:
    raw = meta.get("labels") or meta.get("channel_def")
    if not isinstance(raw, dict) or not raw:
        raise ModelError("the spec has no 'labels' {channel: name}", path)
    return {int(k): str(v) for k, v in raw.items()}


def _out_channels(spec: Mapping[str, Any], labels: Mapping[int, str]) -> int:
    return int(spec.get("kwargs", {}).get("out_channels", max(labels) + 1))


def _load_state_dict_safely(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # the restricted unpickler raises UnpicklingError for anything but tensors
        raise ModelError(f"cannot read the weights with torch.load(weights_only=True) ({exc})", path) from exc
    for key in ("state_dict", "model", "network", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError("model.pt does not hold a state dict of tensors", path)
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    from lorkd_core.engine.model_card import load_state_checked

    load_state_checked(model, state, path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError("file not found", path) from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"not readable JSON ({exc})", path) from exc
    if not isinstance(data, dict):
        raise ModelError("expected a JSON object", path)
    return data
