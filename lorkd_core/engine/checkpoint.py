"""Training checkpoints: safetensors for tensors, JSON for everything else; never pickles.

Layout (``DIR/checkpoint/``)::

    latest.json                 {"format": "lorkd-checkpoint/1", "folder": "step-000120", "step": 120, "phase": ...}
    step-000120/state.json      step, phase, config, optimizer hyper-parameters, grad-scaler, scalars
    step-000120/model.safetensors      module state dict (plus "<phase>." prefixed extra modules if any)
    step-000120/optimizer.safetensors  "state.<param index>.<name>" for each tensor in the optimizer state

A step folder is written under a temporary name and renamed when complete, and ``latest.json`` is replaced
atomically afterwards, so a reader (or a resume after a crash) only ever sees a complete checkpoint.
Step folders are deleted (pruned, or replaced by a resumed run) by renaming them to a hidden temp name
first, so a kill during a deletion never leaves a ``step-*`` folder with only some of its files.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from lorkd_core.atomic import write_json_atomic
from lorkd_core.errors import ModelError

FORMAT = "lorkd-checkpoint/1"
LATEST = "latest.json"
KEEP = 2


@dataclass
class Checkpoint:
    """What a resume needs: step, phase, module and optimizer states, and JSON scalars."""

    step: int
    phase: str
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None = None
    state: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None


def save_checkpoint(root: str | Path, *, step: int, phase: str, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, state: dict[str, Any] | None = None) -> Path:
    """Write ``root/step-NNNNNN`` completely, then point ``root/latest.json`` at it; returns the folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:06d}"
    tmp = root / f".{name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    info: dict[str, Any] = {"format": FORMAT, "step": int(step), "phase": phase, "saved_at": time.time(),
                            **(state or {})}
    if optimizer is not None:
        opt_tensors, info["optimizer"] = _split_optimizer(optimizer.state_dict())
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"), metadata={"format": "pt"})
    (tmp / "state.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    final = root / name
    if final.exists():  # a resumed run writing the same step again: move the old one aside first, never
        _remove_step(final, root / f".{name}.tmp-old-{os.getpid()}")  # leave a half-deleted step-* folder
    os.replace(tmp, final)
    write_json_atomic(root / LATEST, {"format": FORMAT, "folder": name, "step": int(step), "phase": phase})
    _prune(root, keep=name)
    return final


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete step folder under ``root``, or None."""
    root = Path(root)
    pointer = root / LATEST
    if pointer.is_file():
        try:
            folder = root / json.loads(pointer.read_text(encoding="utf-8"))["folder"]
            if (folder / "state.json").is_file():
                return folder
        except (ValueError, KeyError, OSError):
            pass
    done = sorted(p for p in root.glob("step-*") if (p / "state.json").is_file()) if root.is_dir() else []
    return done[-1] if done else None


def load_checkpoint(folder: str | Path) -> Checkpoint:
    """Read a step folder written by :func:`save_checkpoint`; ModelError names the bad file."""
    folder = Path(folder)
    try:
        info = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"checkpoint state is missing or not JSON ({exc})", folder / "state.json") from exc
    if info.get("format") != FORMAT:
        raise ModelError(f"not a {FORMAT} checkpoint (format {info.get('format')!r})", folder / "state.json")
    try:
        model = load_file(str(folder / "model.safetensors"), device="cpu")
        optimizer = None
        if "optimizer" in info:
            optimizer = _join_optimizer(load_file(str(folder / "optimizer.safetensors"), device="cpu"),
                                        info.pop("optimizer"))
    except Exception as exc:  # safetensors raises its own error types for truncated files
        raise ModelError(f"checkpoint weights are unreadable ({exc})", folder) from exc
    step = int(info.pop("step"))
    phase = str(info.pop("phase"))
    return Checkpoint(step=step, phase=phase, model=model, optimizer=optimizer, state=info, folder=folder)


def _split_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{idx}.{name}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for idx, entry in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(entry)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def _remove_step(folder: Path, aside: Path) -> None:
    """Delete a step folder by renaming it to a hidden temp name first: a kill during the deletion leaves
    a hidden leftover (removed later), never a ``step-*`` folder with only some of its files."""
    if aside.exists():
        shutil.rmtree(aside, ignore_errors=True)
    try:
        os.replace(folder, aside)
    except OSError:
        aside = folder
    shutil.rmtree(aside, ignore_errors=True)


def _prune(root: Path, keep: str) -> None:
    folders = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in folders[:-KEEP]:
        if old.name != keep:
            _remove_step(old, root / f".{old.name}.tmp-old-{os.getpid()}")
    for stale in root.glob(".step-*.tmp-*"):
        if stale.is_dir() and not stale.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(stale, ignore_errors=True)
