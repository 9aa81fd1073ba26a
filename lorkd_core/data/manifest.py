"""JSONL dataset manifests (format in docs/contracts.md): one :class:`DatasetItem` per line.

Paths in the file are relative to the manifest's folder; in memory they are absolute.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lorkd_core.atomic import write_text_atomic
from lorkd_core.errors import DatasetError
from lorkd_core.io.scan import sidecar_path

MODALITIES = ("CT", "MR", "XR", "OT")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetItem:
    """One training case for one region. ``labels`` maps region-specific ids 1..n to structure names."""

    image: Path
    label: Path | None
    region: str
    modality: str = "CT"
    labels: dict[int, str] | None = field(default=None, hash=False)
    finding: str | None = None
    split: str = "train"
    case_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def label_names(self) -> dict[int, str]:
        """``labels``, else the sidecar ``<label>.json`` written by :func:`lorkd_core.io.save_label_map`."""
        if self.labels is not None:
            return dict(self.labels)
        if self.label is None:
            return {}
        sidecar = sidecar_path(self.label)
        if not sidecar.is_file():
            return {}
        try:
            raw = json.loads(sidecar.read_text(encoding="utf-8"))
            return {int(k): str(v) for k, v in raw.get("labels", {}).items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def to_json(self, root: Path | None = None) -> dict[str, Any]:
        """The manifest line for this item, paths relative to ``root`` when they lie below it."""
        out: dict[str, Any] = {
            "image": _rel(self.image, root),
            "label": None if self.label is None else _rel(self.label, root),
            "region": self.region,
            "modality": self.modality,
        }
        if self.labels is not None:
            out["labels"] = {str(k): v for k, v in sorted(self.labels.items())}
        out.update(finding=self.finding, split=self.split, case_id=self.case_id)
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any], root: Path) -> DatasetItem:
        """Parse one manifest line; raises ValueError/KeyError/TypeError on malformed input."""
        if not isinstance(obj, dict):
            raise TypeError("a manifest line must be a JSON object")
        image = _abs(obj["image"], root)
        label = None if obj.get("label") in (None, "") else _abs(obj["label"], root)
        labels = obj.get("labels")
        if labels is not None:
            labels = {int(k): str(v) for k, v in labels.items()}
        known = {"image", "label", "region", "modality", "labels", "finding", "split", "case_id"}
        return cls(
            image=image,
            label=label,
            region=str(obj["region"]),
            modality=str(obj.get("modality") or "CT"),
            labels=labels,
            finding=obj.get("finding"),
            split=str(obj.get("split") or "train"),
            case_id=str(obj.get("case_id") or _case_id_from(image)),
            extra={k: v for k, v in obj.items() if k not in known},
        )

    def with_(self, **changes: Any) -> DatasetItem:
        return replace(self, **changes)


def read_manifest(path: str | Path) -> list[DatasetItem]:
    """Read a JSONL manifest; blank lines and ``#`` comments are skipped.

    Raises DatasetError naming the file and line for a missing file or a malformed line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError("manifest not found", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read manifest ({exc.__class__.__name__}: {exc})", path) from None
    items = []
    root = path.parent.resolve()
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            items.append(DatasetItem.from_json(json.loads(line), root))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"line {number}: not valid JSON ({exc.msg})", path) from None
        except KeyError as exc:
            raise DatasetError(f"line {number}: missing field {exc.args[0]!r}", path) from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise DatasetError(f"line {number}: {exc}", path) from None
    return items


def write_manifest(path: str | Path, items: list[DatasetItem]) -> Path:
    """Write items as JSONL (atomically), paths relative to the manifest's folder where possible."""
    path = Path(path)
    root = path.parent.resolve()
    lines = [json.dumps(item.to_json(root)) for item in items]
    write_text_atomic(path, "".join(line + "\n" for line in lines))
    return path


def _abs(value: str, root: Path) -> Path:
    p = Path(os.path.expanduser(str(value)))
    if p.is_absolute():
        return p
    # write_manifest stores items outside the manifest's folder as "../...": climb the (resolved) root for
    # those, so that a written item reads back as the very same path
    parts = p.parts
    while parts and parts[0] == ".." and root.parent != root:
        root, parts = root.parent, parts[1:]
    return root.joinpath(*parts)


def _rel(path: Path, root: Path | None) -> str:
    if root is None:
        return str(path)
    try:
        return Path(os.path.relpath(Path(path).resolve(), root)).as_posix()
    except ValueError:  # another drive on Windows
        return str(path)


def _case_id_from(image: Path) -> str:
    name = image.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".jpg", ".jpeg"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name if name not in ("ct", "image", "img") else image.parent.name
