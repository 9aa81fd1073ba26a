#!/usr/bin/env python
"""Reproduce the bundled demo models on CPU: phantoms -> teacher -> LoRKD experts + no-expert baseline.

    python scripts/train_demo_models.py --out demo_models            # the full demo (see budget below)
    python scripts/train_demo_models.py --out /tmp/demo --smoke      # a tiny end-to-end check (~1-2 min)

Writes ``OUT/phantoms/`` (dataset + manifest.jsonl), ``OUT/teacher/`` (kind=teacher),
``OUT/decomposition/{experts,baseline,teacher}/`` (the decomposition output), ``OUT/bundle/`` (the same
model folders with float16 weights for shipping: loading casts back to float32) and ``OUT/timings.json``.
Re-running resumes: finished stages are skipped, an interrupted stage continues from its checkpoint.

Budget of the full run (2 CPU cores): about 40 minutes in total; the teacher has at least 4x the student's
parameters, every region expert (student backbone + that region's experts + head) at most 1/4 of the
teacher's, and the bundle stays under ~25 MB. The script prints these checks at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

# Demo configuration. Spacing 4 mm and 32^3 patches (128 mm of context); batches of 8 hold one patch of
# every region, so each step mixes all eight experts (EKS). Plain UNets (no residual units: those cost
# 3x the time here for little gain): the teacher's extra-wide deep levels cost little time (the
# full-resolution layers dominate) but give it 2.7 M parameters, 5.4x the student and 4.7x every region
# expert. Measured (CPU seconds per step, batch 8): teacher 1.4-1.7, student 1.0-1.2 (including the
# teacher's forward pass for distillation); on 2 idle cores a step takes about 60% of that in wall time.
# Steps are sized so the run fits 40 minutes even at one core's speed (~34 min), ~22 min on two.
DEMO = {
    "cases_per_region": 12,
    "phantom_size": 96,
    "phantom_realism": 1,  # 2: closer to real CT (lorkd phantoms --realism; the bundled models used 1)
    "crop_sampling": "voxel",  # "class": class-balanced patch centres (the bundled models used "voxel")
    "spacing": [4.0, 4.0, 4.0],
    "patch_size": [32, 32, 32],
    "batch_size": 8,
    "teacher": {"name": "monai.UNet",
                "kwargs": {"channels": [16, 32, 64, 160, 320], "strides": [2, 2, 2, 2], "num_res_units": 0}},
    "teacher_steps": 600,
    "teacher_lr": 3e-3,
    "student": {"name": "monai.UNet",
                "kwargs": {"channels": [8, 16, 32, 64, 128], "strides": [2, 2, 2, 2], "num_res_units": 0}},
    "feature_channels": 16,
    "ranks": 4,
    "steps": 400,
    "baseline_steps": 400,
    "lr": 3e-3,
    "lam": 1.0,
    "tau": 2.0,
}
SMOKE = {
    **DEMO,
    "cases_per_region": 2,
    "phantom_size": 48,
    "spacing": [6.0, 6.0, 6.0],
    "patch_size": [16, 16, 16],
    "teacher": {"name": "monai.UNet", "kwargs": {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 0}},
    "teacher_steps": 4,
    "student": {"name": "monai.UNet", "kwargs": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 0}},
    "feature_channels": 8,
    "ranks": 2,
    "steps": 3,
    "baseline_steps": 2,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--smoke", action="store_true", help="tiny settings: prove the pipeline end to end")
    parser.add_argument("--config", help="JSON overriding keys of the demo configuration")
    parser.add_argument("--workers", type=int, default=2, help="processes for phantom generation")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu (the documented timings), cuda or auto")
    parser.add_argument("--time-budget", type=float, default=0.0,
                        help="seconds for the three training phases together: measure each phase's step time on "
                             "a short calibration run, then set teacher/expert/baseline steps to fit (0 = use the "
                             "configured steps)")
    parser.add_argument("--teacher", help="use this trained teacher model folder instead of training one "
                                          "(e.g. a teacher trained earlier on a GPU)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    settings = dict(SMOKE if args.smoke else DEMO)
    if args.config:
        settings.update(json.loads(Path(args.config).read_text(encoding="utf-8")))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings_path = out / "timings.json"
    timings: dict[str, float] = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    total_start = time.perf_counter()

    manifest = _stage(timings, "phantoms", lambda: _phantoms(out / "phantoms", settings, args.workers))
    _save(timings_path, timings, settings)
    teacher = Path(args.teacher) if args.teacher else out / "teacher"
    if args.teacher:
        settings["teacher_reused_from"] = str(teacher)
    if args.time_budget > 0:
        settings.update(_fit_steps(out / "calibration", manifest, settings, args.device, args.time_budget, timings,
                                   teacher=teacher if args.teacher else None))
        _save(timings_path, timings, settings)
    if not args.teacher:
        _stage(timings, "teacher", lambda: _teacher(teacher, manifest, settings, args.device))
        _save(timings_path, timings, settings)
    _stage(timings, "decompose", lambda: _decompose(out / "decomposition", teacher, manifest, settings,
                                                     args.device))
    _save(timings_path, timings, settings)
    bundle_bytes = _bundle(out / "decomposition", out / "bundle")
    timings["this_session_s"] = round(time.perf_counter() - total_start, 1)
    _save(timings_path, timings, settings)
    return _summary(out, timings, bundle_bytes)


def _stage(timings: dict[str, float], name: str, fn):
    """Run a stage; a stage that did real work (not a reuse of its finished output) records its wall time."""
    print(f"== {name}", flush=True)
    start = time.perf_counter()
    result = fn()
    seconds = round(time.perf_counter() - start, 1)
    if seconds > 1.0 or f"{name}_wall_s" not in timings:
        timings[f"{name}_wall_s"] = seconds
    train = getattr(result, "seconds", None)
    if train is not None:
        timings[f"{name}_train_s"] = float(train)
    return result


def _save(path: Path, timings: dict[str, float], settings: dict) -> None:
    path.write_text(json.dumps({**timings, "settings": settings}, indent=2) + "\n", encoding="utf-8")


BUDGET_SHARES = {"teacher": 0.36, "experts": 0.34, "baseline": 0.30}
CALIBRATION_STEPS = 16


def _fit_steps(folder: Path, manifest: Path, s: dict, device: str, budget: float, timings: dict,
              teacher: Path | None = None) -> dict:
    """Steps per phase that fit ``budget`` seconds, from step times measured on short runs (reused if present).
    With a given ``teacher`` only the expert and baseline phases share the budget."""
    saved = folder / "fitted.json"
    if saved.is_file():
        return json.loads(saved.read_text())
    probe = {**s, "teacher_steps": CALIBRATION_STEPS, "steps": CALIBRATION_STEPS, "baseline_steps": CALIBRATION_STEPS}
    clock = _StepClock()
    if teacher is None:
        teacher = folder / "teacher"
        _teacher(teacher, manifest, probe, device, clock)
        shares = BUDGET_SHARES
    else:
        left = BUDGET_SHARES["experts"] + BUDGET_SHARES["baseline"]
        shares = {"teacher": 0.0, "experts": BUDGET_SHARES["experts"] / left,
                  "baseline": BUDGET_SHARES["baseline"] / left}
    _decompose(folder / "decomposition", teacher, manifest, probe, device, clock)
    seconds = clock.seconds_per_step()
    fitted = {"steps": int(budget * shares["experts"] / seconds["experts"]),
              "baseline_steps": int(budget * shares["baseline"] / seconds["baseline"])}
    if shares["teacher"]:
        fitted["teacher_steps"] = int(budget * shares["teacher"] / seconds["teacher"])
    timings["calibration_s_per_step"] = seconds
    print(f"   calibration: s/step {seconds} -> steps {fitted}", flush=True)
    saved.write_text(json.dumps(fitted) + "\n", encoding="utf-8")
    return fitted


class _StepClock:
    """Progress callback recording when each training step of each phase ended."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}

    def __call__(self, p) -> None:
        if "phase_step" in p.metrics:
            self.times.setdefault(p.message, []).append(time.perf_counter())

    def seconds_per_step(self) -> dict[str, float]:
        out = {}
        for phase, stamps in self.times.items():
            gaps = sorted(b - a for a, b in zip(stamps[3:], stamps[4:]))  # skip warm-up steps
            out[phase] = round(gaps[len(gaps) // 2], 4) if gaps else float("nan")
        return out


def _phantoms(folder: Path, s: dict, workers: int) -> Path:
    from lorkd_core.data.phantoms import write_phantom_dataset

    manifest = folder / "manifest.jsonl"
    if manifest.is_file():
        print(f"   reusing {manifest}")
        return manifest
    return write_phantom_dataset(folder, s["cases_per_region"], size=s["phantom_size"], workers=workers,
                                 realism=int(s.get("phantom_realism", 1)), progress=_printer("phantoms", every=8))


def _teacher(folder: Path, manifest: Path, s: dict, device: str, progress=None):
    from lorkd_core.engine.config import FoundationConfig
    from lorkd_core.engine.train import train_foundation

    cfg = FoundationConfig(data=str(manifest), out=str(folder), network=s["teacher"], steps=s["teacher_steps"],
                           batch_size=s["batch_size"], lr=s["teacher_lr"], patch_size=tuple(s["patch_size"]),
                           spacing=tuple(s["spacing"]), checkpoint_every=50, device=device,
                           crop_sampling=s.get("crop_sampling", "voxel"))
    result = train_foundation(cfg, progress or _printer("teacher"), resume=True)
    print(f"   teacher: {result.steps} steps in {result.seconds:.0f} s ({result.seconds / max(1, result.steps):.2f} s/step)")
    return result


def _decompose(folder: Path, teacher: Path, manifest: Path, s: dict, device: str, progress=None):
    from lorkd_core.engine.config import DecomposeConfig
    from lorkd_core.engine.train import decompose

    cfg = DecomposeConfig(data=str(manifest), out=str(folder), teacher=str(teacher), student=s["student"],
                          feature_channels=s["feature_channels"], ranks=s["ranks"], steps=s["steps"],
                          baseline_steps=s["baseline_steps"], batch_size=s["batch_size"], lr=s["lr"],
                          lam=s["lam"], tau=s["tau"], patch_size=tuple(s["patch_size"]),
                          spacing=tuple(s["spacing"]), checkpoint_every=50, device=device,
                          crop_sampling=s.get("crop_sampling", "voxel"))
    result = decompose(cfg, progress or _printer("decompose"), resume=True)
    print(f"   decomposition: {result.steps} steps in {result.seconds:.0f} s")
    return result


def _bundle(decomposition: Path, bundle: Path) -> int:
    """float16 copies of the model folders (the card records it; loading casts back to float32)."""
    import torch

    from lorkd_core.engine.model_io import load_model, save_model_folder

    total = 0
    for name in ("teacher", "experts", "baseline"):
        src = decomposition / name
        if not (src / "card.json").is_file():
            continue
        model, card = load_model(src)
        card.extra["weights_dtype"] = "float16"
        card.extra.pop("weights_sha256", None)
        if (bundle / name).exists():
            shutil.rmtree(bundle / name)
        save_model_folder(bundle / name, model, card, dtype=torch.float16)
        load_model(bundle / name)  # proves the float16 folder loads back
        total += (bundle / name / "model.safetensors").stat().st_size
    return total


def _summary(out: Path, timings: dict, bundle_bytes: int) -> int:
    teacher = json.loads((out / "decomposition" / "teacher" / "card.json").read_text())
    experts = json.loads((out / "decomposition" / "experts" / "card.json").read_text())
    t_params = int(teacher["parameters"])
    per_region = experts["metrics"]["parameters"]
    baseline = out / "decomposition" / "baseline" / "card.json"
    student = int(json.loads(baseline.read_text())["parameters"]) if baseline.is_file() else min(per_region.values())
    print("\nparameters: teacher", f"{t_params:,}", "| expert per region (backbone + experts + head):",
          ", ".join(f"{r} {n:,}" for r, n in per_region.items()))
    ok_ratio = all(n * 4 <= t_params for n in per_region.values())
    print(f"every expert <= 1/4 of the teacher: {ok_ratio} (largest {max(per_region.values()) / t_params:.3f})")
    print(f"teacher >= 4x the student (no experts): {t_params >= 4 * student} ({t_params / student:.1f}x)")
    print(f"bundle (float16): {bundle_bytes / 1e6:.1f} MB (limit ~25 MB): {bundle_bytes < 25e6}")
    print("timings (s):", json.dumps(timings))
    return 0


def _printer(name: str, every: int = 25):
    def show(p) -> None:
        if p.step == 0 and p.fraction < 1.0 and "data_fraction" in p.metrics:
            return
        if p.step % every == 0 or p.step == p.total:
            m = p.metrics
            extra = (f" loss {m['loss']:.4f} task {m.get('task', 0):.4f} kd {m.get('kd', 0):.4f} "
                     f"{m.get('samples_per_s', 0):.1f} samples/s eta {m.get('eta_s', 0):.0f}s" if "loss" in m else "")
            print(f"   [{name}/{p.message}] {p.step}/{p.total}{extra}", flush=True)
    return show


if __name__ == "__main__":
    sys.exit(main())
