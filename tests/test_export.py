"""``lorkd export``: the standalone expert equals the EKS output and loads without any expert classes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from test_inference_tiny import build_models

from lorkd_core.cli import main
from lorkd_core.engine.export import export_expert
from lorkd_core.engine.model_card import read_card, update_metrics
from lorkd_core.engine.model_io import load_model
from lorkd_core.errors import ModelError

REGIONS = ["abdomen", "thorax", "spine"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = build_models(tmp_path_factory.mktemp("export"), regions=REGIONS, baseline=False)
    update_metrics(root / "experts", {"dice": {"abdomen": 0.9, "thorax": 0.8}, "parameters": {"thorax": 123}})
    return root


def _eks_logits(model, x, region):
    index = torch.full((x.shape[0],), REGIONS.index(region), dtype=torch.long)
    with torch.no_grad():
        return model(x, index)[region]


@pytest.mark.parametrize("region", ["thorax", "spine"])
def test_export_matches_eks_outputs(models, tmp_path, region):
    result = export_expert(models, region, tmp_path / region)
    card = read_card(result.path)
    assert card.kind == "expert" and card.regions == [region] and card.experts is None
    assert card.architecture.heads == {region: 3}
    assert card.labels[region] == read_card(models / "experts").labels[region]
    assert card.training["exported_from"]["kind"] == "experts" and card.training["cases"]
    exported, _ = load_model(result.path)
    assert not any(hasattr(m, "experts") for m in exported.modules())
    assert not any(".experts." in k for k in exported.state_dict())
    experts, _ = load_model(models / "experts")
    x = torch.randn(2, 1, 16, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = exported.forward_region(x, region)
    torch.testing.assert_close(got, _eks_logits(experts, x, region), rtol=0, atol=1e-5)
    # a mixed EKS batch gives the same logits for the region's samples
    mixed = torch.tensor([REGIONS.index(region), REGIONS.index("abdomen")])
    with torch.no_grad():
        out = experts(x, mixed)
    torch.testing.assert_close(got[:1], out[region], rtol=0, atol=1e-5)
    assert result.parameters < sum(p.numel() for p in experts.parameters())


def test_export_card_keeps_the_region_metrics(models, tmp_path):
    card = export_expert(models / "experts", "thorax", tmp_path / "t").card
    assert card.metrics == {"dice": {"thorax": 0.8}, "parameters": {"thorax": 123}}


def test_exported_folder_loads_with_plain_torch_and_monai(models, tmp_path):
    """No lorkd_core at all: MONAI's UNet + a 1x1 conv head read the safetensors file directly."""
    out = export_expert(models, "abdomen", tmp_path / "abdomen").path
    experts, _ = load_model(models / "experts")
    x = torch.randn(1, 1, 16, 32, 32, generator=torch.Generator().manual_seed(2))
    torch.save({"x": x, "y": _eks_logits(experts, x, "abdomen")}, tmp_path / "io.pt")
    code = f"""
import json, sys, torch
from safetensors.torch import load_file
from monai.networks.nets import UNet
card = json.load(open({str(out / 'card.json')!r}))
arch = card["architecture"]
net = UNet(**arch["kwargs"])
head = torch.nn.Conv3d(arch["feature_channels"], arch["heads"]["abdomen"], 1)
state = load_file({str(out / 'model.safetensors')!r})
net.load_state_dict({{k[9:]: v for k, v in state.items() if k.startswith("backbone.")}})
head.load_state_dict({{k[14:]: v for k, v in state.items() if k.startswith("heads.abdomen.")}})
io = torch.load({str(tmp_path / 'io.pt')!r})
with torch.no_grad():
    y = head(torch.nn.functional.leaky_relu(net(io["x"]), 0.01))
assert not any(m.startswith("lorkd_core") for m in sys.modules), "lorkd_core was imported"
print(float((y - io["y"]).abs().max()))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.strip().splitlines()[-1]) < 1e-5


def test_export_cli_and_errors(models, tmp_path, capsys):
    assert main(["export", "--models", str(models), "--region", "abdomen", "--out", str(tmp_path / "a")]) == 0
    assert "exported the abdomen expert" in capsys.readouterr().out
    assert json.loads((tmp_path / "a" / "card.json").read_text())["kind"] == "expert"
    assert main(["export", "--models", str(models), "--region", "brain", "--out", str(tmp_path / "b")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no region 'brain'" in err
    with pytest.raises(ModelError, match="no model of kind"):
        export_expert(tmp_path / "a" / "..", "abdomen", tmp_path / "c")
