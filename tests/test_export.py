"""``lorkd export``: the standalone expert equals the EKS output and loads without any expert classes."""

from __future__ import annotations

import json

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


def _close(a, b, atol=1e-5):
    assert a.shape == b.shape and float((a - b).abs().max()) <= atol


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
    _close(got, _eks_logits(experts, x, region))
    # a mixed EKS batch gives the same logits for the region's samples
    mixed = torch.tensor([REGIONS.index(region), REGIONS.index("abdomen")])
    with torch.no_grad():
        out = experts(x, mixed)
    _close(got[:1], out[region])
    assert result.parameters < sum(p.numel() for p in experts.parameters())


def test_export_card_keeps_the_region_metrics(models, tmp_path):
    card = export_expert(models / "experts", "thorax", tmp_path / "t").card
    assert card.metrics == {"dice": {"thorax": 0.8}, "parameters": {"thorax": 123}}


def test_exported_folder_loads_with_plain_torch_and_monai(models, tmp_path):
    """No lorkd_core code in the loading path: MONAI's UNet + a 1x1 conv head read the safetensors directly."""
    from monai.networks.nets import UNet
    from safetensors.torch import load_file

    out = export_expert(models, "abdomen", tmp_path / "abdomen").path
    arch = json.loads((out / "card.json").read_text())["architecture"]
    net = UNet(**arch["kwargs"])
    head = torch.nn.Conv3d(arch["feature_channels"], arch["heads"]["abdomen"], 1)
    state = load_file(str(out / "model.safetensors"))
    net.load_state_dict({k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")})
    head.load_state_dict({k[len("heads.abdomen."):]: v for k, v in state.items() if k.startswith("heads.abdomen.")})
    experts, _ = load_model(models / "experts")
    x = torch.randn(1, 1, 16, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = head(torch.nn.functional.leaky_relu(net(x), 0.01))
    _close(y, _eks_logits(experts, x, "abdomen"))


def test_export_cli_and_errors(models, tmp_path, capsys):
    assert main(["export", "--models", str(models), "--region", "abdomen", "--out", str(tmp_path / "a")]) == 0
    assert "exported the abdomen expert" in capsys.readouterr().out
    assert json.loads((tmp_path / "a" / "card.json").read_text())["kind"] == "expert"
    assert main(["export", "--models", str(models), "--region", "brain", "--out", str(tmp_path / "b")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no region 'brain'" in err
    with pytest.raises(ModelError, match="no model of kind"):
        export_expert(tmp_path / "a" / "..", "abdomen", tmp_path / "c")
