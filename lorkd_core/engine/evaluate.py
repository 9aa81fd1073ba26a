"""``lorkd evaluate``: teacher vs. region experts vs. no-expert baseline on held-out cases.

Segmentation: Dice and NSD (MONAI's DiceMetric / SurfaceDiceMetric, tolerance in mm) per structure on
the scan's own grid, averaged per region. Classification: accuracy and one-vs-rest AUC per region, a case
without a finding being class "none" as in training (:func:`finding_class`). Plus
parameters, file size and CPU latency of each model per region. Writes Markdown and CSV, records the
metrics into each model card and returns an :class:`EvaluationResult` the app can show.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from lorkd_core.atomic import write_text_atomic
from lorkd_core.engine.catalog import ModelEntry, card_version, list_models
from lorkd_core.engine.data_loading import NO_FINDING
from lorkd_core.engine.model_card import REGION_ORDER, WEIGHTS_NAME, update_metrics
from lorkd_core.errors import DatasetError, ModelError
from lorkd_core.progress import CancelToken, ProgressCallback, report

MODEL_ORDER = ("teacher", "experts", "baseline")
_METRIC_NAMES = {"dice": "Dice", "nsd": "NSD", "accuracy": "Acc", "auc": "AUC"}
_NO_FINDING_ALIAS = "normal"  # what hand-made classifier cards (and an old model_card docstring) call "none"
_CARD_KIND = {"teacher": "teacher", "experts": "experts", "expert": "experts", "baseline": "baseline"}


@dataclass(frozen=True)
class StructureScore:
    model: str
    region: str
    structure: str
    dice: float
    nsd: float
    cases: int


@dataclass(frozen=True)
class RegionScore:
    """One model on one region: mean over structures (segmentation) or over cases (classification)."""

    model: str
    region: str
    cases: int
    dice: float = math.nan
    nsd: float = math.nan
    accuracy: float = math.nan
    auc: float = math.nan
    parameters: int = 0
    file_bytes: int = 0
    latency_ms: float = math.nan


@dataclass
class EvaluationResult:
    task: str
    models: list[str]
    regions: list[str]
    region_scores: list[RegionScore]
    structure_scores: list[StructureScore]
    tolerance_mm: float
    cases: int
    markdown_path: Path | None = None
    csv_path: Path | None = None
    device: str = "cpu"
    warnings: list[str] = field(default_factory=list)

    def score(self, model: str, region: str) -> RegionScore | None:
        return next((s for s in self.region_scores if s.model == model and s.region == region), None)

    def mean(self, model: str, metric: str = "dice") -> float:
        values = [getattr(s, metric) for s in self.region_scores if s.model == model]
        values = [v for v in values if not math.isnan(v)]
        return float(np.mean(values)) if values else math.nan


# ---------------------------------------------------------------- metrics


def structure_metrics(pred: np.ndarray, truth: np.ndarray, pairs: Sequence[tuple[int, int]],
                      spacing_zyx: Sequence[float], tolerance_mm: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Dice and NSD per structure; ``pairs`` = [(id in ``pred``, id in ``truth``)], arrays (z, y, x).

    NaN where the structure is absent from both; 0 where it is in only one of them.
    """
    import torch
    from monai.metrics import DiceMetric, SurfaceDiceMetric

    n = len(pairs)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    p = torch.from_numpy(np.stack([pred == a for a, _ in pairs]))
    t = torch.from_numpy(np.stack([truth == b for _, b in pairs]))
    p = torch.cat([~p.any(0, keepdim=True), p])[None].float()
    t = torch.cat([~t.any(0, keepdim=True), t])[None].float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dice = DiceMetric(include_background=False, reduction="none", ignore_empty=True)(p, t)[0].numpy()
        nsd = SurfaceDiceMetric([float(tolerance_mm)] * n, include_background=False, reduction="none")(
            p, t, spacing=[float(s) for s in spacing_zyx])[0].numpy()
    pred_any, truth_any = p[0, 1:].flatten(1).any(1).numpy(), t[0, 1:].flatten(1).any(1).numpy()
    # MONAI gives NaN when the truth is empty; a structure predicted where there is none scores 0.
    dice = np.where(~truth_any & pred_any, 0.0, dice)
    nsd = np.where(~truth_any & pred_any, 0.0, nsd)
    return dice.astype(float), nsd.astype(float)


def roc_auc(scores: Sequence[float], positives: Sequence[bool]) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties averaged); NaN without both classes."""
    s = np.asarray(scores, float)
    y = np.asarray(positives, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), float)
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


# ---------------------------------------------------------------- evaluation


def find_models(models_dir: str | Path) -> dict[str, list[ModelEntry]]:
    """Entries of the teacher, experts and baseline found in a decomposition output folder."""
    entries = list_models([models_dir], include_bundled=False, strict=True)
    found: dict[str, list[ModelEntry]] = {}
    for e in entries:
        found.setdefault(_CARD_KIND[e.card.kind], []).append(e)
    if not found:
        raise ModelError("no models found (expected teacher/, experts/ and baseline/ with card.json)", models_dir)
    # an exported single expert only fills regions the experts set does not cover
    experts = found.get("experts", [])
    seen: set[str] = set()
    found_experts = []
    for e in sorted(experts, key=lambda e: (e.card.kind != "experts", -card_version(e.card))):
        if e.region not in seen:
            seen.add(e.region)
            found_experts.append(e)
    if experts:
        found["experts"] = found_experts
    if "teacher" not in found:  # decompose without copy_teacher: the experts card names the teacher
        for e in experts[:1]:
            ref = e.card.training.get("teacher")
            folder = (e.path / ref) if isinstance(ref, str) and ref else None
            if folder is not None and (folder / "card.json").is_file():
                found["teacher"] = list_models([folder], include_bundled=False, strict=True)
    return {k: found[k] for k in MODEL_ORDER if k in found}


def evaluate_models(models_dir: str | Path, manifest: str | Path, out: str | Path | None = None, *,
                    tolerance_mm: float = 2.0, latency_runs: int = 3, device: str = "cpu", split: str = "test",
                    record: bool = True, progress: ProgressCallback | None = None,
                    cancel: CancelToken | None = None) -> EvaluationResult:
    """Evaluate every model in ``models_dir`` on the ``split`` cases of ``manifest``; see the module doc."""
    from lorkd_core.data.manifest import read_manifest
    from lorkd_core.engine.inference import Predictor

    models_dir = Path(models_dir)
    models = find_models(models_dir)
    tasks = {e.task for entries in models.values() for e in entries}
    if len(tasks) != 1:
        raise ModelError(f"the models mix tasks ({', '.join(sorted(tasks))}); evaluate one task at a time",
                         models_dir)
    task = tasks.pop()
    items = [it for it in read_manifest(manifest) if it.split == split]
    covered = {e.region for entries in models.values() for e in entries}
    items = [it for it in items if it.region in covered]
    if task == "segmentation":
        items = [it for it in items if it.label is not None]
    if not items:
        raise DatasetError(f"no held-out cases (split '{split}') for the models' regions "
                           f"({', '.join(sorted(covered))})", manifest)
    regions = [r for r in REGION_ORDER if any(it.region == r for it in items)]
    by_model = {name: {e.region: e for e in entries} for name, entries in models.items()}
    predictor = Predictor(device, cache_size=len(by_model) * len(regions) + 1, models_cached=len(by_model))
    seg: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    cls: dict[tuple[str, str], list[tuple[dict[str, float], str]]] = {}
    first_case: dict[str, Any] = {}
    steps = len(items) + len(by_model)
    for n, item in enumerate(items):
        _check(cancel)
        report(progress, n, steps, f"case {item.case_id or item.image.name}")
        scan, truth = _load_case(item, task)
        first_case.setdefault(item.region, scan)
        for name, entries in by_model.items():
            entry = entries.get(item.region)
            if entry is None:
                continue
            if task == "segmentation":
                _score_segmentation(predictor, scan, truth, item, entry, name, tolerance_mm, seg, cancel)
            else:
                result = predictor.classify(scan, entry, cancel=cancel, saliency=False)
                cls.setdefault((name, item.region), []).append((training_classes(result.probabilities),
                                                                finding_class(item.finding)))
    stats: dict[tuple[str, str], tuple[int, int, float]] = {}
    for k, name in enumerate(by_model):
        _check(cancel)
        report(progress, len(items) + k, steps, f"size and latency ({name})")
        # latency once per model, on the first case of the first region it covers: the per-region
        # variants of one model share the network and differ only in their small heads
        first = next(r for r in regions if r in by_model[name])
        latency = _latency(predictor, by_model[name][first], first_case[first], task, latency_runs, cancel)
        for region in regions:
            if region in by_model[name]:
                stats[(name, region)] = (*_size(predictor, by_model[name][region]), latency)
    counts = {r: sum(1 for it in items if it.region == r) for r in regions}
    result = _assemble(task, list(by_model), regions, counts, seg, cls, stats, tolerance_mm, len(items))
    result.device = str(predictor.device)
    out = Path(out) if out is not None else models_dir / "evaluation.md"
    write_reports(result, out, title=str(models_dir), data=str(manifest), latency_runs=latency_runs)
    if record:
        _record(result, models, str(manifest), split)
    report(progress, steps, steps, f"wrote {result.markdown_path}")
    return result


def finding_class(finding: str | None) -> str:
    """The class a manifest finding is scored as: a null finding is ``NO_FINDING`` ("none"), the name the
    phantoms and training (lorkd_core.engine.data_loading) give the class."""
    return finding or NO_FINDING


def training_classes(probabilities: dict[str, float]) -> dict[str, float]:
    """A model's class probabilities under the training names: a model that calls the no-finding class
    "normal" (and has no "none") is scored as if it said "none"."""
    if NO_FINDING in probabilities or _NO_FINDING_ALIAS not in probabilities:
        return probabilities
    return {(NO_FINDING if c == _NO_FINDING_ALIAS else c): p for c, p in probabilities.items()}


def _check(cancel: CancelToken | None) -> None:
    if cancel is not None:
        cancel.raise_if_cancelled("evaluation")


def _load_case(item: Any, task: str) -> tuple[Any, Any]:
    from lorkd_core.io import load_label_map, load_scan

    scan = load_scan(item.image, modality=item.modality)
    truth = load_label_map(item.label, like=scan) if task == "segmentation" else None
    return scan, truth


def _score_segmentation(predictor: Any, scan: Any, truth: Any, item: Any, entry: ModelEntry, name: str,
                        tolerance_mm: float, seg: dict, cancel: CancelToken | None) -> None:
    result = predictor.segment(scan, entry, cancel=cancel)
    truth_names = item.label_names()
    pred_ids = {v: k for k, v in result.label_names.items()}
    structures = [(s, i) for i, s in sorted(truth_names.items()) if s != "background"]
    # a structure the model does not know is scored against an empty prediction (id -1 never occurs)
    pairs = [(pred_ids.get(s, -1), i) for s, i in structures]
    spacing_zyx = tuple(reversed(scan.spacing))
    dice, nsd = structure_metrics(result.labels, truth.array, pairs, spacing_zyx, tolerance_mm)
    for (s, _), d, v in zip(structures, dice, nsd):
        seg.setdefault((name, item.region, s), []).append((float(d), float(v)))


def _size(predictor: Any, entry: ModelEntry) -> tuple[int, int]:
    """Parameters and bytes of the model as used for this region (a merged expert: what an export writes)."""
    module = predictor.prepare(entry)
    params = int(sum(p.numel() for p in module.parameters()))
    if entry.card.kind == "experts":
        return params, int(sum(t.numel() * t.element_size() for t in module.state_dict().values()))
    return params, (entry.path / WEIGHTS_NAME).stat().st_size


def _latency(predictor: Any, entry: ModelEntry, scan: Any, task: str, runs: int, cancel: CancelToken | None) -> float:
    """Median wall time in ms of ``runs`` predictions on ``scan`` (model already loaded and cached)."""
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        if task == "segmentation":
            predictor.segment(scan, entry, cancel=cancel)
        else:
            predictor.classify(scan, entry, cancel=cancel, saliency=False)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(statistics.median(times))


def _nanmean(values: Sequence[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def _assemble(task: str, models: list[str], regions: list[str], counts: dict[str, int], seg: dict, cls: dict,
              stats: dict, tolerance_mm: float, n_cases: int) -> EvaluationResult:
    structure_scores = [StructureScore(m, r, s, _nanmean([d for d, _ in v]), _nanmean([n for _, n in v]), len(v))
                        for (m, r, s), v in seg.items()]
    region_scores = []
    for region in regions:
        for model in models:
            if (model, region) not in stats:
                continue
            params, nbytes, latency = stats[(model, region)]
            extra: dict[str, float] = {}
            if task == "segmentation":
                rows = [s for s in structure_scores if s.model == model and s.region == region]
                extra = {"dice": _nanmean([s.dice for s in rows]), "nsd": _nanmean([s.nsd for s in rows])}
            else:
                extra = _classification_scores(cls.get((model, region), []))
            region_scores.append(RegionScore(model, region, counts[region], parameters=params, file_bytes=nbytes,
                                             latency_ms=latency, **extra))
    return EvaluationResult(task, models, regions, region_scores, structure_scores, tolerance_mm, n_cases)


def _classification_scores(rows: list[tuple[dict[str, float], str]]) -> dict[str, float]:
    if not rows:
        return {}
    classes = sorted({c for probs, _ in rows for c in probs} | {truth for _, truth in rows})
    accuracy = float(np.mean([max(probs, key=probs.__getitem__) == truth for probs, truth in rows]))
    aucs = [roc_auc([probs.get(c, 0.0) for probs, _ in rows], [truth == c for _, truth in rows]) for c in classes]
    return {"accuracy": accuracy, "auc": _nanmean(aucs)}


# ---------------------------------------------------------------- reports


def _fmt(value: float, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def render_markdown(result: EvaluationResult, *, title: str = "", data: str = "", latency_runs: int = 3) -> str:
    """The evaluation report as Markdown: per-region table, sizes and latency, per-structure table."""
    models = result.models
    lines = [f"# Evaluation{': ' + title if title else ''}", ""]
    what = "Dice / NSD" if result.task == "segmentation" else "accuracy / AUC"
    lines += [f"{result.cases} held-out cases{' from ' + data if data else ''}. Metrics: {what}"
              + (f" (NSD tolerance {result.tolerance_mm:g} mm)" if result.task == "segmentation" else "")
              + f"; latency: median of {latency_runs} runs per model on one case ({result.device}).", ""]
    metrics = ("dice", "nsd") if result.task == "segmentation" else ("accuracy", "auc")
    header = ["Region", "Cases"] + [f"{m.title()} {_METRIC_NAMES[k]}" for k in metrics for m in models]
    lines += ["## Per region", "", _row(header), _row(["---"] * len(header))]
    for region in result.regions:
        cells = [region, str(next((s.cases for s in result.region_scores if s.region == region), 0))]
        for k in metrics:
            cells += [_fmt(getattr(result.score(m, region), k, math.nan)) for m in models]
        lines.append(_row(cells))
    mean_cells = ["**Mean**", str(result.cases)] + [_fmt(result.mean(m, k)) for k in metrics for m in models]
    lines += [_row(mean_cells), ""]
    lines += ["## Size and speed", "", _row(["Region", "Model", "Parameters", "Size (MB)", f"Latency on {result.device} (ms)"]),
              _row(["---"] * 5)]
    for s in result.region_scores:
        lines.append(_row([s.region, s.model, f"{s.parameters:,}", f"{s.file_bytes / 1e6:.2f}", _fmt(s.latency_ms, 1)]))
    lines.append("")
    if result.structure_scores:
        header = ["Region", "Structure"] + [f"{m.title()} {_METRIC_NAMES[k]}" for k in ("dice", "nsd") for m in models]
        lines += ["## Per structure", "", _row(header), _row(["---"] * len(header))]
        seen = list(dict.fromkeys((s.region, s.structure) for s in result.structure_scores))  # label order
        keys = sorted(seen, key=lambda k: (REGION_ORDER.index(k[0]) if k[0] in REGION_ORDER else 99, seen.index(k)))
        index = {(s.model, s.region, s.structure): s for s in result.structure_scores}
        for region, structure in keys:
            cells = [region, structure]
            for k in ("dice", "nsd"):
                cells += [_fmt(getattr(index.get((m, region, structure)), k, math.nan)) for m in models]
            lines.append(_row(cells))
        lines.append("")
    lines += [f"_Generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by `lorkd evaluate`._", ""]
    return "\n".join(lines)


def render_csv(result: EvaluationResult) -> str:
    """One row per (model, region) ("region" level) and per (model, region, structure)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["level", "model", "region", "structure", "cases", "dice", "nsd", "accuracy", "auc",
                     "parameters", "file_bytes", "latency_ms"])
    for s in result.region_scores:
        writer.writerow(["region", s.model, s.region, "", s.cases, _csv(s.dice), _csv(s.nsd), _csv(s.accuracy),
                         _csv(s.auc), s.parameters, s.file_bytes, _csv(s.latency_ms)])
    for t in result.structure_scores:
        writer.writerow(["structure", t.model, t.region, t.structure, t.cases, _csv(t.dice), _csv(t.nsd),
                         "", "", "", "", ""])
    return buf.getvalue()


def write_reports(result: EvaluationResult, out: str | Path, **kwargs: Any) -> tuple[Path, Path]:
    """Write ``out`` (Markdown) and the CSV beside it (same name, ``.csv``), both atomically."""
    md = Path(out)
    if md.suffix.lower() != ".md":
        md = md.with_name(md.name + ".md")
    csv_path = md.with_suffix(".csv")
    write_text_atomic(md, render_markdown(result, **kwargs))
    write_text_atomic(csv_path, render_csv(result))
    result.markdown_path, result.csv_path = md, csv_path
    return md, csv_path


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _csv(value: float) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.6g}"


def _record(result: EvaluationResult, models: dict[str, list[ModelEntry]], data: str, split: str) -> None:
    """Write each model's figures into its card's "metrics" (per region), keeping other regions' values."""
    folders: dict[Path, list[RegionScore]] = {}
    for name, entries in models.items():
        for e in entries:
            score = result.score(name, e.region)
            if score is not None:
                folders.setdefault(e.path, []).append(score)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    per_structure: dict[tuple[str, str], dict[str, float]] = {}
    for s in result.structure_scores:
        per_structure.setdefault((s.model, s.region), {})[s.structure] = _json_float(s.dice)
    for folder, scores in folders.items():
        try:
            from lorkd_core.engine.model_card import read_card

            old = read_card(folder).metrics
            new: dict[str, Any] = {}
            keys = ("dice", "nsd") if result.task == "segmentation" else ("accuracy", "auc")
            for key in (*keys, "parameters", "file_bytes", "latency_ms"):
                merged = dict(old.get(key) or {}) if isinstance(old.get(key), dict) else {}
                merged.update({s.region: _json_float(getattr(s, key)) for s in scores})
                new[key] = merged
            if result.task == "segmentation":
                merged = dict(old.get("dice_per_structure") or {})
                merged.update({s.region: per_structure.get((s.model, s.region), {}) for s in scores})
                new["dice_per_structure"] = merged
            new["evaluation"] = {"data": data, "split": split, "date": stamp, "tolerance_mm": result.tolerance_mm,
                                 "cases": {s.region: s.cases for s in scores}}
            update_metrics(folder, new)
        except (OSError, ModelError) as exc:
            result.warnings.append(f"{folder}: metrics not recorded ({exc})")


def _json_float(value: float | int) -> float | int | None:
    if isinstance(value, int):
        return value
    return None if value is None or math.isnan(value) else round(float(value), 6)
