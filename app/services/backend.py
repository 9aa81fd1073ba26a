"""The facade over lorkd_core: the only module of the app that calls it.

Methods marked "worker" must only run inside a TorchWorker task. The lorkd_core modules they need
(scan I/O loads SimpleITK; inference and the region classifier load torch) are imported inside them, so
the window opens on Qt alone; the rest are cheap and safe on the UI thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lorkd_core.errors import LorkdError, ModelError, ScanError
from lorkd_core.regions import distinct_colors, load_taxonomy

from . import stats as stats_mod
from .report import build_report, write_report
from .types import (
    ClassificationResult,
    LoadedScan,
    ModelInfo,
    ModelProblem,
    RegionInfo,
    SegmentationResult,
    VolumeChange,
)

if TYPE_CHECKING:
    from lorkd_core.io import Scan

LOG = logging.getLogger(__name__)

Result = SegmentationResult | ClassificationResult
# A model the app runs without lorkd_core's Predictor (test doubles, in-process job outputs): (scan, ctx) -> result
Runner = Callable[[Any, Any], Any]
SCAN_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".dcm", ".png", ".jpg", ".jpeg")


class Backend:
    def __init__(self, model_dirs: Sequence[str | Path] = (), *, include_bundled: bool = True) -> None:
        self.taxonomy = load_taxonomy()
        self._model_dirs = [Path(d) for d in model_dirs]
        self._include_bundled = include_bundled
        self._registered: dict[str, tuple[ModelInfo, Runner]] = {}
        self._lock = threading.Lock()
        self._predictors: dict[str, Any] = {}  # worker thread only: one Predictor (and its expert cache) per device

    # ---------------------------------------------------------------- regions and display (UI thread)

    def regions(self) -> list[RegionInfo]:
        return [RegionInfo(r.name, r.display_name, tuple(r.structures)) for r in self.taxonomy.regions.values()]

    def region_display_name(self, region: str) -> str:
        info = self.taxonomy.regions.get(region)
        return info.display_name if info else region

    def colors_for(self, names: dict[int, str]) -> dict[int, tuple[int, int, int]]:
        """Overlay colours of a whole label set (see lorkd_core.regions.distinct_colors)."""
        return distinct_colors(names)

    def structure_display_name(self, name: str) -> str:
        display = self.taxonomy.display_name_of(name)
        return display[:1].upper() + display[1:]

    def window_presets(self, loaded: LoadedScan | None) -> dict[str, tuple[float, float]]:
        """Taxonomy presets, plus those from the DICOM header of the loaded scan."""
        presets = {k.replace("_", " ").capitalize(): v for k, v in self.taxonomy.windows.items()}
        for window in loaded.scan.meta.get("windows", []) if loaded is not None else []:
            presets[f"DICOM {window['name']}"] = (float(window["width"]), float(window["level"]))
        return presets

    def default_window(self, loaded: LoadedScan, region: str | None) -> tuple[float, float]:
        if loaded.modality != "CT":
            lo, hi = np.percentile(loaded.array[:: max(1, loaded.array.shape[0] // 16)], [1, 99])
            return float(max(hi - lo, 1.0)), float((hi + lo) / 2)
        info = self.taxonomy.regions.get(region or "")
        return info.default_window if info else self.taxonomy.windows["soft_tissue"]

    # ---------------------------------------------------------------- scans (worker)

    def load(self, path: str | Path, ctx=None) -> LoadedScan:
        """worker: read a scan and suggest its region."""
        from lorkd_core.io import load_scan

        path = Path(path)
        _report(ctx, 0, 3, f"Reading {path.name}")
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

    def suggest_region(self, scan: Scan) -> str | None:
        """worker: lorkd_core's suggestion (its classifier, else its heuristic). A suggestion is a convenience,
        so no failure may stop the scan from opening: any error of the classifier falls back to the heuristic
        (as ``lorkd info`` carries on without it), and when even that cannot run (a grid too large to
        resample) there is no suggestion and the user picks the region."""
        from lorkd_core.engine.region_suggest import heuristic_region, suggest_region

        for suggest in (suggest_region, heuristic_region):
            try:
                return suggest(scan).region
            except LorkdError as exc:  # an expected, user-level problem: one line is enough
                LOG.info("%s: %s", suggest.__name__, exc)
            except Exception:  # a bug or a broken classifier: keep the traceback for the log
                LOG.warning("%s failed on %s", suggest.__name__, scan.path, exc_info=True)
        return None

    def load_label_map(self, path: str | Path, like: LoadedScan) -> tuple[np.ndarray, dict[int, str]]:
        """worker: a saved label map and its names (used to reopen a saved result)."""
        from lorkd_core.io import load_label_map

        label_map = load_label_map(path, like.scan)
        return label_map.array, dict(label_map.names)

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

    def read_catalog(self) -> tuple[list[ModelInfo], list[ModelProblem]]:
        """worker (reads every model card): the selectable models, and the model folders left out with why."""
        from lorkd_core.engine.catalog import read_catalog

        with self._lock:
            models = [info for info, _ in self._registered.values()]
        catalog = read_catalog(self._model_dirs, include_bundled=self._include_bundled)
        problems = [ModelProblem(b.folder, b.error.problem) for b in catalog.problems]
        return models + [ModelInfo.from_entry(e) for e in catalog.entries], problems

    def list_models(self) -> list[ModelInfo]:
        """worker: the selectable models (folders with a broken card are left out; see ``read_catalog``)."""
        return self.read_catalog()[0]

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
        if model.task == "classification":
            saliency = raw.saliency
            return ClassificationResult({str(k): float(v) for k, v in raw.probabilities.items()},
                                        None if saliency is None else np.asarray(saliency, dtype=np.float32),
                                        model.id, model.region, seconds)
        labels = np.asarray(raw.labels).astype(np.int16, copy=False)
        if labels.shape != loaded.array.shape:
            raise ModelError(f"{model.name} returned a {labels.shape} label map for a {loaded.array.shape} scan")
        names = {int(k): str(v) for k, v in raw.label_names.items()}
        result = SegmentationResult(labels, names, model.id, model.region, seconds=seconds)
        result.stats = stats_mod.structure_stats(labels, loaded.array, loaded.spacing, names)
        return result

    def _predict(self, loaded: LoadedScan, model: ModelInfo, ctx) -> Any:
        from lorkd_core.engine.inference import Predictor  # torch: on the worker thread only

        if model.entry is None:
            raise ModelError(f"{model.name} has neither a model folder nor a registered runner", model.path)
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
        """worker: NIfTI on the scan's grid plus its sidecar JSON (``.nii.gz`` added when the name lacks it)."""
        from lorkd_core.io import save_label_map

        return save_label_map(path, result.labels, loaded.scan, result.label_names,
                              model=model.id, model_name=model.name, region=result.region)

    def save_dicom_seg(self, path: str | Path, loaded: LoadedScan, result: SegmentationResult,
                       model: ModelInfo) -> Path:
        from lorkd_core.io import save_dicom_seg

        return save_dicom_seg(path, result.labels, loaded.scan, result.label_names, model=model.name)

    def save_report(self, path: str | Path, loaded: LoadedScan, result: Result, model: ModelInfo,
                    compare: list[VolumeChange] | None = None, compare_model: ModelInfo | None = None) -> Path:
        return write_report(path, build_report(loaded, result, model, compare, compare_model))

    # ---------------------------------------------------------------- the demo case

    def demo_source(self) -> Path | None:
        """The bundled demo scan, if the package ships one."""
        from lorkd_resources import resource_path

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
        from lorkd_core.data.phantoms import write_phantom_dataset

        _report(ctx, 0, 1, "Generating a demo phantom")
        manifest = Path(write_phantom_dataset(out_dir, 1, ["abdomen"], seed=0, size=96, findings=False))
        scans = sorted(manifest.parent.glob("cases/*/ct.nii.gz"))
        if not scans:
            raise ScanError("the phantom generator did not produce a scan", out_dir)
        return scans[0]


# ---------------------------------------------------------------- helpers


def _report(ctx, step: int, total: int, message: str) -> None:
    if ctx is not None:
        ctx.report(step, total, message)


def _cancel_point(ctx) -> None:
    if ctx is not None:
        ctx.cancel.raise_if_cancelled("task")


def _modality_ok(model_modality: str, scan_modality: str) -> bool:
    accepted = {m.strip().upper() for m in str(model_modality or "CT").replace("/", ",").split(",")}
    return scan_modality.upper() in accepted or "ANY" in accepted or scan_modality.upper() == "OT"

