"""Suggest the body region of a scan.

1. A small 2D CNN on coarse canonical projections (8 mm voxels, mean intensity along each axis, a fixed
   512 mm field of view so physical size is kept), trained on phantoms with :func:`train_region_classifier`
   and bundled as ``resources/region_suggest/`` (``region_suggest.json`` + ``.safetensors``). It is only
   asked about modalities it was trained on (the phantoms are CT).
2. Without those weights, a teacher's label content (:func:`suggest_from_teacher`) when one is given.
3. Otherwise a heuristic from modality, lung air and body size.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lorkd_core.engine.model_card import REGION_ORDER
from lorkd_core.errors import DatasetError, ModelError
from lorkd_core.progress import CancelToken, ProgressCallback, report

FORMAT = "lorkd-region-suggest/1"
VOXEL_MM = 8.0
SIZE = 64  # pixels per projection: 512 mm field of view
NETWORK = {"name": "lorkd.SmallCNN", "kwargs": {"spatial_dims": 2, "in_channels": 4, "channels": [8, 16, 32, 32]}}


@dataclass(frozen=True)
class RegionSuggestion:
    region: str
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)
    method: str = "heuristic"  # classifier | teacher | heuristic


@dataclass(frozen=True)
class SuggestAccuracy:
    accuracy: float
    per_region: dict[str, float]
    cases: int
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)


def bundled_weights() -> Path:
    from lorkd_resources import resource_path

    return resource_path("region_suggest", "region_suggest.json")


# ---------------------------------------------------------------- features


@dataclass(frozen=True)
class CoarseVolume:
    """A scan at 8 mm in canonical orientation, intensities normalised (CT: HU / 1000)."""

    array: np.ndarray  # (z, y, x) float32
    is_mr: bool
    outside: float  # the value of "nothing there" (air for CT)


def coarse_volume(scan: Any) -> CoarseVolume:
    from lorkd_core.io import normalize_mr, to_canonical

    array, _ = to_canonical(scan, spacing=VOXEL_MM)
    if scan.modality == "CT":
        return CoarseVolume((np.clip(array, -1000.0, 1000.0) / 1000.0).astype(np.float32), False, -1.0)
    vol = (normalize_mr(array) / 3.0).astype(np.float32)
    return CoarseVolume(vol, True, float(vol.min()) if vol.size else 0.0)


def project(coarse: CoarseVolume, z_range: tuple[int, int] | None = None) -> np.ndarray:
    """(4, 64, 64) float32: mean projections along z, y and x (optionally of a z slab), plus an MR flag."""
    vol = coarse.array if z_range is None else coarse.array[z_range[0]:z_range[1]]
    planes = [vol.mean(axis=a) for a in range(3)]  # (y, x), (z, x), (z, y)
    out = np.zeros((4, SIZE, SIZE), np.float32)
    for c, plane in enumerate(planes):
        out[c] = _center(plane, fill=coarse.outside)
    out[3] = 1.0 if coarse.is_mr else 0.0
    return out


def scan_features(scan: Any) -> np.ndarray:
    """The classifier's input for a scan (see :func:`project`)."""
    return project(coarse_volume(scan))


def _center(plane: np.ndarray, fill: float) -> np.ndarray:
    out = np.full((SIZE, SIZE), fill, np.float32)
    src, dst = [], []
    for n in plane.shape:
        if n >= SIZE:
            a = (n - SIZE) // 2
            src.append(slice(a, a + SIZE))
            dst.append(slice(0, SIZE))
        else:
            a = (SIZE - n) // 2
            src.append(slice(0, n))
            dst.append(slice(a, a + n))
    out[tuple(dst)] = plane[tuple(src)]
    return out


# ---------------------------------------------------------------- classifier


class _Classifier:
    """The loaded suggestion network (CPU; a few milliseconds per scan)."""

    def __init__(self, meta: dict[str, Any], model: Any) -> None:
        self.meta = meta
        self.model = model
        self.regions = list(meta["regions"])

    def scores(self, features: np.ndarray) -> dict[str, float]:
        import torch

        with torch.inference_mode():
            probs = torch.softmax(self.model(torch.from_numpy(features)[None]), dim=1)[0]
        return {r: float(p) for r, p in zip(self.regions, probs)}


_LOADED: dict[tuple[str, int], _Classifier] = {}


def load_classifier(path: str | Path | None = None) -> _Classifier:
    """The classifier described by ``region_suggest.json`` (default: the bundled one); ModelError if absent."""
    meta_path = Path(path) if path is not None else bundled_weights()
    if meta_path.is_dir():
        meta_path = meta_path / "region_suggest.json"
    if not meta_path.is_file():
        raise ModelError("no region-suggestion classifier (train one with train_region_classifier)", meta_path)
    key = (str(meta_path.resolve()), meta_path.stat().st_mtime_ns)
    if key in _LOADED:
        return _LOADED[key]
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the classifier description ({exc})", meta_path) from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("regions"), list):
        raise ModelError(f"not a region-suggestion description (format {FORMAT})", meta_path)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from lorkd_core.engine.model_card import load_state_checked
    from lorkd_core.engine.networks import build_network

    weights = meta_path.with_suffix(".safetensors")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"not a readable safetensors file ({exc})", weights) from exc
    model = build_network(meta.get("network", NETWORK), out_channels=len(meta["regions"]))
    load_state_checked(model, state, weights)
    classifier = _Classifier(meta, model.float().eval())
    _LOADED[key] = classifier
    return classifier


# ---------------------------------------------------------------- suggestion


def suggest_region(scan: Any, *, weights: str | Path | None = None, teacher: Any = None,
                   predictor: Any = None) -> RegionSuggestion:
    """The most likely region of ``scan``: classifier, else ``teacher`` (a ModelEntry), else heuristic."""
    try:
        classifier = load_classifier(weights)
    except ModelError:
        if weights is not None:
            raise
        classifier = None
    trained_on = classifier.meta.get("modalities") if classifier is not None else None
    if classifier is not None and (not trained_on or scan.modality in trained_on):
        scores = classifier.scores(scan_features(scan))
        best = max(scores, key=scores.__getitem__)
        return RegionSuggestion(best, scores[best], scores, "classifier")
    if teacher is not None:
        return suggest_from_teacher(scan, teacher, predictor)
    return heuristic_region(scan)


def suggest_from_teacher(scan: Any, teacher: Any, predictor: Any = None) -> RegionSuggestion:
    """The region whose structures fill most of the teacher's segmentation (volume-weighted vote)."""
    from lorkd_core.engine.inference import Predictor, Preprocessing, prepare_scan
    from lorkd_core.engine.model_card import teacher_channels

    card = teacher.card
    if card.kind != "teacher" or card.task != "segmentation":
        raise ModelError("region suggestion needs a segmentation teacher", card.path)
    predictor = predictor or Predictor("cpu")
    union = card.labels.get("union") or {}
    pre = Preprocessing.of(card)
    array, _ = prepare_scan(scan, pre)
    net = predictor.prepare(teacher).teacher  # the whole union label space, not one region's view
    logits = predictor.predict_logits(net, array, pre)
    counts = np.bincount(logits.argmax(dim=1).flatten().numpy(), minlength=max(union, default=0) + 1)
    scores: dict[str, float] = {}
    for region in card.regions:
        try:
            channels, _ = teacher_channels(card, region)
        except ModelError:
            continue
        scores[region] = float(sum(counts[c] for c in channels if c < len(counts)))
    total = sum(scores.values())
    if total <= 0:
        return heuristic_region(scan)
    scores = {r: v / total for r, v in scores.items()}
    best = max(scores, key=scores.__getitem__)
    return RegionSuggestion(best, scores[best], scores, "teacher")


def heuristic_region(scan: Any) -> RegionSuggestion:
    """Coarse rules: MR -> brain; CT with much lung air -> thorax; a narrow body -> brain/limb; else abdomen."""
    from lorkd_core.io import to_canonical

    if scan.modality != "CT":
        return RegionSuggestion("brain", 0.5, {"brain": 0.5}, "heuristic")
    array, _ = to_canonical(scan, spacing=VOXEL_MM)
    body = array > -300
    if not body.any():
        return RegionSuggestion("abdomen", 0.2, {"abdomen": 0.2}, "heuristic")
    zs, ys, xs = np.nonzero(body)
    box = array[zs.min():zs.max() + 1, ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    lung = float(((box > -950) & (box < -600)).mean())
    width_mm = (xs.max() - xs.min() + 1) * VOXEL_MM
    bone = float((box > 300).mean())
    if lung > 0.15:
        return RegionSuggestion("thorax", 0.6, {"thorax": 0.6}, "heuristic")
    if width_mm < 220:
        region = "brain" if bone > 0.08 else "upper_limb" if width_mm < 120 else "head_neck"
        return RegionSuggestion(region, 0.4, {region: 0.4}, "heuristic")
    return RegionSuggestion("abdomen", 0.4, {"abdomen": 0.4}, "heuristic")


# ---------------------------------------------------------------- training and accuracy


def _volumes_of(items: Sequence[Any], cancel: CancelToken | None, progress: ProgressCallback | None,
                what: str) -> tuple[list[CoarseVolume], np.ndarray]:
    from lorkd_core.io import load_scan

    vols, labels = [], []
    for n, item in enumerate(items):
        if cancel is not None:
            cancel.raise_if_cancelled("region classifier training")
        report(progress, n, len(items), f"{what}: {item.case_id or item.image.name}")
        vols.append(coarse_volume(load_scan(item.image, modality=item.modality)))
        labels.append(REGION_ORDER.index(item.region))
    return vols, np.asarray(labels, np.int64)


def train_region_classifier(manifest: str | Path, out: str | Path | None = None, *, steps: int = 400,
                            batch_size: int = 16, lr: float = 3e-3, seed: int = 0,
                            progress: ProgressCallback | None = None,
                            cancel: CancelToken | None = None) -> tuple[Path, SuggestAccuracy]:
    """Train the suggestion CNN on the manifest's train cases, test it on its test cases, write the weights.

    ``out`` defaults to the bundled location. Returns the description path and the held-out accuracy.
    """
    import torch

    from lorkd_core.atomic import atomic_path, write_json_atomic
    from lorkd_core.data.manifest import read_manifest
    from lorkd_core.engine.networks import build_network

    items = [it for it in read_manifest(manifest) if it.region in REGION_ORDER]
    train = [it for it in items if it.split != "test"]
    test = [it for it in items if it.split == "test"]
    if not train:
        raise DatasetError("no training cases for the region classifier", manifest)
    start = time.perf_counter()
    vols, y = _volumes_of(train, cancel, progress, "reading")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_network(NETWORK, out_channels=len(REGION_ORDER))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps))
    model.train()
    for step in range(steps):
        if cancel is not None:
            cancel.raise_if_cancelled("region classifier training")
        idx = rng.integers(0, len(vols), size=min(batch_size, max(1, len(vols))))
        xb = torch.from_numpy(np.stack([_augment(vols[i], rng) for i in idx]))
        loss = torch.nn.functional.cross_entropy(model(xb), torch.from_numpy(y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        report(progress, step + 1, steps, "training the region classifier", loss=float(loss.detach()))
    model.eval()
    meta_path = Path(out) if out is not None else bundled_weights()
    if meta_path.suffix != ".json":
        meta_path = meta_path / "region_suggest.json"
    from safetensors.torch import save_file

    with atomic_path(meta_path.with_suffix(".safetensors"), suffix=".safetensors") as tmp:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    meta = {"format": FORMAT, "regions": list(REGION_ORDER), "network": NETWORK,
            "modalities": sorted({it.modality for it in train}),
            "input": {"voxel_mm": VOXEL_MM, "size": SIZE, "channels": ["mean_z", "mean_y", "mean_x", "is_mr"]},
            "training": {"data": str(manifest), "cases": len(train), "steps": steps, "seed": seed,
                         "seconds": round(time.perf_counter() - start, 1)}}
    write_json_atomic(meta_path, meta)
    accuracy = evaluate_region_classifier(manifest, meta_path, items=test) if test else SuggestAccuracy(
        float("nan"), {}, 0)
    meta["accuracy"] = {"held_out": accuracy.accuracy, "per_region": accuracy.per_region, "cases": accuracy.cases}
    write_json_atomic(meta_path, meta)
    return meta_path, accuracy


def evaluate_region_classifier(manifest: str | Path, weights: str | Path | None = None, *,
                               items: Sequence[Any] | None = None, split: str = "test") -> SuggestAccuracy:
    """Accuracy of :func:`suggest_region` on the manifest's held-out cases (per region and overall)."""
    from lorkd_core.data.manifest import read_manifest
    from lorkd_core.io import load_scan

    if items is None:
        items = [it for it in read_manifest(manifest) if it.split == split and it.region in REGION_ORDER]
    if not items:
        raise DatasetError(f"no held-out cases (split '{split}')", manifest)
    confusion: dict[str, dict[str, int]] = {}
    for item in items:
        found = suggest_region(load_scan(item.image, modality=item.modality), weights=weights).region
        row = confusion.setdefault(item.region, {})
        row[found] = row.get(found, 0) + 1
    per_region = {r: row.get(r, 0) / sum(row.values()) for r, row in confusion.items()}
    correct = sum(row.get(r, 0) for r, row in confusion.items())
    return SuggestAccuracy(correct / len(items), per_region, len(items), confusion)


def _augment(coarse: CoarseVolume, rng: np.random.Generator) -> np.ndarray:
    """Features of a random z slab (half the time: real scans are often short, e.g. 40 mm of upper abdomen),
    shifted by up to 4 px (32 mm), with intensity scale/offset and noise; the MR flag channel is kept."""
    nz = coarse.array.shape[0]
    z_range = None
    if nz > 4 and rng.random() < 0.5:
        length = int(rng.integers(4, nz + 1))
        start = int(rng.integers(0, nz - length + 1))
        z_range = (start, start + length)
    out = project(coarse, z_range)
    dy, dx = (int(v) for v in rng.integers(-4, 5, size=2))
    out[:3] = np.roll(out[:3], (dy, dx), axis=(1, 2))
    out[:3] = out[:3] * rng.uniform(0.9, 1.1) + rng.uniform(-0.05, 0.05)
    out[:3] += rng.normal(0, 0.02, size=out[:3].shape).astype(np.float32)
    return out.astype(np.float32)
