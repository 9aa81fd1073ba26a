"""The training jobs' door to lorkd_core: job types and their configs, data preparation, preflight, the
engine runs, evaluation and the command line of a subprocess job. Qt-free.

Two job types: ``decompose`` (a teacher into region experts, lorkd_core.engine.train.decompose) and
``adapt`` (fine-tune one region's expert of an experts model on a small dataset, a new expert version,
lorkd_core.engine.adapt.adapt). Functions marked "worker" import torch or read many files: they run
inside a TorchWorker task; the rest are cheap enough for the UI thread.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorkd_core.engine.config import AdaptConfig, DecomposeConfig, JobConfig
from lorkd_core.errors import ModelError

JOB_TYPES: dict[str, type[JobConfig]] = {"decompose": DecomposeConfig, "adapt": AdaptConfig}
JOB_TITLES = {"decompose": "Decompose a teacher", "adapt": "Adapt an expert"}


def job_type_of(cfg: JobConfig) -> str:
    for name, cls in JOB_TYPES.items():
        if type(cfg) is cls:
            return name
    raise ValueError(f"not a job configuration the app can run: {type(cfg).__name__}")


def config_from_dict(job_type: str, data: dict[str, Any]) -> JobConfig:
    """The typed config of a stored job (raises ConfigError for a bad one, KeyError for an unknown type)."""
    return JOB_TYPES[job_type].from_dict(data)


# ---------------------------------------------------------------- models


def bundled_model(name: str) -> Path | None:
    """``resources/models/<name>`` when it holds a model card (teacher, experts, baseline)."""
    try:
        from lorkd_core.engine.catalog import bundled_models_dir

        folder = bundled_models_dir() / name
    except Exception:  # noqa: BLE001 - no bundled models at all
        return None
    return folder if (folder / "card.json").is_file() else None


def bundled_teacher() -> Path | None:
    return bundled_model("teacher")


def bundled_experts() -> Path | None:
    return bundled_model("experts")


@dataclass(frozen=True)
class ExpertsSource:
    """What the adapt dialog shows of the experts model a new version starts from."""

    folder: Path  # the folder holding card.json
    task: str
    regions: list[str]
    ranks: dict[str, int]
    labels: dict[str, dict[int, str]]
    version: int = 1
    spacing: tuple[float, ...] | None = None  # the resolution it was trained at (adapting keeps it)
    patch_size: tuple[int, ...] | None = None


def read_experts_source(path: str | Path) -> ExpertsSource:
    """An experts model (its folder, or a decomposition output holding ``experts/``); ModelError otherwise."""
    from lorkd_core.engine.model_card import read_card

    path = Path(path)
    folder = path / "experts" if (path / "experts" / "card.json").is_file() else path
    card = read_card(folder)
    if card.kind != "experts" or card.experts is None:
        raise ModelError(f"a '{card.kind}' model, not region experts: adapt needs an experts model "
                         "(a decomposition output)", folder)
    ranks = {r: int(card.experts.ranks[r]) for r in card.regions if r in card.experts.ranks}
    trained = card.training.get("config") if isinstance(card.training.get("config"), dict) else {}
    return ExpertsSource(folder, card.task, list(card.regions), ranks,
                         {r: card.label_names(r) for r in card.regions}, int(card.extra.get("version", 1)),
                         _numbers(trained.get("spacing"), float), _numbers(trained.get("patch_size"), int))


def _numbers(value: Any, kind: type) -> tuple | None:
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
        return tuple(kind(v) for v in value)
    return None


# ---------------------------------------------------------------- data


@dataclass
class DataCheck:
    """A dataset read for a job: the manifest to train on, cases per region, problems, label names per region."""

    manifest: str
    counts: dict[str, int]
    problems: list[str] = field(default_factory=list)
    labels: dict[str, dict[int, str]] = field(default_factory=dict)


def prepare_data(source: str, path: str, out: Path, *, phantom_cases: int = 4, phantom_size: int = 64,
                 regions: list[str] | None = None, ctx=None) -> DataCheck:
    """worker: read a data source for a job. ``phantoms`` are generated into the job folder (only
    ``regions`` when given); a TotalSegmentator / nnU-Net / MSD ``folder`` is imported into a manifest there."""
    from lorkd_core.data.datasets import import_dataset, summarize
    from lorkd_core.data.manifest import write_manifest

    progress = ctx.progress if ctx is not None else None
    cancel = ctx.cancel if ctx is not None else None
    if source == "phantoms":
        from lorkd_core.data.phantoms import write_phantom_dataset

        folder = out / ("data" if not regions else "data-" + "-".join(regions))
        manifest = folder / "manifest.jsonl"
        if not manifest.is_file():
            manifest = Path(write_phantom_dataset(folder, phantom_cases, regions, size=phantom_size,
                                                  progress=_prefixed(progress, "generating phantom"),
                                                  cancel=cancel))
        path = str(manifest)
    result = import_dataset(path, progress=progress, cancel=cancel)
    labels: dict[str, dict[int, str]] = {}
    for item in result.items:
        if item.region not in labels:
            names = item.label_names()
            if names:
                labels[item.region] = names
    if source == "folder" and result.items:
        path = str(write_manifest(out / "data" / "manifest.jsonl", result.items))
    return DataCheck(path, summarize(result.items), [str(p) for p in result.problems], labels)


def _prefixed(progress, prefix: str):
    """``progress`` with ``prefix`` before each report's message (None stays None)."""
    if progress is None:
        return None
    from lorkd_core.progress import Progress

    return lambda p: progress(Progress(p.step, p.total, f"{prefix} {p.message}".strip(), dict(p.metrics)))


def parse_ranks(text: str) -> int | str | dict[str, int] | None:
    """``4`` | ``proportional`` | ``abdomen=4,thorax=2`` (ConfigError otherwise), as ``lorkd decompose --ranks``."""
    from lorkd_core.commands.decompose import parse_ranks as core_parse_ranks

    return core_parse_ranks(text)


# ---------------------------------------------------------------- checks


@dataclass
class JobCheck:
    """The engine's preflight plus the checks the app adds: problems stop the job from starting."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    memory_bytes: int = 0


def preflight(cfg: JobConfig, *, world: int = 1) -> JobCheck:
    """worker (builds the network once for the memory estimate)."""
    from lorkd_core.engine.preflight import preflight as core_preflight

    pf = core_preflight(cfg, world=world)
    check = JobCheck(list(pf.problems), [], int(pf.memory_bytes))
    if isinstance(cfg, AdaptConfig):
        _check_adapt(cfg, check)
    return check


def _check_adapt(cfg: AdaptConfig, check: JobCheck) -> None:
    from lorkd_core.data.manifest import read_manifest
    from lorkd_core.errors import LorkdError

    if cfg.teacher and not Path(cfg.teacher).exists():
        check.problems.append(f"teacher not found: {cfg.teacher}")
    try:
        source = read_experts_source(cfg.experts)
    except LorkdError as exc:
        if Path(cfg.experts).exists():  # a missing folder is already one of the engine's problems
            check.problems.append(str(exc))
        return
    if cfg.region not in source.regions:
        check.problems.append(f"the experts model has no '{cfg.region}' expert (it has {', '.join(source.regions)})")
        return
    if cfg.task != source.task:
        check.problems.append(f"the experts model does {source.task}, the job asks for {cfg.task}")
    check.notes.append(f"{cfg.region} expert: rank {source.ranks.get(cfg.region, '?')} (kept from the parent, "
                       f"version {source.version} → {source.version + 1})")
    try:
        items = [it for it in read_manifest(cfg.data) if it.region == cfg.region]
    except LorkdError:
        return  # already reported by the engine's preflight
    names = next((n for n in (it.label_names() for it in items) if n), {})
    if names and names != source.labels.get(cfg.region):
        if cfg.train_head:
            check.notes.append("the dataset's labels differ from the expert's: its head is trained anew")
        else:
            check.problems.append("the dataset's labels differ from the expert's head: tick 'Train the head'")


# ---------------------------------------------------------------- running


def train(job_type: str, cfg: JobConfig, progress=None, cancel=None, *, resume: bool = False) -> dict[str, Any]:
    """worker: run the job in this process; a summary of what it wrote."""
    if job_type == "decompose":
        from lorkd_core.engine.train import decompose

        r = decompose(cfg, progress, cancel, resume=resume)  # type: ignore[arg-type]
        return {"out": str(r.out), "experts": str(r.experts), "steps": r.steps, "seconds": r.seconds}
    if job_type == "adapt":
        from lorkd_core.engine.adapt import adapt

        a = adapt(cfg, progress, cancel, resume=resume)  # type: ignore[arg-type]
        return {"out": str(a.out), "experts": str(Path(a.out) / "experts"), "steps": a.steps, "seconds": a.seconds}
    raise ValueError(f"unknown job type {job_type!r}")


def evaluate_output(out: str | Path, data: str, title: str, progress=None, cancel=None) -> str:
    """worker: the job's models on its data (test split, else val, else all), as a markdown table; also
    written to ``OUT/evaluation.md``."""
    from lorkd_core.data.manifest import read_manifest
    from lorkd_core.engine.evaluate import evaluate_models, render_markdown, write_reports

    splits = {it.split for it in read_manifest(data)}
    split = "test" if "test" in splits else ("val" if "val" in splits else "train")
    result = evaluate_models(out, data, None, device="cpu", split=split, latency_runs=1, progress=progress,
                             cancel=cancel)
    kwargs = {"title": f"Evaluation of {title} ({split} cases)", "data": data, "latency_runs": 1}
    write_reports(result, Path(out) / "evaluation.md", **kwargs)
    return render_markdown(result, **kwargs)


def command_line(job_type: str, config: Path, out: Path, cancel_file: Path, *, processes: int = 1,
                 resume: bool = False) -> list[str]:
    """The argv of a subprocess job (first item: the Python executable). The child prints the JSON-lines
    progress protocol of lorkd_core/commands/_training.py and stops with a checkpoint when ``cancel_file``
    appears (every torchrun rank watches it)."""
    if job_type not in JOB_TYPES:
        raise ValueError(f"unknown job type {job_type!r}")
    module = "lorkd_core"
    args = [job_type, "--config", str(config), "--out", str(out), "--progress-json", "--cancel-file",
            str(cancel_file)]
    if resume:
        args.append("--resume")
    if processes > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                "-m", module, *args]
    return [sys.executable, "-m", module, *args]


def finished_on_disk(out: str | Path) -> bool:
    """The engine wrote ``OUT/job.json`` with status done (the job ended while the app was away)."""
    try:
        info = json.loads((Path(out) / "job.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("status") == "done"
