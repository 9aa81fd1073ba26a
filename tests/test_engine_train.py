"""Decomposition engine: KD restriction, configs, checkpoints, training runs, cancel/resume, classification."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from test_engine_train_helpers import make_blob_dataset

from lorkd_core.engine.adapt import adapt
from lorkd_core.engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from lorkd_core.engine.config import AdaptConfig, DecomposeConfig, FoundationConfig
from lorkd_core.engine.losses import kd_loss, restrict_teacher_logits
from lorkd_core.engine.model_io import load_model
from lorkd_core.engine.networks import build_network, plain_architecture
from lorkd_core.engine.teacher_import import teacher_card
from lorkd_core.engine.train import decompose, train_foundation
from lorkd_core.errors import ConfigError, JobCancelled
from lorkd_core.progress import CancelToken

TINY_TEACHER = {"name": "monai.UNet", "kwargs": {"channels": [8, 16], "strides": [2], "num_res_units": 0}}
TINY_STUDENT = {"name": "monai.UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}}
PATCH = (12, 12, 12)


# ---------------------------------------------------------------------- distillation target


def test_restrict_teacher_logits_folds_foreign_classes_into_background():
    # teacher classes: 0 background, 1 liver, 2 spleen, 3 lung; the region knows spleen (1) and liver (2)
    logits = torch.tensor([[[0.5], [2.0], [-1.0], [1.5]]])  # (B=1, C=4, N=1)
    out = restrict_teacher_logits(logits, [2, 1])
    assert out.shape == (1, 3, 1)
    p = logits.softmax(1)[0, :, 0]
    q = out.softmax(1)[0, :, 0]
    torch.testing.assert_close(q, torch.stack([p[0] + p[3], p[2], p[1]]))
    torch.testing.assert_close(out[0, 0, 0], torch.logsumexp(torch.tensor([0.5, 1.5]), 0))


def test_restrict_teacher_logits_classification_is_the_conditional_distribution():
    logits = torch.tensor([[1.0, 0.0, 3.0, -2.0]])
    out = restrict_teacher_logits(logits, [0, 2], fold_background=False)
    torch.testing.assert_close(out, torch.tensor([[1.0, 3.0]]))
    p = logits.softmax(1)[0, [0, 2]]
    torch.testing.assert_close(out.softmax(1)[0], p / p.sum())


def test_restrict_teacher_logits_rejects_bad_ids():
    logits = torch.zeros(1, 3, 2)
    with pytest.raises(ValueError):
        restrict_teacher_logits(logits, [3])
    with pytest.raises(ValueError):
        restrict_teacher_logits(logits, [0, 1])
    with pytest.raises(ValueError):
        restrict_teacher_logits(logits, [1, 1])


def test_kd_loss_is_zero_for_equal_logits_and_scaled_by_tau_squared():
    s = torch.randn(2, 3, 4, 4)
    assert float(kd_loss(s, s.clone(), tau=2.0)) == pytest.approx(0.0, abs=1e-6)
    t = torch.randn(2, 3, 4, 4)
    p_t = torch.log_softmax(t / 3.0, 1)
    p_s = torch.log_softmax(s / 3.0, 1)
    expected = (p_t.exp() * (p_t - p_s)).sum(1).mean() * 9.0
    torch.testing.assert_close(kd_loss(s, t, tau=3.0), expected)


# ---------------------------------------------------------------------- configs and checkpoints


def test_decompose_config_json_round_trip(tmp_path):
    cfg = DecomposeConfig(data="m.jsonl", out="o", teacher="t", ranks={"abdomen": 4, "thorax": 2}, lam=0.5,
                          patch_size=(32, 48, 48), spacing=(1.5, 1.5, 3.0), alpha=8.0, baseline=False)
    again = DecomposeConfig.from_json(cfg.to_json())
    assert again == cfg
    cfg.save(tmp_path / "job.json")
    assert DecomposeConfig.load(tmp_path / "job.json") == cfg
    for cls in (FoundationConfig, AdaptConfig):
        assert cls.from_json(cls().to_json()) == cls()


@pytest.mark.parametrize("bad, word", [({"lamda": 1.0}, "lamda"), ({"ranks": "many"}, "ranks"),
                                       ({"steps": "ten"}, "steps"), ({"patch_size": [8, 8]}, "patch_size"),
                                       ({"student": {"name": "monai.UNet", "kw": {}}}, "kw"),
                                       ({"device": "tpu"}, "device")])
def test_config_rejects_unknown_keys_and_bad_values(bad, word):
    with pytest.raises(ConfigError, match=word):
        DecomposeConfig.from_dict({"data": "m", **bad})


def test_checkpoint_round_trip_restores_optimizer_state(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    folder = save_checkpoint(tmp_path, step=7, phase="experts", model=model, optimizer=opt, state={"x": 1})
    assert latest_checkpoint(tmp_path) == folder
    ck = load_checkpoint(folder)
    assert (ck.step, ck.phase, ck.state["x"]) == (7, "experts", 1)
    opt2 = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=0.1)
    opt2.load_state_dict(ck.optimizer)
    for a, b in zip(opt.state_dict()["state"].values(), opt2.state_dict()["state"].values()):
        for key in a:
            torch.testing.assert_close(a[key], b[key])
    assert not list(tmp_path.glob("**/*.pt")) and not list(tmp_path.glob("**/*.pkl"))


# ---------------------------------------------------------------------- training runs


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_blob_dataset(tmp_path_factory.mktemp("blobs"), cases_per_region=2)


@pytest.fixture(scope="module")
def teacher_dir(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    cfg = FoundationConfig(data=str(dataset), out=str(out), steps=4, batch_size=3, patch_size=PATCH,
                           network=TINY_TEACHER, checkpoint_every=0, warmup_steps=1)
    result = train_foundation(cfg)
    assert result.steps == 4 and (out / "card.json").is_file()
    return out


def _decompose_cfg(dataset, teacher_dir, out, **changes):
    base = dict(data=str(dataset), out=str(out), teacher=str(teacher_dir), steps=6, batch_size=3, patch_size=PATCH,
                student=TINY_STUDENT, feature_channels=4, ranks=2, lam=1.0, tau=2.0, baseline=False,
                checkpoint_every=0, warmup_steps=1, lr=5e-3)
    base.update(changes)
    return DecomposeConfig(**base)


def test_teacher_folder_has_union_labels_per_region(teacher_dir):
    card = json.loads((teacher_dir / "card.json").read_text())
    assert card["kind"] == "teacher" and set(card["regions"]) == {"abdomen", "pelvis", "thorax"}
    union = card["labels"]["union"]
    assert union["0"] == "background" and len(union) == 7
    for region in card["regions"]:
        assert all(union[k] == v for k, v in card["labels"][region].items())
    model, _ = load_model(teacher_dir)
    assert model(torch.zeros(1, 1, *PATCH)).shape == (1, 7, *PATCH)


def test_decomposition_lowers_the_loss_and_writes_model_folders(dataset, teacher_dir, tmp_path):
    reports = []
    cfg = _decompose_cfg(dataset, teacher_dir, tmp_path / "run", steps=10, baseline=True, baseline_steps=1)
    result = decompose(cfg, progress=reports.append)
    loading = [p for p in reports if p.step == 0]
    assert loading and loading[-1].metrics["data_fraction"] == 1.0 and loading[-1].total == 11
    seen = [p for p in reports if p.step > 0]
    losses = [p.metrics["loss"] for p in seen if p.message == "experts"]
    assert len(losses) == 10 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    last = seen[-1]
    assert (last.step, last.total) == (11, 11)
    assert {"task", "kd", "samples_per_s", "eta_s", "region/abdomen"} <= set(last.metrics)
    assert [p.step for p in seen] == list(range(1, 12))

    card = json.loads((result.experts / "card.json").read_text())
    assert card["kind"] == "experts" and card["experts"]["region_order"] == ["abdomen", "pelvis", "thorax"]
    assert card["experts"]["layers"] and card["training"]["steps"] == 10
    assert set(card["metrics"]["parameters"]) == {"abdomen", "pelvis", "thorax"}
    assert json.loads((result.baseline / "card.json").read_text())["kind"] == "baseline"
    assert (result.teacher / "card.json").is_file() and not (tmp_path / "run" / "checkpoint").exists()

    model, loaded = load_model(result.experts)
    x = torch.randn(2, 1, *PATCH)
    out = model(x, torch.tensor([0, 2]))
    assert set(out) == {"abdomen", "thorax"} and out["abdomen"].shape == (1, 3, *PATCH)
    torch.testing.assert_close(out["thorax"], model.forward_region(x[1:], "thorax"), atol=1e-5, rtol=1e-5)
    from lorkd_core.experts import merged_expert

    plain = merged_expert(model, "pelvis").single_region("pelvis")
    torch.testing.assert_close(plain(x), model.forward_region(x, "pelvis"), atol=1e-5, rtol=1e-5)
    assert decompose(cfg, resume=True).seconds == result.seconds  # a finished job is not re-run


def test_cancel_then_resume_equals_an_uninterrupted_run(dataset, teacher_dir, tmp_path):
    full = decompose(_decompose_cfg(dataset, teacher_dir, tmp_path / "full"))

    token = CancelToken()
    seen = []

    def progress(p):
        if p.step:
            seen.append(p.step)
        if p.step == 3:
            token.cancel()

    cfg = _decompose_cfg(dataset, teacher_dir, tmp_path / "cut")
    with pytest.raises(JobCancelled, match="checkpoint at step 3"):
        decompose(cfg, progress=progress, cancel=token)
    assert seen == [1, 2, 3] and latest_checkpoint(tmp_path / "cut" / "checkpoint") is not None
    resumed_steps = []
    decompose(cfg, progress=lambda p: p.step and resumed_steps.append(p.step), resume=True)
    assert resumed_steps == [4, 5, 6]

    a = load_file(str(full.experts / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "experts" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


def test_resume_refuses_a_changed_config(dataset, teacher_dir, tmp_path):
    token = CancelToken()
    cfg = _decompose_cfg(dataset, teacher_dir, tmp_path / "job")
    with pytest.raises(JobCancelled):
        decompose(cfg, progress=lambda p: p.step and token.cancel(), cancel=token)
    with pytest.raises(ConfigError, match="lam"):
        decompose(cfg.replace(lam=0.25), resume=True)


def test_classification_loss_decreases(dataset, tmp_path):
    teacher = tmp_path / "cls_teacher"
    net = {"name": "lorkd.SmallCNN", "kwargs": {"channels": [4, 8]}}
    train_foundation(FoundationConfig(data=str(dataset), out=str(teacher), task="classification", steps=2,
                                      batch_size=3, patch_size=PATCH, network=net, checkpoint_every=0))
    seen = []
    cfg = DecomposeConfig(data=str(dataset), out=str(tmp_path / "cls"), teacher=str(teacher),
                          task="classification", steps=20, batch_size=6, patch_size=PATCH,
                          student={"name": "lorkd.SmallCNN", "kwargs": {"channels": [4, 8]}}, ranks=2, lam=0.5,
                          baseline=False, checkpoint_every=0, lr=1e-2, warmup_steps=1)
    result = decompose(cfg, progress=seen.append)
    losses = [p.metrics["loss"] for p in seen if p.step]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    card = json.loads((result.experts / "card.json").read_text())
    assert card["task"] == "classification" and card["labels"]["abdomen"] == {"0": "none", "1": "cyst"}
    model, _ = load_model(result.experts)
    assert model.forward_region(torch.zeros(2, 1, *PATCH), "thorax").shape == (2, 2)


def test_adapt_trains_one_region_expert_only(dataset, teacher_dir, tmp_path):
    parent = decompose(_decompose_cfg(dataset, teacher_dir, tmp_path / "parent", steps=2))
    cfg = AdaptConfig(data=str(dataset), out=str(tmp_path / "adapted"), experts=str(parent.experts),
                      region="thorax", steps=3, batch_size=2, patch_size=PATCH, checkpoint_every=0)
    adapt(cfg)
    card = json.loads((tmp_path / "adapted" / "experts" / "card.json").read_text())
    assert card["regions"] == ["thorax"] and card["version"] == 2
    old, new = load_file(str(parent.experts / "model.safetensors")), load_file(
        str(tmp_path / "adapted" / "experts" / "model.safetensors"))
    backbone = [k for k in new if k.startswith("backbone.") and ".experts." not in k]
    assert backbone and all(torch.equal(new[k], old[k]) for k in backbone)
    assert any(not torch.equal(new[k], old[k]) for k in new if ".experts.thorax." in k)


def test_teacher_card_round_trip_for_a_plain_network(tmp_path):
    from lorkd_core.engine.model_io import save_model_folder

    spec = {"name": "monai.UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}}
    net = build_network(spec, out_channels=3)
    card = teacher_card(plain_architecture(spec, 3), {0: "background", 1: "liver", 2: "heart"})
    save_model_folder(tmp_path / "t", net, card, dtype=torch.float16)
    loaded, card2 = load_model(tmp_path / "t")
    assert card2.regions == ["abdomen", "thorax"] or set(card2.regions) >= {"abdomen", "thorax"}
    assert next(loaded.parameters()).dtype == torch.float32


def test_preflight_reports_problems_and_a_memory_estimate(dataset, teacher_dir):
    from lorkd_core.engine.preflight import preflight

    good = preflight(_decompose_cfg(dataset, teacher_dir, "unused"))
    assert good.ok, good.problems
    assert good.cases == {"abdomen": 2, "pelvis": 2, "thorax": 2}
    assert good.memory_bytes > 0 and good.parameters["student"] > 0
    bad = preflight(_decompose_cfg(dataset, "/nonexistent/teacher", "unused", regions=["brain"],
                                   patch_size=(9, 9, 9)), world=2)
    text = " | ".join(bad.problems)
    assert "brain" in text and "teacher not found" in text and "multiple of the 2 processes" in text and "patch_size" in text
