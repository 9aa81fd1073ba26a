"""The in-memory training set: every case preprocessed once, batches a pure function of (seed, step).

Cases are brought to the networks' canonical grid (LPS, (z, y, x) arrays, ``spacing`` in mm as (x, y, z))
and intensity-normalised with :mod:`lorkd_core.data.transforms` (the same preprocessing inference uses).
A batch slot's region is round-robin over the regions (``(step * batch + slot) % n_regions``), so every
batch of size >= 2 mixes regions; its case, crop and augmentation come from a generator seeded with
``(seed, step, slot)``. Augmentation is the shared MONAI pipeline of
:func:`lorkd_core.data.transforms.augmentations` (affine, intensity, noise, blur, low resolution; no
left-right flip), applied to a crop 1.25x the patch, seeded per sample. Resuming at step ``s`` therefore sees exactly the batches an uninterrupted run
would, and a distributed run's shards together make the single-process batch.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from lorkd_core.data.manifest import DatasetItem
from lorkd_core.engine.config import CROP_SAMPLING
from lorkd_core.errors import DatasetError
from lorkd_core.progress import CancelToken, ProgressCallback, report

NO_FINDING = "none"  # the phantoms' class for "no finding"; a manifest's null finding means the same
_MAX_FG_POINTS = 4096
_MAX_CLASS_POINTS = 1024  # per class, for class-balanced crops
_FG_CROP_PROB = 0.67
_AUG_MARGIN = 1.25  # crop this much larger before rotating/scaling, so no empty corners come in
# Real series are often a thin slab (e.g. 20 slices of 2 mm) continued to the patch with its edge slices at
# inference; this share of training patches is cut to such a slab (continued the same way) so that input is
# not out of distribution.
_SLAB_PROB = 0.15
_SLAB_MIN = 6  # voxels along z


def loader_processes() -> int:
    """Forked worker processes for batch samples (``LORKD_LOADER_PROCESSES``; 0 = threads only).

    MONAI's per-sample transforms hold the GIL for much of their time, so threads stop scaling after a few
    cores; on a many-core GPU machine worker processes keep the GPU fed (the DataLoader pattern: fork, one
    torch thread per worker, workers never touch CUDA)."""
    env = os.environ.get("LORKD_LOADER_PROCESSES", "")
    return int(env) if env.isdigit() else 0


def loader_threads() -> int:
    """Threads that load cases and build batch samples (each sample is independent and pure)."""
    env = os.environ.get("LORKD_LOADER_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(12, (os.cpu_count() or 1) - 1))


@dataclass
class Batch:
    image: torch.Tensor  # (b, 1, *patch) float32
    target: torch.Tensor  # (b, 1, *patch) long label maps, or (b,) class indices
    region_index: torch.Tensor  # (b,) index into TrainingSet.regions

    def to(self, device: torch.device) -> Batch:
        return Batch(self.image.to(device, non_blocking=True), self.target.to(device, non_blocking=True),
                     self.region_index.to(device))


@dataclass
class CachedCase:
    image: np.ndarray  # (z, y, x) float32, normalised
    label: np.ndarray | None  # (z, y, x) int16 in the region head's label ids
    region: str
    target: int
    case_id: str
    fg: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int32))
    # class-balanced crops: fg[bounds[k]:bounds[k + 1]] are the points of the k-th present class
    fg_bounds: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def region_label_sets(items: Sequence[DatasetItem]) -> dict[str, dict[int, str]]:
    """Each region's head labels: the union of its items' structure names, in taxonomy order, ids 1..n."""
    order = _taxonomy_order()
    names: dict[str, list[str]] = {}
    for item in items:
        bucket = names.setdefault(item.region, [])
        for name in item.label_names().values():
            if name not in bucket and name != "background":
                bucket.append(name)
    out = {}
    for region, found in names.items():
        ranked = order.get(region, [])
        ordered = [n for n in ranked if n in found] + sorted(n for n in found if n not in ranked)
        out[region] = {i + 1: n for i, n in enumerate(ordered)}
    return out


def region_class_sets(items: Sequence[DatasetItem]) -> dict[str, dict[int, str]]:
    """Each region's classification classes: ``none`` (no finding) first, then its findings sorted."""
    found: dict[str, set[str]] = {}
    for item in items:
        found.setdefault(item.region, set()).add(_finding(item))
    out = {}
    for region, classes in found.items():
        ordered = [NO_FINDING] * (NO_FINDING in classes) + sorted(classes - {NO_FINDING})
        out[region] = dict(enumerate(ordered))
    return out


def ordered_regions(present: Sequence[str]) -> list[str]:
    """Regions in the contract's order (docs/contracts.md), unknown names last."""
    from lorkd_core.engine.model_card import REGION_ORDER

    return [r for r in REGION_ORDER if r in present] + sorted(r for r in present if r not in REGION_ORDER)


class TrainingSet:
    """Preprocessed training cases of the chosen regions, with deterministic batch sampling."""

    def __init__(self, items: Sequence[DatasetItem], *, task: str, patch_size: Sequence[int],
                 spacing: Sequence[float], seed: int = 0, spatial_dims: int = 3, augment: float = 1.0,
                 regions: Sequence[str] | None = None, max_cases_per_region: int | None = None,
                 crop_sampling: str = "voxel", progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None) -> None:
        self.task = task
        self.patch = tuple(int(p) for p in patch_size)
        self.spacing = tuple(float(s) for s in spacing)
        self.seed = int(seed)
        self.spatial_dims = spatial_dims
        self.augment = float(augment)
        if crop_sampling not in CROP_SAMPLING:
            raise ValueError(f"crop_sampling must be one of {CROP_SAMPLING}, found {crop_sampling!r}")
        self.crop_sampling = crop_sampling
        self._local = threading.local()  # MONAI pipelines carry random state: one per thread
        self._pool: ThreadPoolExecutor | None = None
        self._procs: object | None = None  # ProcessPoolExecutor, made on the first batch when asked for
        chosen = [it for it in items if it.split == "train"] or list(items)
        if regions is not None:
            chosen = [it for it in chosen if it.region in regions]
        if task == "segmentation":
            chosen = [it for it in chosen if it.label is not None]
        if not chosen:
            raise DatasetError("no training cases with labels for the chosen task and regions")
        by_region: dict[str, list[DatasetItem]] = {}
        for it in chosen:
            by_region.setdefault(it.region, []).append(it)
        if max_cases_per_region:
            by_region = {r: its[:max_cases_per_region] for r, its in by_region.items()}
        self.regions = ordered_regions(list(by_region))
        flat = [it for r in self.regions for it in by_region[r]]
        self.labels = region_label_sets(flat) if task == "segmentation" else region_class_sets(flat)
        self.cases: dict[str, list[CachedCase]] = {r: [] for r in self.regions}
        total = len(flat)
        report(progress, 0, total, "loading the training data")
        loaded = self._executor().map(lambda it: None if _cancelled(cancel) else self._load(it), flat)
        for n, (item, case) in enumerate(zip(flat, loaded)):
            if cancel is not None:
                cancel.raise_if_cancelled("loading the training data")
            report(progress, n + 1, total, f"loaded {item.case_id or item.image.name}")
            self.cases[item.region].append(case)  # type: ignore[arg-type]
        report(progress, total, total, "training data loaded")
        self.items = flat

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=loader_threads(), thread_name_prefix="lorkd-data")
        return self._pool

    def _sampler(self):
        """The executor batches are built on: worker processes when configured, else the thread pool."""
        n = loader_processes()
        if n <= 0 or self.augment <= 0:
            return self._executor()
        if self._procs is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._procs = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("fork"),
                                              initializer=_init_sample_worker, initargs=(self,))
        return self._procs

    def close(self) -> None:
        for name in ("_pool", "_procs"):
            pool = getattr(self, name, None)
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
                setattr(self, name, None)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_pool"] = None
        state["_procs"] = None
        state["_local"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    # ------------------------------------------------------------------ loading

    def _load(self, item: DatasetItem) -> CachedCase:
        seg = self.task == "segmentation"
        image, label = load_case_arrays(item, self.spacing, with_label=item.label is not None)
        target = 0
        if seg:
            label = self._to_head_ids(item, label)  # type: ignore[arg-type]
            source = label
        else:
            names = {v: k for k, v in self.labels[item.region].items()}
            target = names[_finding(item)]
            source = None if label is None else _organ_mask(item, label)
            label = None
        bounds = np.zeros(0, np.int64)
        if seg and self.crop_sampling == "class" and source is not None:
            fg, bounds = _class_points(source)
        else:
            fg = np.argwhere(source > 0) if source is not None else np.zeros((0, 3), np.int64)
            if len(fg) > _MAX_FG_POINTS:
                fg = fg[np.random.default_rng(0).choice(len(fg), _MAX_FG_POINTS, replace=False)]
        return CachedCase(image=image.astype(np.float32), label=label, region=item.region, target=target,
                          case_id=item.case_id, fg=fg.astype(np.int32), fg_bounds=bounds)

    def _to_head_ids(self, item: DatasetItem, label: np.ndarray) -> np.ndarray:
        head = {name: i for i, name in self.labels[item.region].items()}
        lut = np.zeros(max([0, *item.label_names()]) + 1, dtype=np.int16)
        for i, name in item.label_names().items():
            lut[i] = head.get(name, 0)
        label = np.clip(label.astype(np.int64), 0, len(lut) - 1)
        return lut[label]

    # ------------------------------------------------------------------ sampling

    def counts(self) -> dict[str, int]:
        return {r: len(c) for r, c in self.cases.items()}

    def summary(self) -> dict[str, object]:
        return {"cases": self.counts(), "patch_size": list(self.patch), "spacing": list(self.spacing),
                "task": self.task}

    def region_of_slot(self, step: int, slot: int, batch_size: int) -> int:
        return (step * batch_size + slot) % len(self.regions)

    def sample(self, step: int, slot: int, batch_size: int) -> tuple[np.ndarray, np.ndarray | int, int]:
        """(image patch, target, region index) of one slot of one step; pure in (seed, step, slot)."""
        rng = np.random.default_rng([self.seed, step, slot])
        ridx = self.region_of_slot(step, slot, batch_size)
        cases = self.cases[self.regions[ridx]]
        case = cases[int(rng.integers(len(cases)))]
        if self.augment > 0 and self.spatial_dims == 3:
            crop = tuple(int(np.ceil(p * _AUG_MARGIN)) for p in self.patch)
            image, label = _crop(case, crop, rng, self.task, self.spatial_dims)
            image, label = self._augment(image, label, int(rng.integers(2**31 - 1)))
            if self.task == "segmentation" and rng.random() < _SLAB_PROB * min(1.0, self.augment):
                image, label = _thin_slab(image, label, rng)
        else:
            image, label = _crop(case, self.patch, rng, self.task, self.spatial_dims)
            if self.augment > 0:
                image = augment_patch(image, rng)
        return image, (label if label is not None else case.target), ridx

    def _augment(self, image: np.ndarray, label: np.ndarray | None, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The shared MONAI augmentation (lorkd_core.data.transforms), seeded per sample."""
        keys = ["image"] if label is None else ["image", "label"]
        cache = self._local.__dict__.setdefault("pipelines", {})
        if cache.get(len(keys)) is None:
            from monai.transforms import Compose

            from lorkd_core.data.transforms import augmentations

            cache[len(keys)] = Compose(augmentations(keys, "image", self.patch, self.augment))
        pipeline = cache[len(keys)]
        pipeline.set_random_state(seed=seed)
        item = {"image": torch.from_numpy(np.ascontiguousarray(image))[None]}
        if label is not None:
            item["label"] = torch.from_numpy(np.ascontiguousarray(label).astype(np.float32))[None]
        out = pipeline(item)
        img = _numpy(out["image"])[0].astype(np.float32)
        lab = None if label is None else np.rint(_numpy(out["label"])[0]).astype(np.int64)
        return img, lab

    def batch(self, step: int, batch_size: int, slots: Sequence[int] | None = None) -> Batch:
        """The slots ``slots`` (default: all) of step ``step``'s global batch of ``batch_size``."""
        slots = list(range(batch_size)) if slots is None else list(slots)
        images, targets, regions = [], [], []
        pool = self._sampler()
        if pool is self._pool:
            samples = pool.map(lambda slot: self.sample(step, slot, batch_size), slots)
        else:
            samples = pool.map(_sample_in_worker, [(step, slot, batch_size) for slot in slots])
        for img, tgt, r in samples:
            images.append(torch.from_numpy(np.ascontiguousarray(img))[None])
            targets.append(torch.from_numpy(np.ascontiguousarray(tgt))[None].long()
                           if isinstance(tgt, np.ndarray) else torch.tensor(tgt))
            regions.append(r)
        return Batch(torch.stack(images).float(), torch.stack(targets), torch.tensor(regions, dtype=torch.long))


def _crop(case: CachedCase, patch: tuple[int, ...], rng: np.random.Generator, task: str,
          spatial_dims: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A patch around a foreground voxel (segmentation: 2 of 3 draws), or anywhere; padded when small."""
    image, label = case.image, case.label
    if spatial_dims == 2:
        z = _pick_slice(case, rng)
        image = image[z]
        label = None if label is None else label[z]
    shape = image.shape
    use_fg = len(case.fg) > 0 and (task == "classification" or rng.random() < _FG_CROP_PROB)
    if use_fg:
        if len(case.fg_bounds) > 1:  # class-balanced: a present class first, then one of its voxels
            k = int(rng.integers(len(case.fg_bounds) - 1))
            point = case.fg[int(rng.integers(case.fg_bounds[k], case.fg_bounds[k + 1]))][-len(shape):]
        else:
            point = case.fg[int(rng.integers(len(case.fg)))][-len(shape):]
        if task == "classification":  # the organ's centre, jittered: the finding must stay in view
            point = case.fg.mean(axis=0)[-len(shape):] + rng.integers(-2, 3, size=len(shape))
        starts = [int(np.clip(int(c) - p // 2, 0, max(0, s - p))) for c, p, s in zip(point, patch, shape)]
    else:
        starts = [int(rng.integers(0, max(0, s - p) + 1)) for p, s in zip(patch, shape)]
    window = tuple(slice(a, a + p) for a, p in zip(starts, patch))
    img = _pad(image[window], patch, float(image.min()))
    lab = None if label is None else _pad(label[window], patch, 0)
    return img, lab


def _class_points(label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foreground points grouped by class (at most _MAX_CLASS_POINTS each) and the groups' offsets."""
    rng = np.random.default_rng(0)
    groups = []
    for c in np.unique(label):
        if c <= 0:
            continue
        pts = np.argwhere(label == c)
        if len(pts) > _MAX_CLASS_POINTS:
            pts = pts[rng.choice(len(pts), _MAX_CLASS_POINTS, replace=False)]
        groups.append(pts)
    if not groups:
        return np.zeros((0, label.ndim), np.int64), np.zeros(0, np.int64)
    bounds = np.cumsum([0] + [len(g) for g in groups]).astype(np.int64)
    return np.concatenate(groups), bounds


_WORKER_SET: TrainingSet | None = None


def _init_sample_worker(data: TrainingSet) -> None:
    global _WORKER_SET
    torch.set_num_threads(1)
    _WORKER_SET = data


def _sample_in_worker(args: tuple[int, int, int]):
    assert _WORKER_SET is not None
    return _WORKER_SET.sample(*args)


def _thin_slab(image: np.ndarray, label: np.ndarray | None,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Keep a random slab of z slices, like a short series, and continue it with copies of its first/last
    slice (image and label), as inference continues a series shorter than the patch (not with air)."""
    depth = image.shape[0]
    if depth <= _SLAB_MIN + 1:
        return image, label
    keep = int(rng.integers(_SLAB_MIN, max(_SLAB_MIN + 1, depth * 3 // 5)))
    start = int(rng.integers(0, depth - keep + 1))
    last = start + keep - 1
    image = image.copy()
    image[:start] = image[start]
    image[last + 1:] = image[last]
    if label is not None:  # a copied slice shows the same anatomy as the edge slice: so does its label
        label = label.copy()
        label[:start] = label[start]
        label[last + 1:] = label[last]
    return image, label


def _cancelled(cancel: CancelToken | None) -> bool:
    return cancel is not None and cancel.cancelled


def _numpy(x: object) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _pick_slice(case: CachedCase, rng: np.random.Generator) -> int:
    if len(case.fg):
        return int(case.fg[int(rng.integers(len(case.fg)))][0])
    return int(rng.integers(case.image.shape[0]))


def _pad(a: np.ndarray, patch: tuple[int, ...], value: float) -> np.ndarray:
    pads = [(0, max(0, p - s)) for p, s in zip(patch, a.shape)]
    if any(p[1] for p in pads):
        a = np.pad(a, pads, mode="constant", constant_values=value)
    return a


def _finding(item: DatasetItem) -> str:
    return item.finding if item.finding and item.finding != NO_FINDING else NO_FINDING


def _organ_mask(item: DatasetItem, label: np.ndarray) -> np.ndarray:
    """The organ a region's findings live in (phantom convention, e.g. the liver for the abdomen), else
    every labelled structure: classification crops are centred on it."""
    try:
        from lorkd_core.data.phantom_findings import FINDINGS
        prefixes = tuple(FINDINGS[item.region].organ_prefixes)
    except (ImportError, KeyError, AttributeError):
        prefixes = ()
    ids = [i for i, n in item.label_names().items() if prefixes and n.startswith(prefixes)]
    if ids:
        mask = np.isin(label, ids)
        if mask.any():
            return mask
    return label > 0


def load_case_arrays(item: DatasetItem, spacing: Sequence[float],
                     with_label: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Image (normalised float32) and label map (int16, the item's own ids) on the canonical grid."""
    import SimpleITK as sitk

    from lorkd_core.io import load_label_map, load_scan, to_canonical
    from lorkd_core.io.geometry import reorient_array

    scan = load_scan(item.image, modality=item.modality)
    image, grid = to_canonical(scan, tuple(float(s) for s in spacing))
    image = normalize_intensity(image, scan.modality)
    if not with_label or item.label is None:
        return image, None
    labels = load_label_map(item.label, like=scan).array
    labels = reorient_array(labels.astype(np.int16), grid.axes, grid.flips)
    if grid.resampled:
        ref = grid.grid.apply_to(sitk.Image([int(s) for s in grid.grid.size], sitk.sitkUInt8))
        moving = grid.oriented.apply_to(sitk.GetImageFromArray(labels))
        labels = sitk.GetArrayFromImage(sitk.Resample(moving, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    return image, labels.astype(np.int16)


def normalize_intensity(image: np.ndarray, modality: str) -> np.ndarray:
    """The network input scale: CT HU clipped to [-1000, 1000] / 1000; other modalities z-scored."""
    try:
        from lorkd_core.data.transforms import normalize_intensity as shared
    except ImportError:
        shared = None
    if shared is not None:
        return np.asarray(shared(image, modality), dtype=np.float32)
    if modality == "CT":
        return (np.clip(image, -1000.0, 1000.0) / 1000.0).astype(np.float32)
    from lorkd_core.io import normalize_mr

    return normalize_mr(image)


def augment_patch(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Intensity scale/shift, contrast (gamma-like) and noise; never a flip (left/right labels differ)."""
    scale = rng.uniform(0.9, 1.1)
    shift = rng.uniform(-0.08, 0.08)
    noise = rng.uniform(0.0, 0.04)
    out = image * scale + shift
    if noise > 0:
        out = out + rng.standard_normal(image.shape).astype(np.float32) * noise
    return out.astype(np.float32)


def _taxonomy_order() -> dict[str, list[str]]:
    try:
        from lorkd_core.regions import load_taxonomy
    except ImportError:  # pragma: no cover - the taxonomy ships with the package
        return {}
    return {name: list(region.structures) for name, region in load_taxonomy().regions.items()}
