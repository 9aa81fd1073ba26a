"""Merging experts into plain weights (a standalone copy, or in place) and saving/loading expert sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.networks.nets import UNet
from safetensors.torch import load_file, save_file
from torch import nn

from lorkd_core.errors import ModelError
from lorkd_core.experts import (
    ExpertLayer,
    active_regions,
    add_region_experts,
    encoder_decoder_ranks,
    expert_layers,
    expert_state_dict,
    load_expert_set,
    merge,
    merged_expert,
    save_expert_set,
    unmerge,
)

REGIONS = ["abdomen", "brain", "head_neck", "lower_limb", "pelvis", "spine", "thorax", "upper_limb"]
ARCH = {"name": "monai.UNet", "kwargs": {"spatial_dims": 3, "channels": [4, 8, 16], "strides": [2, 2]}}


class Classifier2D(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(4, 4, 2, stride=2, bias=False)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.up(torch.relu(self.conv(x)))).mean((2, 3)))


def unet(seed: int = 0, channels=(4, 8, 16)) -> nn.Module:
    torch.manual_seed(seed)
    return UNet(3, 1, 2, channels, (2,) * (len(channels) - 1), num_res_units=1).eval()


def with_experts(net: nn.Module, seed: int = 0, ranks=None) -> nn.Module:
    add_region_experts(net, REGIONS, ranks if ranks is not None else encoder_decoder_ranks(2), alpha=4.0)
    g = torch.Generator().manual_seed(seed)
    for _, layer in expert_layers(net):
        for f in layer.experts.values():
            with torch.no_grad():
                f.B.copy_(torch.randn(f.B.shape, generator=g) * 0.1)
    return net


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny tensors: one thread is faster and does not stall when other jobs share the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def snapshot(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("make,shape", [(unet, (1, 8, 8, 8)), (Classifier2D, (1, 8, 8))])
def test_merged_expert_matches_eks_and_is_plain(make, shape):
    net = with_experts(make())
    before = snapshot(net)
    x = torch.randn(3, *shape)
    for t in ("abdomen", "spine"):
        plain = merged_expert(net, t)
        assert not any(isinstance(m, ExpertLayer) for m in plain.modules())
        assert not any(".experts." in k or "base_layer" in k for k in plain.state_dict())
        with torch.no_grad():
            with active_regions(net, torch.tensor([REGIONS.index(t)] * 2 + [REGIONS.index("brain")])):
                eks = net(x)
            torch.testing.assert_close(plain(x)[:2], eks[:2], atol=1e-5, rtol=0)
            with active_regions(net, None):
                assert (plain(x) - net(x)).abs().max() > 1e-3  # the expert is really in the weights
    assert_same_state(before, snapshot(net))  # backbone and experts untouched
    # the copy has the original module structure and parameter names
    fresh = make()
    assert plain.state_dict().keys() == fresh.state_dict().keys()
    # requires_grad follows the base
    for _, layer in expert_layers(net):
        layer.base_layer.weight.requires_grad_(False)
    frozen = merged_expert(net, 0)
    assert not any(
        p.requires_grad for n, p in frozen.named_parameters() if n.endswith("weight") and p.dim() > 1
    )


def test_in_place_merge_unmerge_never_double_adds():
    net = with_experts(Classifier2D())
    x = torch.randn(2, 1, 8, 8)
    w0 = {n: layer.base_layer.weight.detach().clone() for n, layer in expert_layers(net)}
    with torch.no_grad():
        with active_regions(net, "thorax"):
            want_thorax = net(x)
        with active_regions(net, "brain"):
            want_brain = net(x)

        assert sorted(merge(net, "thorax")) == ["conv", "fc", "up"]
        assert merge(net, "thorax") == []  # already merged: nothing added again
        with active_regions(net, "thorax"):
            torch.testing.assert_close(net(x), want_thorax, atol=1e-5, rtol=0)
        with pytest.raises(ModelError, match="'thorax' merged"):
            with active_regions(net, None):
                net(x)
        with pytest.raises(ModelError, match="merged"):
            with active_regions(net, torch.tensor([0, 1])):
                net(x)
        plain = merged_expert(net, "brain")  # from W0, not from the merged weight
        torch.testing.assert_close(plain(x), want_brain, atol=1e-5, rtol=0)

        merge(net, "brain")  # switches: thorax out, brain in
        with active_regions(net, "brain"):
            torch.testing.assert_close(net(x), want_brain, atol=1e-5, rtol=0)
        assert sorted(unmerge(net)) == ["conv", "fc", "up"]
        assert unmerge(net) == []
    for n, layer in expert_layers(net):
        assert torch.equal(layer.base_layer.weight, w0[n]), n  # bit-exact restore
        assert layer.merged_region is None
    # a single layer merges on its own too
    merge(net.conv, "spine")
    assert net.conv.merged_region == "spine" and net.fc.merged_region is None
    unmerge(net.conv)
    assert torch.equal(net.conv.base_layer.weight, w0["conv"])


def test_safe_merge_refuses_non_finite_weights():
    net = with_experts(Classifier2D())
    w0 = net.up.base_layer.weight.detach().clone()
    with torch.no_grad():
        net.up.experts["pelvis"].B[0, 0] = float("nan")
    with pytest.raises(ModelError, match="'up'.*NaN"):
        merge(net.up, "pelvis")
    assert net.up.merged_region is None and torch.equal(net.up.base_layer.weight, w0)
    with pytest.raises(ModelError, match="NaN"):
        merged_expert(net, "pelvis")


def test_save_load_round_trip_is_bit_exact(tmp_path: Path):
    src = with_experts(unet(0), seed=3)
    card_path = save_expert_set(src, tmp_path / "set", card_extra={"architecture": ARCH})
    assert card_path == tmp_path / "set" / "experts.json"
    assert sorted(p.name for p in (tmp_path / "set").iterdir()) == ["experts.json", "experts.safetensors"]
    card = json.loads(card_path.read_text())
    assert card["format"] == "lorkd-experts/1"
    assert card["region_order"] == REGIONS and card["alpha"] == 4.0 and card["architecture"] == ARCH
    assert card["layers"]["model.2.0.conv"]["ranks"]["spine"] == 4  # decoder: 2 x encoder rank
    assert card["layers"]["model.0.conv.unit0.conv"]["scales"]["spine"] == 2.0
    assert set(card["tensors"]) == set(expert_state_dict(src))
    assert "model.0.conv.unit0.conv.experts.abdomen.A" in card["tensors"]

    dst = with_experts(unet(0), seed=99)  # same backbone, different experts
    backbone = {k: v.clone() for k, v in dst.state_dict().items() if ".experts." not in k}
    load_expert_set(dst, tmp_path / "set")
    want, got = expert_state_dict(src), expert_state_dict(dst)
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    for k, v in dst.state_dict().items():
        if ".experts." not in k:
            assert torch.equal(v, backbone[k]), k
    x = torch.randn(2, 1, 8, 8, 8)
    idx = torch.tensor([1, 6])
    with torch.no_grad(), active_regions(src, idx):
        a = src(x)
    with torch.no_grad(), active_regions(dst, idx):
        b = dst(x)
    assert torch.equal(a, b)

    # the X.safetensors + X.json form
    save_expert_set(src, tmp_path / "flat" / "abdomen_set.safetensors")
    assert (tmp_path / "flat" / "abdomen_set.json").exists()
    load_expert_set(dst, tmp_path / "flat" / "abdomen_set.safetensors")
    assert not [p for p in (tmp_path / "flat").iterdir() if p.name.startswith(".")]  # no temp files left


def _expect_model_error(dst: nn.Module, path: Path, match: str) -> None:
    before = {k: v.clone() for k, v in expert_state_dict(dst).items()}
    with pytest.raises(ModelError, match=match):
        load_expert_set(dst, path)
    for k, v in expert_state_dict(dst).items():
        assert torch.equal(v, before[k]), f"{k} changed by a failed load"


def test_load_refuses_mismatches_naming_the_layer(tmp_path: Path):
    src = with_experts(unet(0))
    folder = tmp_path / "set"
    save_expert_set(src, folder)
    card = json.loads((folder / "experts.json").read_text())

    # another architecture: channel counts differ
    _expect_model_error(
        with_experts(unet(0, channels=(4, 8, 32))), folder, r"layer 'model\.1\.submodule\.1\.submodule"
    )
    # same architecture, other ranks in one layer
    spec = encoder_decoder_ranks(2)
    other = with_experts(unet(0), ranks=lambda name, t: 3 if name == "model.2.0.conv" else spec(name, t))
    _expect_model_error(
        other, folder, r"layer 'model\.2\.0\.conv': expert set ranks .*'abdomen': 4.*'abdomen': 3"
    )
    # experts on fewer layers
    fewer = unet(0)
    add_region_experts(fewer, REGIONS, encoder_decoder_ranks(2), alpha=4.0, exclude=["residual"])
    _expect_model_error(fewer, folder, r"layer 'model\.0\.residual' is in the expert set")
    # another region order
    reordered = unet(0)
    add_region_experts(reordered, REGIONS[::-1], encoder_decoder_ranks(2), alpha=4.0)
    _expect_model_error(reordered, folder, "region order")
    # another alpha -> other scales
    scaled = unet(0)
    add_region_experts(scaled, REGIONS, encoder_decoder_ranks(2), alpha=1.0)
    _expect_model_error(scaled, folder, "scales")

    dst = with_experts(unet(0), seed=5)
    tensors = load_file(str(folder / "experts.safetensors"))
    key = "model.1.submodule.0.conv.unit0.conv.experts.brain.A"
    # a tensor whose shape disagrees with the card and the model
    bad = dict(tensors)
    bad[key] = torch.zeros(3, bad[key].shape[1])
    save_file(bad, str(folder / "experts.safetensors"))
    _expect_model_error(dst, folder, r"layer 'model\.1\.submodule\.0\.conv\.unit0\.conv'.*shape")
    # a missing tensor
    missing = {k: v for k, v in tensors.items() if k != key}
    save_file(missing, str(folder / "experts.safetensors"))
    _expect_model_error(dst, folder, r"layer 'model\.1\.submodule\.0\.conv\.unit0\.conv'.*missing")
    # an extra tensor
    extra = dict(tensors)
    extra["model.0.conv.unit0.conv.experts.liver.A"] = torch.zeros(2, 2)
    save_file(extra, str(folder / "experts.safetensors"))
    _expect_model_error(dst, folder, r"layer 'model\.0\.conv\.unit0\.conv'.*no place")
    # unknown format version
    save_file(tensors, str(folder / "experts.safetensors"))
    (folder / "experts.json").write_text(json.dumps({**card, "format": "lorkd-experts/9"}))
    _expect_model_error(dst, folder, "lorkd-experts/9")
    # not JSON / no card at all
    (folder / "experts.json").write_text("{not json")
    _expect_model_error(dst, folder, "not readable JSON")
    _expect_model_error(dst, tmp_path / "nowhere", "not found")
    # the intact set still loads
    (folder / "experts.json").write_text(json.dumps(card))
    load_expert_set(dst, folder)


def test_checkpoint_code_never_unpickles():
    import lorkd_core.experts.checkpoint as ck

    source = Path(ck.__file__).read_text()
    assert "torch.load" not in source and "pickle" not in source
