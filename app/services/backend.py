"""The facade over lorkd_core: the only module of the app that calls it.

Methods marked "worker" may import torch and must only run inside a TorchWorker task; the rest are cheap
and safe on the UI thread. Where a lorkd_core function is not written yet, a stand-in from this package
keeps the app working; each such switch is a single ``try: import`` here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lorkd_core.errors import LorkdError, ModelError, ScanError

from . import stats as stats_mod
from .report import build_report, write_report
from .taxonomy import TaxonomyView, load_taxonomy_view
from .types import (
    ClassificationResult,
    LoadedScan,
    ModelInfo,
    RegionInfo,
    SegmentationResult,
    VolumeChange,
)

Result = SegmentationResult | ClassificationResult
# A model the app runs without lorkd_core's Predictor (test doubles, in-process job outputs): (scan, ctx) -> result
Runner = Callable[[Any, Any], Any]
SCAN_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".dcm", ".png", ".jpg", ".jpeg")


class Backend:
    def __init__(self, model_dirs: Sequence[str | Path] = (), *, include_bundled: bool = True) -> None:
        self.taxonomy: TaxonomyView = load_taxonomy_view()
        self._model_dirs = [Path(d) for d in model_dirs]
        self._include_bundled = include_bundled
        self._registered: dict[str, tuple[ModelInfo, Runner]] = {}
        self._lock = threading.Lock()
        self._predictors: dict[str, Any] = {}  # worker thread only: one Predictor (and its expert cache) per device

    # ---------------------------------------------------------------- regions and display (UI thread)

    def regions(self) -> list[RegionInfo]:
        return list(self.taxonomy.regions.values())

    def region_display_name(self, region: str) -> str:
        info = self.taxonomy.regions.get(region)
        return info.display_name if info else region

    def colors_for(self, names: dict[int, str]) -> dict[int, tuple[int, int, int]]:
        return {i: self.taxonomy.color_of(n) for i, n in names.items()}

    def structure_display_name(self, name: str) -> str:
        return self.taxonomy.display_name_of(name)

    def window_presets(self, loaded: LoadedScan | None) -> dict[str, tuple[float, float]]:
        """Taxonomy presets, plus those from the DICOM header of the loaded scan."""
        presets = {k.replace("_", " ").capitalize(): v for k, v in self.taxonomy.windows.items()}
        meta = getattr(loaded.scan, "meta", {}) if loaded is not None else {}
        for name, value in _dicom_windows(meta).items():
            presets[name] = value
        return presets

    def default_window(self, loaded: LoadedScan, region: str | None) -> tuple[float, float]:
        if loaded.modality != "CT":
            lo, hi = np.percentile(loaded.array[:: max(1, loaded.array.shape[0] // 16)], [1, 99])
            return float(max(hi - lo, 1.0)), float((hi + lo) / 2)
        info = self.taxonomy.regions.get(region or "")
        name = info.default_window if info else "soft_tissue"
        return self.taxonomy.windows.get(name, (350.0, 40.0))

    # ---------------------------------------------------------------- scans (worker)

    def load(self, path: str | Path, ctx=None) -> LoadedScan:
        """worker: read a scan and suggest its region."""
        path = Path(path)
        _report(ctx, 0, 3, f"Reading {path.name}")
        load_scan = _core_function("load_scan") or _fallback("load_scan")
        try:
            scan = load_scan(path)
        except LorkdError:
            raise
        except (OSError, RuntimeError, ValueError, MemoryError) as exc:
            raise ScanError(f"cannot be read ({type(exc).__name__}: {exc})", path) from exc
        _cancel_point(ctx)
        _report(ctx, 2, 3, "Suggesting a region")
        region = self.suggest_region(scan)
        _report(ctx, 3, 3, "Loaded")
        return LoadedScan(scan, region, path)

    def suggest_region(self, scan: Any) -> str | None:
        """worker: lorkd_core's suggestion when available, else a coarse intensity heuristic."""
        try:
            from lorkd_core.engine.region_suggest import suggest_region
        except ImportError:
            return _heuristic_region(scan)
        try:
            found = suggest_region(scan)
        except LorkdError:
            return _heuristic_region(scan)
        region = getattr(found, "region", found)
        if isinstance(region, tuple):
            region = region[0]
        return region if region in self.taxonomy.regions else _heuristic_region(scan)

    def load_label_map(self, path: str | Path, like: LoadedScan) -> tuple[np.ndarray, dict[int, str]]:
        """worker: a saved label map and its names (used to reopen a saved result)."""
        load_label_map = _core_function("load_label_map")
        if load_label_map is None:
            import SimpleITK as sitk

            from .fallback_io import load_label_names

            labels = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.int16)
            if labels.shape != like.array.shape:
                raise ScanError(f"label map is {labels.shape[::-1]} but the scan is {like.array.shape[::-1]}", path)
            return labels, load_label_names(Path(path))
        lm = load_label_map(path, like.scan)
        names = getattr(lm, "names", None) or getattr(lm, "label_names", None) or {}
        return np.asarray(lm.array), {int(k): str(v) for k, v in names.items()}

    # ---------------------------------------------------------------- models

    def set_model_dirs(self, dirs: Sequence[str | Path]) -> None:
        self._model_dirs = [Path(d) for d in dirs]

    def register_model(self, info: ModelInfo, runner: Runner) -> None:
        """Offer a model that runs through ``runner`` instead of lorkd_core's Predictor."""
        with self._lock:
            self._registered[info.id] = (info, runner)

    def unregister_model(self, model_id: str) -> None:
        with self._lock:
            self._registered.pop(model_id, None)

    def list_models(self) -> list[ModelInfo]:
        """worker (the catalog reads model cards with torch-backed code)."""
        with self._lock:
            models = [info for info, _ in self._registered.values()]
        try:
            from lorkd_core.engine.catalog import list_models
        except ImportError:
            return models
        entries = list_models(self._model_dirs, include_bundled=self._include_bundled)
        return models + [_model_info(e) for e in entries]

    @staticmethod
    def models_for(models: Sequence[ModelInfo], region: str, modality: str | None) -> list[ModelInfo]:
        """Models valid for a region and modality, region experts first, then user experts, then the teacher."""
        order = {"expert": 0, "experts-set": 0, "user": 1, "teacher": 2, "baseline": 3}
        ok = [m for m in models if m.region == region and (modality is None or _modality_ok(m.modality, modality))]
        return sorted(ok, key=lambda m: (order.get(m.kind, 9), m.task != "segmentation", m.name))

    def run_model(self, loaded: LoadedScan, model: ModelInfo, ctx=None) -> Result:
        """worker: segment or classify the scan, with per-structure measurements for a segmentation."""
        start = time.perf_counter()
        with self._lock:
            registered = self._registered.get(model.id)
        if registered is not None:
            raw = registered[1](loaded.scan, ctx)
        else:
            raw = self._predict(loaded, model, ctx)
        _cancel_point(ctx)
        seconds = time.perf_counter() - start
        if model.task == "classification" or hasattr(raw, "probabilities"):
            saliency = getattr(raw, "saliency", None)
            return ClassificationResult({str(k): float(v) for k, v in raw.probabilities.items()},
                                        None if saliency is None else np.asarray(saliency, dtype=np.float32),
                                        model.id, model.region, seconds)
        labels = np.asarray(raw.labels).astype(np.int16, copy=False)
        if labels.shape != loaded.array.shape:
            raise ModelError(f"{model.name} returned a {labels.shape} label map for a {loaded.array.shape} scan")
        names = {int(k): str(v) for k, v in (getattr(raw, "label_names", None) or model.label_names).items()}
        result = SegmentationResult(labels, names, model.id, model.region, seconds=seconds)
        result.stats = stats_mod.structure_stats(labels, loaded.array, loaded.spacing, names)
        return result

    def _predict(self, loaded: LoadedScan, model: ModelInfo, ctx) -> Any:
        try:
            from lorkd_core.engine.inference import Predictor
        except ImportError as exc:
            raise ModelError("inference is not available in this build (lorkd_core.engine.inference is missing)",
                             model.path) from exc
        device = ctx.device if ctx is not None else "cpu"
        key = str(device)
        if key not in self._predictors:
            self._predictors = {key: Predictor(device)}  # a device switch drops the old cache
        predictor = self._predictors[key]
        progress = ctx.progress if ctx is not None else None
        cancel = ctx.cancel if ctx is not None else None
        if model.task == "classification":
            return predictor.classify(loaded.scan, model.entry, progress=progress, cancel=cancel)
        return predictor.segment(loaded.scan, model.entry, progress=progress, cancel=cancel)

    # ---------------------------------------------------------------- outputs (worker)

    def save_label_map(self, path: str | Path, loaded: LoadedScan, result: SegmentationResult,
                       model: ModelInfo) -> Path:
        path = _with_suffix(Path(path), ".nii.gz")
        provenance = {"model": model.id, "model_name": model.name, "region": result.region}
        save_label_map = _core_function("save_label_map") or _fallback("save_label_map")
        return Path(save_label_map(path, result.labels, loaded.scan, result.label_names, **provenance))

    def save_dicom_seg(self, path: str | Path, loaded: LoadedScan, result: SegmentationResult,
                       model: ModelInfo) -> Path:
        save_dicom_seg = _core_function("save_dicom_seg")
        if save_dicom_seg is None:
            raise ScanError("DICOM SEG export is not available in this build yet", path)
        out = save_dicom_seg(Path(path), result.labels, loaded.scan, result.label_names, model=model.name)
        return Path(out) if out is not None else Path(path)

    def save_report(self, path: str | Path, loaded: LoadedScan, result: Result, model: ModelInfo,
                    compare: list[VolumeChange] | None = None, compare_model: ModelInfo | None = None) -> Path:
        return write_report(path, build_report(loaded, result, model, compare, compare_model))

    # ---------------------------------------------------------------- the demo case

    def demo_source(self) -> Path | None:
        """The bundled demo scan, if the package ships one."""
        try:
            from lorkd_resources import resource_path
        except ImportError:
            return None
        folder = resource_path("demo")
        if not folder.is_dir():
            return None
        for name in ("ct.nii.gz", "demo.nii.gz", "scan.nii.gz", "image.nii.gz"):
            if (folder / name).is_file():
                return folder / name
        scans = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(SCAN_SUFFIXES)
                       and "seg" not in p.name and "label" not in p.name)
        if scans:
            return scans[0]
        dicom = [p for p in folder.iterdir() if p.is_dir()]
        return dicom[0] if dicom else None

    def make_demo_phantom(self, out_dir: Path, ctx=None) -> Path:
        """worker: write an abdomen phantom when no demo scan is bundled (lorkd_core.data.phantoms)."""
        try:
            from lorkd_core.data import phantoms
        except ImportError as exc:
            raise ScanError("no demo case is bundled and the phantom generator is not available") from exc
        _report(ctx, 0, 1, "Generating a demo phantom")
        return _write_phantom(phantoms, out_dir)


# ---------------------------------------------------------------- helpers


def _core_function(name: str, modules: Sequence[str] = ("lorkd_core.io", "lorkd_core.io.writers")) -> Any:
    """A lorkd_core function wherever it is exported, or None while it is not written yet."""
    import importlib

    for module in modules:
        try:
            fn = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if fn is not None:
            return fn
    return None


def _fallback(name: str) -> Any:
    from . import fallback_io

    return getattr(fallback_io, name)


def _report(ctx, step: int, total: int, message: str) -> None:
    if ctx is not None:
        ctx.report(step, total, message)


def _cancel_point(ctx) -> None:
    if ctx is not None:
        ctx.cancel.raise_if_cancelled("task")


def _modality_ok(model_modality: str, scan_modality: str) -> bool:
    accepted = {m.strip().upper() for m in str(model_modality or "CT").replace("/", ",").split(",")}
    return scan_modality.upper() in accepted or "ANY" in accepted or scan_modality.upper() == "OT"


def _with_suffix(path: Path, suffix: str) -> Path:
    return path if path.name.endswith((".nii.gz", ".nii")) else path.with_name(path.name + suffix)


def _heuristic_region(scan: Any) -> str | None:
    modality = str(getattr(scan, "modality", "")).upper()
    if modality == "MR":
        return "brain"
    if modality != "CT":
        return None
    arr = np.asarray(scan.array)
    z, y, x = arr.shape
    core = arr[:, y // 4: 3 * y // 4, x // 4: 3 * x // 4][:: max(1, z // 32), ::4, ::4]
    lung = float(((core > -950) & (core < -600)).mean())
    return "thorax" if lung > 0.2 else "abdomen"


def _dicom_windows(meta: dict[str, Any]) -> dict[str, tuple[float, float]]:
    raw = meta.get("window_presets") or meta.get("windows")
    out: dict[str, tuple[float, float]] = {}
    if isinstance(raw, dict):
        items = raw.items()
    elif isinstance(raw, list):
        items = ((v.get("name") if isinstance(v, dict) and v.get("name") else f"{i + 1}", v)
                 for i, v in enumerate(raw))
    else:
        items = ()
    for name, value in items:
        try:
            if isinstance(value, dict):
                width, level = float(value["width"]), float(value.get("level", value.get("center")))
            else:
                width, level = (float(v) for v in value)
            out[f"DICOM {name}"] = (width, level)
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _model_info(entry: Any) -> ModelInfo:
    card = getattr(entry, "card", None)
    experts = getattr(card, "experts", None)
    ranks = ""
    if experts is not None and getattr(experts, "ranks", None):
        rank = experts.ranks.get(entry.region)
        ranks = f"rank {rank} ({entry.region})" if rank is not None else ""
    elif card is not None and isinstance(card.extra.get("rank"), int):
        ranks = f"rank {card.extra['rank']}"
    training = dict(getattr(card, "training", {}) or {})
    train_text = str(training.get("data", "")) or "not recorded"
    cases = training.get("cases")
    if isinstance(cases, dict) and cases.get(entry.region) is not None:
        train_text += f" · {cases[entry.region]} {entry.region} cases"
    elif isinstance(cases, int):
        train_text += f" · {cases} cases"
    if training.get("steps"):
        train_text += f" · {training['steps']} steps"
    return ModelInfo(id=entry.id, name=entry.display_name, kind=entry.kind, task=entry.task, region=entry.region,
                     modality=entry.modality, parameters=int(entry.parameters or 0), ranks=ranks,
                     training=train_text, dice=entry.dice, label_names=dict(entry.label_names),
                     path=Path(entry.path), bundled=bool(getattr(entry, "bundled", False)), entry=entry)


def _write_phantom(phantoms: Any, out_dir: Path) -> Path:
    manifest = Path(phantoms.write_phantom_dataset(out_dir, 1, ["abdomen"], seed=0, size=96, findings=False))
    scans = sorted(manifest.parent.glob("cases/*/ct.nii.gz"))
    if not scans:
        raise ScanError("the phantom generator did not produce a scan", out_dir)
    return scans[0]
