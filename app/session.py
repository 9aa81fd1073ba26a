"""What the app does, without widgets: open scans, pick region and expert, run, compare, save.

Every step that touches lorkd_core runs as a TorchWorker task; results come back as state changes on
the UI thread. Panels and the main window only call these methods and listen to the state.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from .services.backend import Backend
from .services.core import LorkdError
from .services.settings import AppSettings
from .services.types import LoadedScan, ModelInfo, ModelProblem, SegmentationResult
from .services.worker import TaskHandle, TorchWorker
from .state import Comparison, StudioState


class Session(QObject):
    failed = Signal(str, str, str)  # title, file, problem
    message = Signal(str)  # one line for the status bar
    loading = Signal(str)  # path being opened
    saved = Signal(str)  # path written
    no_model = Signal(str)  # region for which nothing can run
    demo_unavailable = Signal(str)  # why no demo case could be opened

    def __init__(self, settings: AppSettings, backend: Backend | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.backend = backend or Backend(settings.model_dirs)
        self.worker = TorchWorker(settings.device, self)
        self.state = StudioState(self)
        # Screenshot mode and the command line pin these instead of the suggestion / default expert.
        self.region_override: str | None = None
        self.model_override: str | None = None
        self.auto_run = True
        self._demo_dir: tempfile.TemporaryDirectory | None = None
        self.state.region_changed.connect(self._update_offered)
        self.state.catalog_changed.connect(self._update_offered)
        self.state.model_changed.connect(self._on_model_changed)

    # ---------------------------------------------------------------- scans

    def open_path(self, path: str | Path) -> TaskHandle:
        path = Path(path)
        self.loading.emit(str(path))
        return self.worker.submit(f"Opening {path.name}", lambda ctx: self.backend.load(path, ctx), key="load",
                                  on_result=self._on_loaded,
                                  on_error=lambda exc: self._fail(f"Could not open {path.name}", path, exc))

    def open_demo(self) -> TaskHandle:
        demo = self.backend.demo_source()
        if demo is not None:
            return self.open_path(demo)
        self._demo_dir = self._demo_dir or tempfile.TemporaryDirectory(prefix="lorkd-demo-")
        out = Path(self._demo_dir.name)

        def make(ctx) -> LoadedScan:
            return self.backend.load(self.backend.make_demo_phantom(out, ctx), ctx)

        def unavailable(exc: BaseException) -> None:
            self.demo_unavailable.emit(str(exc))
            self.message.emit("No demo case available: open a scan with File > Open or drop one here")

        return self.worker.submit("Preparing the demo case", make, key="load", on_result=self._on_loaded,
                                  on_error=unavailable)

    def _on_loaded(self, loaded: LoadedScan) -> None:
        if loaded.source.exists() and not _is_temporary(loaded.source):
            self.settings.add_recent(loaded.source)
            self.settings.last_dir = loaded.source.resolve().parent
        self.state.set_scan(loaded)
        self.state.set_suggested_region(loaded.suggested_region or "")
        region = self.region_override or loaded.suggested_region or self.state.region or "abdomen"
        if region == self.state.region:
            self._update_offered()
        else:
            self.state.set_region(region)
        # Overrides from the command line apply to the first scan only.
        self.region_override = self.model_override = None
        name = "the demo case" if _is_temporary(loaded.source) else loaded.source.name
        self.message.emit(f"Opened {name}: {loaded.modality}, "
                          f"{'x'.join(str(s) for s in loaded.array.shape[::-1])} voxels")

    # ---------------------------------------------------------------- models

    def refresh_models(self) -> TaskHandle:
        self.backend.set_model_dirs(self.settings.model_dirs)
        return self.worker.submit("Finding models", lambda ctx: self.backend.read_catalog(), key="catalog",
                                  on_result=self._on_catalog,
                                  on_error=lambda exc: self._fail("Could not list the models", None, exc))

    def _on_catalog(self, found: tuple[list[ModelInfo], list[ModelProblem]]) -> None:
        models, problems = found
        self.state.set_model_problems(problems)
        self.state.set_catalog(models)

    def register_model(self, info: ModelInfo, runner) -> TaskHandle:
        """Offer a model that runs through ``runner`` (e.g. a job's in-process output, or a test double)."""
        self.backend.register_model(info, runner)
        return self.refresh_models()

    def set_device(self, device: str) -> None:
        self.settings.device = device
        self.worker.set_device_preference(device)

    def _update_offered(self, *_args) -> None:
        scan = self.state.scan
        offered = self.backend.models_for(self.state.catalog, self.state.region,
                                          scan.modality if scan is not None else None)
        self.state.set_offered(offered)
        ids = [m.id for m in offered]
        wanted = match_model(self.model_override, offered) if self.model_override else None
        if wanted is not None:
            choice = wanted
        elif self.state.model_id in ids:
            choice = self.state.model_id
        else:
            choice = ids[0] if ids else ""
        if choice != self.state.model_id:
            self.state.set_model(choice)  # runs through _on_model_changed
        elif scan is not None and self.state.result is None and choice:
            self._auto_run()
        if scan is not None and not offered and self.state.region:
            self.no_model.emit(self.state.region)

    def _on_model_changed(self, model_id: str) -> None:
        if model_id:
            self._auto_run()
        else:
            self.worker.cancel_key("inference")
            self.state.set_result(None)

    def _auto_run(self) -> None:
        if self.auto_run and self.state.scan is not None:
            self.run_model()

    # ---------------------------------------------------------------- inference

    def run_model(self, model_id: str | None = None) -> TaskHandle | None:
        """Run the selected expert (or ``model_id``) on the loaded scan; replaces a run still in progress."""
        scan, model = self.state.scan, self.state.find_model(model_id or self.state.model_id)
        if scan is None or model is None:
            return None
        return self.worker.submit(f"Running {model.name}", lambda ctx: self.backend.run_model(scan, model, ctx),
                                  key="inference", on_result=self._on_result,
                                  on_error=lambda exc: self._fail(f"{model.name} failed", None, exc),
                                  on_cancelled=lambda: self.message.emit(f"{model.name}: cancelled"))

    def _on_result(self, result) -> None:
        if self.state.scan is None or result.model_id != self.state.model_id:
            return  # superseded by a newer scan or expert
        self.state.set_result(result)
        model = self.state.model
        self.message.emit(f"{model.name if model else result.model_id}: done in {result.seconds:.2f} s")

    def compare_with(self, model_id: str) -> TaskHandle | None:
        scan, model = self.state.scan, self.state.find_model(model_id)
        if scan is None or model is None:
            return None
        return self.worker.submit(f"Comparing with {model.name}",
                                  lambda ctx: self.backend.run_model(scan, model, ctx), key="compare",
                                  on_result=lambda r: self._on_compare(model, r),
                                  on_error=lambda exc: self._fail(f"{model.name} failed", None, exc))

    def _on_compare(self, model: ModelInfo, result) -> None:
        if self.state.scan is not None and result.region == self.state.region:
            self.state.set_comparison(Comparison(model, result))

    def cancel_current(self) -> None:
        current = self.worker.current
        if current is not None:
            current.cancel()

    # ---------------------------------------------------------------- saving

    def save_label_map(self, path: str | Path, dicom_seg: bool = False) -> TaskHandle | None:
        scan, result, model = self.state.scan, self.state.result, self.state.model
        if scan is None or not isinstance(result, SegmentationResult) or model is None:
            self.message.emit("Nothing to save: run a segmentation expert first")
            return None
        writer = self.backend.save_dicom_seg if dicom_seg else self.backend.save_label_map
        return self.worker.submit("Saving the label map", lambda ctx: writer(path, scan, result, model),
                                  on_result=self._on_saved,
                                  on_error=lambda exc: self._fail("Could not save the label map", path, exc))

    def save_report(self, path: str | Path) -> TaskHandle | None:
        scan, result, model = self.state.scan, self.state.result, self.state.model
        if scan is None or result is None or model is None:
            self.message.emit("Nothing to report: run an expert first")
            return None
        comp = self.state.comparison
        changes, other = (comp.changes, comp.model) if comp is not None else (None, None)
        return self.worker.submit("Saving the report",
                                  lambda ctx: self.backend.save_report(path, scan, result, model, changes, other),
                                  on_result=self._on_saved,
                                  on_error=lambda exc: self._fail("Could not save the report", path, exc))

    def _on_saved(self, path) -> None:
        self.settings.last_dir = Path(path).parent
        self.saved.emit(str(path))
        self.message.emit(f"Saved {path}")

    # ---------------------------------------------------------------- errors and shutdown

    def _fail(self, title: str, path: str | Path | None, exc: BaseException) -> None:
        if isinstance(exc, LorkdError):
            where = exc.path or path
            problem = exc.problem
        else:
            where = path
            problem = f"{type(exc).__name__}: {exc}"
        self.failed.emit(title, "" if where is None else str(where), problem)

    def shutdown(self) -> bool:
        stopped = self.worker.shutdown()
        if self._demo_dir is not None:
            self._demo_dir.cleanup()
            self._demo_dir = None
        return stopped


def match_model(wanted: str, offered: list[ModelInfo]) -> str | None:
    """A model named on the command line: an id, a display name, a folder, or a kind like 'teacher'."""
    for m in offered:
        if wanted in (m.id, m.name) or (m.path is not None and str(m.path) == wanted):
            return m.id
    lowered = wanted.lower()
    for m in offered:
        if lowered == m.kind or lowered in m.name.lower() or (m.path is not None and m.path.name == wanted):
            return m.id
    return None


def _is_temporary(path: Path) -> bool:
    return str(path.resolve()).startswith(str(Path(tempfile.gettempdir()).resolve()) + "/lorkd-demo-")
