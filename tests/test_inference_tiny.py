"""Tiny models and scans for the engine tests (imported by test_inference/test_export/test_engine_eval/
test_catalog), plus checks that the builders themselves produce loadable model folders.

Models are built directly (not trained): a plain UNet teacher over the union labels, a RegionSegmenter
student with rank-2 experts (random, non-zero factors so each region really differs) and a no-expert
baseline. They are written with the engine's own ``save_model_folder`` so the cards match what training
writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from lorkd_core.engine.model_card import Architecture, ExpertsSpec, ModelCard

ALL_REGIONS = ["abdomen", "brain", "head_neck", "lower_limb", "pelvis", "spine", "thorax", "upper_limb"]
PATCH = [16, 32, 32]
SPACING = [3.0, 3.0, 3.0]
BACKBONE = {"name": "monai.UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}}


def structures(region: str, n: int = 2) -> list[str]:
    from lorkd_core.regions import load_taxonomy

    return list(load_taxonomy().regions[region].structures[:n])


def write_case(folder: Path, region: str, seed: int, shape_zyx=(14, 20, 18), spacing=(2.5, 2.5, 3.0),
               direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), origin=(-20.0, 10.0, 5.0)) -> tuple[Path, Path]:
    """A CT-like volume with two box-shaped structures (HU 60 and 300) and its label map."""
    rng = np.random.default_rng(seed)
    image = np.full(shape_zyx, -800.0, np.float32) + rng.normal(0, 20, shape_zyx).astype(np.float32)
    label = np.zeros(shape_zyx, np.int16)
    z, y, x = shape_zyx
    label[2:z // 2, 3:y // 2, 3:x // 2] = 1
    label[z // 2:z - 2, y // 2:y - 3, x // 2:x - 2] = 2
    image[label == 1] = 60.0
    image[label == 2] = 300.0
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, arr in (("ct.nii.gz", image), ("seg.nii.gz", label)):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(spacing)
        img.SetOrigin(origin)
        img.SetDirection([float(d) for d in direction])
        sitk.WriteImage(img, str(folder / name))
        paths.append(folder / name)
    return paths[0], paths[1]


def write_dataset(root: Path, regions=ALL_REGIONS, test_per_region: int = 1, train_per_region: int = 0) -> Path:
    """A manifest with ``train_per_region`` training and ``test_per_region`` held-out cases per region."""
    lines = []
    for r_i, region in enumerate(regions):
        for k in range(train_per_region + test_per_region):
            case = f"{region}_{k:03d}"
            write_case(root / "cases" / case, region, seed=r_i * 10 + k)
            lines.append({"image": f"cases/{case}/ct.nii.gz", "label": f"cases/{case}/seg.nii.gz",
                          "region": region, "modality": "CT",
                          "labels": {str(i + 1): s for i, s in enumerate(structures(region))},
                          "finding": None, "split": "train" if k < train_per_region else "test", "case_id": case})
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return manifest


def _randomize(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _training(regions, spacing=SPACING, patch=PATCH) -> dict:
    return {"data": "tiny synthetic", "cases": dict.fromkeys(regions, 1), "steps": 0, "seconds": 0,
            "patch_size": list(patch), "spacing": list(spacing)}


def build_models(root: Path, regions=ALL_REGIONS, seed: int = 0, baseline: bool = True,
                 spacing=SPACING, patch=PATCH) -> Path:
    """``root/teacher``, ``root/experts`` and (optionally) ``root/baseline`` model folders."""
    from lorkd_core.engine.model_io import expert_layer_ranks, save_model_folder
    from lorkd_core.engine.networks import build_from_architecture, plain_architecture, region_architecture
    from lorkd_core.engine.teacher_import import teacher_card
    from lorkd_core.experts import add_region_experts

    torch.manual_seed(seed)
    labels = {r: {i + 1: s for i, s in enumerate(structures(r))} for r in regions}
    union = {0: "background"}
    for r in regions:
        for s in labels[r].values():
            if s not in union.values():
                union[len(union)] = s
    per_region = {r: {k: s for k, s in union.items() if s in labels[r].values()} for r in regions}
    t_arch = plain_architecture(BACKBONE, len(union))
    teacher = build_from_architecture(t_arch)
    _randomize(teacher, seed)
    card = teacher_card(t_arch, union, per_region=per_region, training=_training(regions, spacing, patch))
    save_model_folder(root / "teacher", teacher, card)

    heads = {r: len(labels[r]) + 1 for r in regions}
    arch = region_architecture(BACKBONE, 4, heads, "segmentation")
    student = build_from_architecture(arch)
    _randomize(student, seed + 1)
    if baseline:
        save_model_folder(root / "baseline", student, _card("baseline", arch, regions, labels, spacing=spacing, patch=patch))
    add_region_experts(student.backbone, regions, 2)
    _randomize(student, seed + 2)
    card = _card("experts", arch, regions, labels, spacing=spacing, patch=patch)
    card.experts = ExpertsSpec(dict.fromkeys(regions, 2), None, list(regions),
                               {"layers": expert_layer_ranks(student.backbone)})
    save_model_folder(root / "experts", student, card)
    return root


def build_classifier(root: Path, regions=("abdomen", "thorax"), seed: int = 0) -> Path:
    """``root/classifier``: a RegionClassifier (3D SmallCNN) with classes normal / cyst per region."""
    from lorkd_core.engine.model_io import save_model_folder
    from lorkd_core.engine.networks import build_from_architecture, region_architecture

    spec = {"name": "lorkd.SmallCNN", "kwargs": {"channels": [4, 8]}}
    arch = region_architecture(spec, 8, dict.fromkeys(regions, 2), "classification")
    model = build_from_architecture(arch)
    _randomize(model, seed)
    labels = {r: {0: "none", 1: "cyst"} for r in regions}
    card = _card("baseline", arch, regions, labels, task="classification")
    card.extra["preprocessing"] = {"spacing": SPACING, "patch_size": [16, 16, 16], "spatial_dims": 3}
    save_model_folder(root / "classifier", model, card)
    return root / "classifier"


def _card(kind: str, arch: dict, regions, labels, task: str = "segmentation", spacing=SPACING,
          patch=PATCH) -> ModelCard:
    return ModelCard(kind=kind, task=task, architecture=Architecture.from_dict(arch),
                     regions=list(regions), labels={r: dict(labels[r]) for r in regions},
                     training=_training(regions, spacing, patch), extra={"modality": "CT"})


# ---------------------------------------------------------------- checks of the builders


def test_built_models_load_and_list(tmp_path):
    from lorkd_core.engine.catalog import list_models
    from lorkd_core.engine.model_io import load_model

    build_models(tmp_path, regions=["abdomen", "thorax"])
    for name in ("teacher", "experts", "baseline"):
        model, card = load_model(tmp_path / name)
        assert card.regions and sum(p.numel() for p in model.parameters()) > 0
    entries = list_models([tmp_path], include_bundled=False)
    kinds = sorted({e.kind for e in entries})
    assert kinds == ["baseline", "teacher", "user"]
    assert sorted(e.region for e in entries if e.kind == "teacher") == ["abdomen", "thorax"]
