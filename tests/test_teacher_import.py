"""Importing teachers: a tiny MONAI bundle, a TorchScript file and a safetensors state dict + spec."""

from __future__ import annotations

import collections
import json

import pytest
import torch
from safetensors.torch import save_file

from lorkd_core.engine.networks import build_network
from lorkd_core.engine.teacher_import import import_teacher, load_teacher
from lorkd_core.errors import ModelError

SPEC = {"name": "monai.UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0, "out_channels": 3}}
CHANNELS = {"0": "background", "1": "spleen", "2": "left_kidney"}  # an alias the taxonomy maps to kidney_left


@pytest.fixture()
def net():
    torch.manual_seed(0)
    return build_network(SPEC).eval()


def _bundle(root, net, network_def=None):
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    meta = {"name": "tiny", "network_data_format": {"outputs": {"pred": {"channel_def": CHANNELS}}}}
    (root / "configs" / "metadata.json").write_text(json.dumps(meta))
    network_def = network_def or {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1,
                                  "out_channels": "@num_classes", "channels": [4, 8], "strides": [2],
                                  "num_res_units": 0}
    (root / "configs" / "inference.json").write_text(json.dumps({"num_classes": 3, "network_def": network_def}))
    # Real bundles ship model.pt written by torch.save; the importer reads it with weights_only=True.
    torch.save(net.state_dict(), root / "models" / "model.pt")
    return root


def _same_outputs(a, b):
    x = torch.randn(1, 1, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


def test_monai_bundle_imports_with_labels_mapped_to_regions(tmp_path, net):
    bundle = _bundle(tmp_path / "bundle", net)
    teacher = load_teacher(bundle)
    _same_outputs(teacher.model, net)
    assert teacher.labels == {0: "background", 1: "spleen", 2: "left_kidney"}
    assert teacher.region_labels()["abdomen"] == {1: "spleen", 2: "kidney_left"}
    assert teacher.class_ids(["kidney_left", "spleen"]) == [2, 1]
    assert teacher.class_ids(["liver"]) is None
    assert not any(p.requires_grad for p in teacher.model.parameters())

    folder = import_teacher(bundle, tmp_path / "imported")
    card = json.loads((folder / "card.json").read_text())
    assert card["kind"] == "teacher" and "abdomen" in card["regions"] and card["labels"]["union"]["2"] == "left_kidney"
    _same_outputs(load_teacher(folder).model, net)


def test_bundle_expressions_and_pickled_objects_are_refused(tmp_path, net):
    bundle = _bundle(tmp_path / "expr", net, {"_target_": "UNet", "spatial_dims": "$__import__('os').getpid()",
                                              "in_channels": 1, "out_channels": 3, "channels": [4, 8],
                                              "strides": [2]})
    with pytest.raises(ModelError, match="not evaluated"):
        load_teacher(bundle)
    other = _bundle(tmp_path / "pickle", net)
    # An object torch's weights-only unpickler does not allow (a Counter subclass stands in for anything).
    torch.save({"state_dict": net.state_dict(), "extra": _Evil()}, other / "models" / "model.pt")
    with pytest.raises(ModelError, match="weights_only"):
        load_teacher(other)


class _Evil(collections.Counter):
    pass


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_torchscript_teacher_with_sidecar_labels(tmp_path, net):
    path = tmp_path / "teacher.ts"
    torch.jit.trace(net, torch.zeros(1, 1, 8, 8, 8)).save(str(path))
    with pytest.raises(ModelError, match="label names"):
        load_teacher(path)
    path.with_suffix(".json").write_text(json.dumps({"labels": CHANNELS}))
    teacher = load_teacher(path)
    _same_outputs(teacher.model, net)
    folder = import_teacher(path, tmp_path / "ts_folder")
    assert (folder / "model.torchscript").is_file()
    again = load_teacher(folder)
    _same_outputs(again.model, net)
    assert again.labels[2] == "left_kidney"


def test_safetensors_state_dict_with_network_spec(tmp_path, net):
    weights = tmp_path / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    with pytest.raises(ModelError):
        load_teacher(weights)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, "labels": CHANNELS}))
    teacher = load_teacher(weights, spec=spec)
    _same_outputs(teacher.model, net)
    folder = import_teacher(weights, tmp_path / "st_folder", spec=spec)
    _same_outputs(load_teacher(folder).model, net)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**SPEC, "kwargs": {**SPEC["kwargs"], "channels": [4, 16]}, "labels": CHANNELS}))
    with pytest.raises(ModelError, match="shape"):
        load_teacher(weights, spec=bad)
