"""Importing datasets (JSONL manifest, TotalSegmentator folder, nnU-Net raw / MSD folder) and validating them.

Every import ends as per-region :class:`DatasetItem` s with region-specific label ids 1..n. A case
whose labels span several regions becomes one item per region present (like the LoRKD paper does
with multi-region datasets); the per-region label maps are written into a cache folder.

Problems never stop an import or a validation half-way: each bad case or file is reported as a
:class:`Problem` (path + reason) and the good ones are kept.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lorkd_core.data.manifest import DatasetItem, read_manifest
from lorkd_core.errors import DatasetError, LabelError, LorkdError, ScanError
from lorkd_core.io.scan import Geometry, conform_label_map, load_label_map, load_scan, read_image_information
from lorkd_core.io.writers import save_label_map
from lorkd_core.progress import CancelToken, ProgressCallback, report
from lorkd_core.regions import REGION_NAMES, Taxonomy, load_taxonomy, normalize_name

_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".jpg", ".jpeg")
_MR_CHANNELS = ("MR", "MRI", "T1", "T2", "FLAIR", "ADC", "DWI", "PD", "T1W", "T2W", "T1GD", "T1C", "SWI")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file or case."""

    path: Path
    reason: str
    case_id: str = ""
    region: str | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class ImportResult:
    """Good items plus every problem found; ``layout`` is what was recognised."""

    items: list[DatasetItem]
    problems: list[Problem] = field(default_factory=list)
    layout: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# ------------------------------------------------------------------------------------------ entry points


def detect_layout(path: str | Path) -> str:
    """``manifest``, ``totalsegmentator``, ``nnunet`` (v2, labels name->id) or ``msd`` (labels id->name)."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            return "manifest"
        if path.name == "dataset.json":
            return _nnunet_flavour(path)
        raise DatasetError("not a dataset: expected a .jsonl manifest or a dataset folder", path)
    if not path.is_dir():
        raise DatasetError("dataset not found", path)
    if (path / "manifest.jsonl").is_file():
        return "manifest"
    if (path / "dataset.json").is_file():
        return _nnunet_flavour(path / "dataset.json")
    if any(_is_totalseg_case(p) for p in _subdirs(path)):
        return "totalsegmentator"
    raise DatasetError(
        "unrecognised dataset layout: expected manifest.jsonl, dataset.json (nnU-Net/MSD) or "
        "<case>/ct.nii.gz + <case>/segmentations/ (TotalSegmentator)",
        path,
    )


def import_dataset(
    path: str | Path,
    cache_dir: str | Path | None = None,
    *,
    region: str | None = None,
    min_voxels: int = 1,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ImportResult:
    """Import a manifest, a TotalSegmentator folder or an nnU-Net / MSD folder as per-region items.

    ``cache_dir`` receives the combined/renumbered per-region label maps (default: a per-user cache,
    ``$LORKD_CACHE`` or ``~/.cache/lorkd``). ``region`` forces the region of labels the taxonomy does
    not know (e.g. MSD "cancer"). A region counts as present in a TotalSegmentator case when one of
    its own structures has at least ``min_voxels`` voxels. Raises DatasetError only when the
    dataset as a whole cannot be read; per-case problems land in ``ImportResult.problems``.
    """
    path = Path(path)
    layout = detect_layout(path)
    if region is not None and region not in REGION_NAMES:
        raise DatasetError(f"unknown region {region!r} (expected one of {', '.join(REGION_NAMES)})")
    if layout == "manifest":
        manifest = path if path.is_file() else path / "manifest.jsonl"
        items = read_manifest(manifest)
        problems = [
            Problem(manifest, f"unknown region {i.region!r}", i.case_id)
            for i in items
            if i.region not in REGION_NAMES
        ]
        good = [i for i in items if i.region in REGION_NAMES]
        return ImportResult(good, problems, layout)
    cache = _cache_folder(path, cache_dir)
    if layout == "totalsegmentator":
        return _import_totalseg(path, cache, min_voxels, progress, cancel)
    return _import_nnunet(path if path.is_dir() else path.parent, layout, cache, region, progress, cancel)


def validate_items(
    items: Iterable[DatasetItem],
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ImportResult:
    """Check every item (files exist and read, label grid = image grid, label values declared, label
    not empty); return the good items and one Problem per bad item, in input order."""
    items = list(items)
    good: list[DatasetItem] = []
    problems: list[Problem] = []
    for n, item in enumerate(items):
        if cancel is not None:
            cancel.raise_if_cancelled("validation")
        report(progress, n, len(items), f"checking {item.case_id or item.image.name}")
        problem = _check_item(item)
        if problem is None:
            good.append(item)
        else:
            problems.append(problem)
    report(progress, len(items), len(items), f"{len(good)} good, {len(problems)} with problems")
    return ImportResult(good, problems, "validated")


def summarize(items: Iterable[DatasetItem]) -> dict[str, int]:
    """Case counts per region: all eight regions in contract order, then any unknown region names."""
    counts = dict.fromkeys(REGION_NAMES, 0)
    for item in items:
        counts[item.region] = counts.get(item.region, 0) + 1
    return counts


# ------------------------------------------------------------------------------------------- validation


def _check_item(item: DatasetItem) -> Problem | None:
    def problem(path: Path | None, reason: str) -> Problem:
        return Problem(path or item.image, reason, item.case_id, item.region)

    try:
        if item.region not in REGION_NAMES:
            return problem(item.image, f"unknown region {item.region!r}")
        if not item.image.is_file():
            return problem(
                item.image, "missing file (image)" if not item.image.is_dir() else "image is a folder"
            )
        if item.label is not None and not item.label.is_file():
            return problem(item.label, "missing file (label)")
        try:
            scan = load_scan(item.image, modality=item.modality)
        except ScanError as exc:
            return problem(item.image, f"unreadable image: {exc.problem}")
        if item.label is None:
            return None
        try:
            label = load_label_map(item.label, like=scan)
        except LabelError as exc:
            if "grid differs" in exc.problem:
                detail = exc.problem[exc.problem.find("(") :] if "(" in exc.problem else ""
                return problem(item.label, f"label grid != image grid {detail}".strip())
            return problem(item.label, f"unreadable label: {exc.problem}")
        names = item.label_names()
        if not names:
            return problem(item.label, "no label names (no 'labels' in the item and no sidecar JSON)")
        present = label.values()
        unknown = sorted(set(present) - set(names))
        if unknown:
            return problem(item.label, f"unknown label value(s) {unknown} (declared: {sorted(names)})")
        if not present:
            return problem(item.label, "empty label (no foreground voxels)")
        return None
    except (LorkdError, OSError, ValueError, RuntimeError, MemoryError) as exc:
        return problem(item.image, f"cannot be checked ({exc.__class__.__name__}: {exc})")


# ------------------------------------------------------------------------------------- TotalSegmentator


def _subdirs(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _is_totalseg_case(case: Path) -> bool:
    return (case / "segmentations").is_dir() or (case / "ct.nii.gz").is_file()


def _strip_suffix(name: str) -> str:
    for suffix in _IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _read_splits(root: Path) -> dict[str, str]:
    """TotalSegmentator's meta.csv (``image_id;...;split``) -> case -> split."""
    meta = root / "meta.csv"
    if not meta.is_file():
        return {}
    try:
        text = meta.read_text(encoding="utf-8", errors="replace")
        dialect = csv.Sniffer().sniff(text.splitlines()[0] if text else ",", delimiters=";,\t")
        rows = csv.DictReader(text.splitlines(), dialect=dialect)
        out = {}
        for row in rows:
            case, split = row.get("image_id"), (row.get("split") or "").strip().lower()
            if case and split in ("train", "val", "test"):
                out[case.strip()] = split
        return out
    except (csv.Error, OSError, IndexError):
        return {}


def _signature(files: list[Path]) -> str:
    digest = hashlib.sha1()
    for f in files:
        st = f.stat()
        digest.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return digest.hexdigest()


def _import_totalseg(
    root: Path, cache: Path, min_voxels: int, progress: ProgressCallback | None, cancel: CancelToken | None
) -> ImportResult:
    taxonomy = load_taxonomy()
    splits = _read_splits(root)
    cases = [c for c in _subdirs(root) if _is_totalseg_case(c)]
    result = ImportResult([], [], "totalsegmentator")
    unknown_names: set[str] = set()
    for n, case in enumerate(cases):
        if cancel is not None:
            cancel.raise_if_cancelled("dataset import")
        report(progress, n, len(cases), f"importing {case.name}")
        try:
            items, problems = _totalseg_case(case, cache, taxonomy, min_voxels, unknown_names)
        except (LorkdError, OSError, ValueError, RuntimeError, MemoryError) as exc:
            items, problems = (
                [],
                [Problem(case, f"cannot import case ({exc.__class__.__name__}: {exc})", case.name)],
            )
        split = splits.get(case.name, "train")
        result.items += [i.with_(split=split) for i in items]
        result.problems += problems
    report(progress, len(cases), len(cases), f"{len(result.items)} items")
    if unknown_names:
        result.notes.append(
            f"{len(unknown_names)} segmentation name(s) not in the region taxonomy were skipped: "
            + ", ".join(sorted(unknown_names)[:20])
        )
    return result


def _totalseg_case(
    case: Path, cache: Path, taxonomy: Taxonomy, min_voxels: int, unknown_names: set[str]
) -> tuple[list[DatasetItem], list[Problem]]:
    ct = case / "ct.nii.gz"
    segdir = case / "segmentations"
    if not ct.is_file():
        return [], [Problem(case, "missing file (ct.nii.gz)", case.name)]
    if not segdir.is_dir():
        return [], [Problem(case, "missing folder (segmentations/)", case.name)]
    seg_files = sorted(p for p in segdir.iterdir() if p.name.lower().endswith((".nii.gz", ".nii")))
    if not seg_files:
        return [], [Problem(segdir, "no segmentation files", case.name)]
    try:
        ct_geometry = _header_geometry(ct)
    except ScanError as exc:
        return [], [Problem(ct, f"unreadable image: {exc.problem}", case.name)]
    by_name: dict[str, Path] = {}
    for f in seg_files:
        name = taxonomy.canonical_name(_strip_suffix(f.name))
        if name is None:
            unknown_names.add(_strip_suffix(f.name))
        else:
            by_name[name] = f
    regions = [r for r in REGION_NAMES if any(s in by_name for s in taxonomy.regions[r].structures)]

    signature = _signature([ct, *seg_files])
    index_path = cache / case.name / "index.json"
    cached = _read_cache_index(index_path, signature)
    if cached is not None:
        return [
            _ts_item(ct, cache / case.name / f"{r}.nii.gz", r, labels, case.name) for r, labels in cached
        ], []

    problems: list[Problem] = []
    names = list(by_name)
    combined = np.zeros(ct_geometry.shape, dtype=np.int16)  # global structure index + 1
    voxels: dict[str, int] = {}
    for k, name in enumerate(names, start=1):
        f = by_name[name]
        try:
            mask = load_label_map(f)
        except LabelError as exc:
            problems.append(Problem(f, f"unreadable label: {exc.problem}", case.name))
            continue
        try:
            mask = conform_label_map(mask, ct_geometry, f)  # exact reorder when stored flipped
        except LabelError:
            diff = "; ".join(mask.geometry.differences(ct_geometry))
            problems.append(Problem(f, f"label grid != image grid (label vs image: {diff})", case.name))
            continue
        fg = mask.array > 0
        voxels[name] = int(fg.sum())
        combined[fg] = k
    items = []
    entries = []
    for region in regions:
        structures = [s for s in taxonomy.regions[region].structures if s in voxels]
        own = [s for s in structures if taxonomy.structures[s].region == region]
        if not own or max(voxels[s] for s in own) < min_voxels:
            continue
        lut = np.zeros(len(names) + 1, dtype=np.int16)
        labels = {}
        for new_id, s in enumerate(structures, start=1):
            lut[names.index(s) + 1] = new_id
            labels[new_id] = s
        out = cache / case.name / f"{region}.nii.gz"
        save_label_map(out, lut[combined], ct_geometry, labels, region=region, source=str(case), model=None)
        items.append(_ts_item(ct, out, region, labels, case.name))
        entries.append((region, labels))
    if not problems:  # a case with bad files is re-read next time, in case they were fixed
        _write_cache_index(index_path, signature, entries)
    return items, problems


def _header_geometry(path: Path) -> Geometry:
    """A file's grid from its header only (no voxels read)."""
    reader = read_image_information(path)
    if reader.GetDimension() != 3:
        raise ScanError(f"{reader.GetDimension()}D image, expected 3D", path)
    return Geometry(
        tuple(int(s) for s in reader.GetSize()),  # type: ignore[arg-type]
        tuple(float(s) for s in reader.GetSpacing()),  # type: ignore[arg-type]
        tuple(float(s) for s in reader.GetOrigin()),  # type: ignore[arg-type]
        tuple(float(s) for s in reader.GetDirection()),
    )


def _ts_item(ct: Path, label: Path, region: str, labels: dict[int, str], case_id: str) -> DatasetItem:
    return DatasetItem(image=ct, label=label, region=region, modality="CT", labels=labels, case_id=case_id)


def _read_cache_index(path: Path, signature: str) -> list[tuple[str, dict[int, str]]] | None:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("signature") != signature:
            return None
        entries = [(e["region"], {int(k): v for k, v in e["labels"].items()}) for e in raw["regions"]]
        if all((path.parent / f"{r}.nii.gz").is_file() for r, _ in entries):
            return entries
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def _write_cache_index(path: Path, signature: str, entries: list[tuple[str, dict[int, str]]]) -> None:
    from lorkd_core.atomic import write_json_atomic

    write_json_atomic(
        path,
        {
            "signature": signature,
            "regions": [
                {"region": r, "labels": {str(k): v for k, v in labels.items()}} for r, labels in entries
            ],
        },
    )


# ------------------------------------------------------------------------------------------ nnU-Net / MSD


def _nnunet_flavour(dataset_json: Path) -> str:
    try:
        raw = json.loads(dataset_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read dataset.json ({exc})", dataset_json) from None
    labels = raw.get("labels") if isinstance(raw, dict) else None
    if not isinstance(labels, dict) or not labels:
        raise DatasetError("dataset.json has no 'labels' mapping", dataset_json)
    return "msd" if all(str(k).strip().lstrip("-").isdigit() for k in labels) else "nnunet"


def _parse_labels(raw: dict, layout: str, path: Path) -> dict[int, str]:
    """id -> original name, background dropped, from either flavour."""
    out: dict[int, str] = {}
    for key, value in raw["labels"].items():
        if layout == "msd":
            label_id, name = int(key), str(value)
        else:
            if isinstance(value, (list, tuple)):
                raise DatasetError(
                    f"label {key!r} is a region-based label {value} (nnU-Net regions); only plain labels are supported",
                    path,
                )
            label_id, name = int(value), str(key)
        if label_id != 0:
            out[label_id] = name
    return dict(sorted(out.items()))


def _modality_of(raw: dict) -> tuple[str, int]:
    channels = raw.get("channel_names") or raw.get("modality") or {}
    if not isinstance(channels, dict) or not channels:
        return "CT", 1
    first = str(channels.get("0", next(iter(channels.values())))).strip().upper()
    if first == "CT":
        return "CT", len(channels)
    if first in _MR_CHANNELS or first.startswith(("MR", "T1", "T2")):
        return "MR", len(channels)
    return "OT", len(channels)


def _assign_regions(
    names: dict[int, str], taxonomy: Taxonomy, forced: str | None
) -> tuple[dict[int, tuple[str, str]], list[int]]:
    """label id -> (region, structure name); unmapped ids listed apart.

    Greedy cover: the region whose label set holds most of the labels takes all it holds (shared
    structures included, so an abdominal aorta stays with the abdomen), then the next, and so on.
    """
    canonical = {i: taxonomy.canonical_name(n) for i, n in names.items()}
    remaining = {i for i, c in canonical.items() if c is not None}
    assigned: dict[int, tuple[str, str]] = {}
    while remaining:
        best = max(
            REGION_NAMES,
            key=lambda r: (
                sum(1 for i in remaining if canonical[i] in taxonomy.regions[r].structures),
                sum(1 for i in remaining if taxonomy.structures[canonical[i]].region == r),  # type: ignore[index]
            ),
        )
        taken = {i for i in remaining if canonical[i] in taxonomy.regions[best].structures}
        if not taken:
            break
        for i in taken:
            assigned[i] = (best, canonical[i])  # type: ignore[assignment]
        remaining -= taken
    unmapped = sorted(i for i in names if i not in assigned)
    regions = {r for r, _ in assigned.values()}
    target = forced or (next(iter(regions)) if len(regions) == 1 else None)
    if target is not None:
        for i in list(unmapped):
            assigned[i] = (target, normalize_name(names[i]))
        unmapped = []
    return dict(sorted(assigned.items())), unmapped


def _nnunet_cases(root: Path, raw: dict, ending: str) -> list[tuple[str, Path | None, Path]]:
    """(case id, image or None when missing, label) for every training label."""
    images, labels = root / "imagesTr", root / "labelsTr"
    pairs: list[tuple[str, Path | None, Path]] = []
    training = raw.get("training")
    if isinstance(training, list) and training and isinstance(training[0], dict):
        for entry in training:
            label = root / str(entry.get("label", "")).lstrip("./")
            image = root / str(entry.get("image", "")).lstrip("./")
            case = _strip_suffix(label.name)
            candidates = [image, images / f"{case}_0000{ending}"]
            pairs.append((case, next((c for c in candidates if c.is_file()), None), label))
        return pairs
    if not labels.is_dir():
        raise DatasetError("no labelsTr folder", root)
    for label in sorted(labels.iterdir()):
        if label.name.startswith(".") or not label.name.endswith(ending):
            continue
        case = label.name[: -len(ending)]
        candidates = [images / f"{case}_0000{ending}", images / f"{case}{ending}"]
        pairs.append((case, next((c for c in candidates if c.is_file()), None), label))
    return pairs


def _import_nnunet(
    root: Path,
    layout: str,
    cache: Path,
    forced: str | None,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
) -> ImportResult:
    dataset_json = root / "dataset.json"
    raw = json.loads(dataset_json.read_text(encoding="utf-8"))
    names = _parse_labels(raw, layout, dataset_json)
    taxonomy = load_taxonomy()
    assigned, unmapped = _assign_regions(names, taxonomy, forced)
    if not assigned:
        raise DatasetError(
            f"none of the labels ({', '.join(names.values())}) is a structure of the region taxonomy; "
            "pass the region to import them under",
            dataset_json,
        )
    modality, channels = _modality_of(raw)
    result = ImportResult([], [], layout)
    if channels > 1:
        result.notes.append(f"{channels} input channels: only channel 0 is imported")
    if unmapped:
        result.notes.append(
            "labels dropped (not in the taxonomy and the dataset spans several regions): "
            + ", ".join(f"{i}={names[i]}" for i in unmapped)
        )
    by_region: dict[str, dict[int, int]] = {}  # region -> {dataset id: region id}
    region_labels: dict[str, dict[int, str]] = {}
    for dataset_id, (region, structure) in assigned.items():
        ids = by_region.setdefault(region, {})
        ids[dataset_id] = len(ids) + 1
        region_labels.setdefault(region, {})[ids[dataset_id]] = structure
    # one region whose ids are already 1..n and nothing dropped: point at the original files
    in_place = (
        len(by_region) == 1
        and not unmapped
        and all(k == v for k, v in next(iter(by_region.values())).items())
    )
    ending = str(raw.get("file_ending") or ".nii.gz")
    cases = _nnunet_cases(root, raw, ending)
    for n, (case, image, label) in enumerate(cases):
        if cancel is not None:
            cancel.raise_if_cancelled("dataset import")
        report(progress, n, len(cases), f"importing {case}")
        if image is None:
            result.problems.append(
                Problem(root / "imagesTr" / f"{case}_0000{ending}", "missing file (image)", case)
            )
            continue
        if not label.is_file():
            result.problems.append(Problem(label, "missing file (label)", case))
            continue
        if in_place:
            region = next(iter(by_region))
            result.items.append(
                DatasetItem(image, label, region, modality, dict(region_labels[region]), case_id=case)
            )
            continue
        try:
            source = load_label_map(label)
        except LabelError as exc:
            result.problems.append(Problem(label, f"unreadable label: {exc.problem}", case))
            continue
        geometry = source.geometry
        present = set(source.values())
        undeclared = sorted(present - set(names))
        if undeclared:
            result.problems.append(
                Problem(
                    label,
                    f"unknown label value(s) {undeclared} (dataset.json declares {sorted(names)})",
                    case,
                )
            )
            continue
        for region, ids in by_region.items():
            if not present & set(ids):
                continue
            lut = np.zeros(max(names) + 1, dtype=np.int16)
            for dataset_id, region_id in ids.items():
                lut[dataset_id] = region_id
            out = cache / case / f"{region}.nii.gz"
            save_label_map(
                out, lut[source.array], geometry, region_labels[region], region=region, source=str(label)
            )
            result.items.append(
                DatasetItem(image, out, region, modality, dict(region_labels[region]), case_id=case)
            )
    report(progress, len(cases), len(cases), f"{len(result.items)} items")
    return result


# ------------------------------------------------------------------------------------------------ misc


def _cache_folder(dataset: Path, cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    base = Path(os.environ.get("LORKD_CACHE") or Path.home() / ".cache" / "lorkd")
    key = hashlib.sha1(str(dataset.resolve()).encode()).hexdigest()[:10]
    return base / "datasets" / f"{dataset.name}-{key}"


__all__ = ["ImportResult", "Problem", "detect_layout", "import_dataset", "summarize", "validate_items"]
