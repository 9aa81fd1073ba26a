"""``lorkd decompose`` under torchrun: 2 CPU processes (gloo DDP) give the single-process output format."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from test_engine_train_helpers import make_blob_dataset

from lorkd_core.engine.config import DecomposeConfig
from lorkd_core.engine.model_io import load_model
from lorkd_core.engine.networks import build_network, plain_architecture
from lorkd_core.engine.teacher_import import teacher_card
from lorkd_core.engine.train import decompose

STUDENT = {"name": "monai.UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}}


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    manifest = make_blob_dataset(root / "data", cases_per_region=1, regions=("abdomen", "thorax"))
    spec = {"name": "monai.UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}}
    torch.manual_seed(0)
    names = {0: "background", 1: "liver", 2: "spleen", 3: "lung_upper_lobe_left", 4: "lung_lower_lobe_left"}
    from lorkd_core.engine.model_io import save_model_folder

    save_model_folder(root / "teacher", build_network(spec, out_channels=5), teacher_card(plain_architecture(spec, 5), names))
    cfg = DecomposeConfig(data=str(manifest), out=str(root / "single"), teacher=str(root / "teacher"), steps=2,
                          batch_size=2, patch_size=(8, 8, 8), student=STUDENT, feature_channels=4, ranks=2,
                          baseline=False, checkpoint_every=1, warmup_steps=1)
    cfg.save(root / "job.json")
    return root, cfg


def test_torchrun_two_cpu_processes_match_the_single_process_format(job):
    root, cfg = job
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "lorkd_core", "decompose", "--config", str(root / "job.json"), "--out", str(root / "ddp"),
           "--progress-json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("step") == 2  # rank 0 only
    assert "loading" in kinds and events[kinds.index("step")]["metrics"]["loss"] > 0
    assert events[0]["processes"] == 2

    decompose(cfg)
    single, ddp = root / "single" / "experts", root / "ddp" / "experts"
    a, b = load_file(str(single / "model.safetensors")), load_file(str(ddp / "model.safetensors"))
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    ca, cb = json.loads((single / "card.json").read_text()), json.loads((ddp / "card.json").read_text())
    assert ca.keys() == cb.keys()
    for key in ("format", "kind", "task", "architecture", "regions", "labels", "experts", "parameters"):
        assert ca[key] == cb[key], key
    assert cb["training"]["processes"] == 2 and ca["training"]["processes"] == 1
    model, _ = load_model(ddp)
    assert model.forward_region(torch.zeros(1, 1, 8, 8, 8), "thorax").shape == (1, 3, 8, 8, 8)
    assert not (root / "ddp" / "checkpoint").exists()
