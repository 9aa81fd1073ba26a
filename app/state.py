"""The one parameter object the panels share (Slicer style): every change is a signal, set twice is a no-op."""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import QObject, Signal

from .services.stats import volume_changes
from .services.types import (
    ClassificationResult,
    LoadedScan,
    ModelInfo,
    ModelProblem,
    SegmentationResult,
    VolumeChange,
)

Result = SegmentationResult | ClassificationResult


@dataclass
class Comparison:
    model: ModelInfo
    result: Result
    changes: list[VolumeChange] = field(default_factory=list)


class StudioState(QObject):
    scan_changed = Signal(object)  # LoadedScan | None
    region_changed = Signal(str)
    suggested_region_changed = Signal(str)
    catalog_changed = Signal(list)  # every known ModelInfo
    model_problems_changed = Signal(list)  # ModelProblem: model folders left out of the catalog
    offered_changed = Signal(list)  # ModelInfo valid for the region and modality
    model_changed = Signal(str)  # model id, "" for none
    result_changed = Signal(object)  # Result | None
    comparison_changed = Signal(object)  # Comparison | None

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.scan: LoadedScan | None = None
        self.region: str = ""
        self.suggested_region: str = ""
        self.catalog: list[ModelInfo] = []
        self.model_problems: list[ModelProblem] = []
        self.offered: list[ModelInfo] = []
        self.model_id: str = ""
        self.result: Result | None = None
        self.comparison: Comparison | None = None

    @property
    def model(self) -> ModelInfo | None:
        return self.find_model(self.model_id)

    def find_model(self, model_id: str) -> ModelInfo | None:
        return next((m for m in self.catalog if m.id == model_id), None)

    def set_scan(self, scan: LoadedScan | None) -> None:
        self.scan = scan
        self.set_result(None)
        self.set_comparison(None)
        self.scan_changed.emit(scan)

    def set_region(self, region: str) -> None:
        if region != self.region:
            self.region = region
            self.set_comparison(None)
            self.region_changed.emit(region)

    def set_suggested_region(self, region: str) -> None:
        if region != self.suggested_region:
            self.suggested_region = region
            self.suggested_region_changed.emit(region)

    def set_catalog(self, models: list[ModelInfo]) -> None:
        self.catalog = list(models)
        self.catalog_changed.emit(self.catalog)

    def set_model_problems(self, problems: list[ModelProblem]) -> None:
        if list(problems) != self.model_problems:
            self.model_problems = list(problems)
            self.model_problems_changed.emit(self.model_problems)

    def set_offered(self, models: list[ModelInfo]) -> None:
        # the models themselves, not their ids: a re-evaluated model keeps its id but shows a new Dice
        if list(models) != self.offered:
            self.offered = list(models)
            self.offered_changed.emit(self.offered)

    def set_model(self, model_id: str) -> None:
        if model_id != self.model_id:
            self.model_id = model_id
            self.model_changed.emit(model_id)

    def set_result(self, result: Result | None) -> None:
        self.result = result
        self.result_changed.emit(result)
        if self.comparison is not None:
            self._refresh_changes(self.comparison)
            self.comparison_changed.emit(self.comparison)

    def set_comparison(self, comparison: Comparison | None) -> None:
        if comparison is None and self.comparison is None:
            return
        if comparison is not None:
            self._refresh_changes(comparison)
        self.comparison = comparison
        self.comparison_changed.emit(comparison)

    def _refresh_changes(self, comparison: Comparison) -> None:
        a, b = self.result, comparison.result
        if isinstance(a, SegmentationResult) and isinstance(b, SegmentationResult):
            comparison.changes = volume_changes(a.stats, b.stats)
        else:
            comparison.changes = []
