"""Experts on whole networks: MONAI UNet (2D/3D), DynUNet, SegResNet and a 2D classifier."""

from __future__ import annotations

import re

import pytest
import torch
from monai.networks.nets import DynUNet, SegResNet, UNet
from torch import nn

from lorkd_core.errors import ConfigError
from lorkd_core.experts import (
    ExpertLayer,
    active_regions,
    add_region_experts,
    encoder_decoder_ranks,
    expert_layers,
    layer_part,
    set_default_eks_impl,
)

REGIONS = ["abdomen", "brain", "head_neck", "lower_limb", "pelvis", "spine", "thorax", "upper_limb"]


class Classifier2D(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


NETS = {
    "unet3d": (lambda: UNet(3, 1, 2, (4, 8, 16), (2, 2), num_res_units=1), (1, 8, 8, 8)),
    "unet2d": (lambda: UNet(2, 1, 3, (4, 8, 16), (2, 2), num_res_units=2), (1, 16, 16)),
    "dynunet": (lambda: DynUNet(3, 1, 2, [3, 3, 3], [1, 2, 2], [2, 2], filters=[4, 8, 16]), (1, 8, 8, 8)),
    "segresnet": (
        lambda: SegResNet(
            3, init_filters=4, in_channels=1, out_channels=2, norm=("group", {"num_groups": 2})
        ),
        (1, 8, 8, 8),
    ),
    "classifier2d": (Classifier2D, (1, 12, 12)),
}


def build(name: str, seed: int = 0, dtype=torch.float32, b_std: float = 0.2):
    factory, shape = NETS[name]
    torch.manual_seed(seed)
    net = factory().to(dtype).eval()
    report = add_region_experts(net, REGIONS, encoder_decoder_ranks(2))
    g = torch.Generator().manual_seed(seed + 1)
    for _, layer in expert_layers(net):
        for factors in layer.experts.values():
            with torch.no_grad():
                factors.B.copy_(torch.randn(factors.B.shape, generator=g, dtype=dtype) * b_std)
    return net, report, shape


def loop_forward(model, x, index):
    out = None
    for t in index.unique().tolist():
        sel = (index == t).nonzero().flatten()
        with active_regions(model, t):
            y = model(x.index_select(0, sel))
        if out is None:
            out = y.new_zeros((x.shape[0], *y.shape[1:]))
        out = out.index_copy(0, sel, y)
    return out


@pytest.fixture(autouse=True)
def _one_thread_and_default_impl():
    # Tiny tensors: one thread is faster and does not stall when other jobs share the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    set_default_eks_impl("auto")


@pytest.mark.parametrize("name", list(NETS))
def test_whole_network_eks_equals_per_region_loop(name):
    net, report, shape = build(name, dtype=torch.float64)
    assert report.layers, "no layer got experts"
    index = torch.tensor([5, 0, 5, 7, 2, 0])
    x = torch.randn(len(index), *shape, dtype=torch.float64)
    with torch.no_grad():
        ref = loop_forward(net, x, index)
        with active_regions(net, None):
            base = net(x)
        assert (ref - base).abs().max() > 1e-3  # experts are live
        for impl in ("auto", "gather", "lowrank", "lowrank_grouped", "paper"):
            set_default_eks_impl(impl)
            with active_regions(net, index):
                y = net(x)
            torch.testing.assert_close(y, ref, atol=1e-5, rtol=0, msg=lambda m, i=impl: f"{i}: {m}")
        set_default_eks_impl("auto")
        with active_regions(net, index[:1]):  # batch size 1
            torch.testing.assert_close(net(x[:1]), ref[:1], atol=1e-5, rtol=0)
        single = torch.full((3,), 3)  # a single-region batch given as an index tensor
        with active_regions(net, single):
            y = net(x[:3])
        with active_regions(net, "lower_limb"):
            torch.testing.assert_close(y, net(x[:3]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["unet3d", "segresnet"])
def test_whole_network_float32_and_gradients(name):
    eks, _, shape = build(name)
    ref, _, _ = build(name)
    eks.train(), ref.train()
    index = torch.tensor([1, 4, 1, 6])  # 4 of 8 regions absent
    x = torch.randn(len(index), *shape)
    with active_regions(eks, index):
        y = eks(x)
    yr = loop_forward(ref, x, index)
    torch.testing.assert_close(y, yr, atol=1e-4, rtol=1e-4)
    w = torch.randn_like(y)
    (y * w).sum().backward()
    (yr * w).sum().backward()
    ref_params = dict(ref.named_parameters())
    present = {REGIONS[i] for i in index.tolist()}
    n_checked = 0
    for pname, p in eks.named_parameters():
        region = re.search(r"\.experts\.([^.]+)\.", pname)
        if region and region.group(1) not in present:
            assert p.grad is None or torch.count_nonzero(p.grad) == 0, pname
            continue
        assert p.grad is not None, pname
        torch.testing.assert_close(
            p.grad, ref_params[pname].grad, atol=1e-4, rtol=1e-3, msg=lambda m, n=pname: f"{n}: {m}"
        )
        n_checked += 1
    assert n_checked > 10


def test_encoder_decoder_ranks_on_monai_networks():
    expect = {
        "unet3d": {
            "model.0.conv.unit0.conv": "encoder",
            "model.0.residual": "encoder",
            "model.1.submodule.0.conv.unit0.conv": "encoder",
            "model.1.submodule.1.submodule.conv.unit0.conv": "encoder",  # bottom block
            "model.1.submodule.2.0.conv": "decoder",
            "model.1.submodule.2.1.conv.unit0.conv": "decoder",
            "model.2.0.conv": "decoder",
        },
        "dynunet": {
            "input_block.conv1.conv": "encoder",
            "downsamples.0.conv1.conv": "encoder",
            "bottleneck.conv2.conv": "encoder",
            "upsamples.0.transp_conv.conv": "decoder",
            "upsamples.1.conv_block.conv1.conv": "decoder",
            "output_block.conv.conv": "decoder",
        },
        "segresnet": {
            "convInit.conv": "encoder",
            "down_layers.1.0.conv": "encoder",
            "down_layers.2.1.conv1.conv": "encoder",
            "up_samples.0.0.conv": "decoder",
            "up_layers.1.0.conv2.conv": "decoder",
            "conv_final.2.conv": "decoder",
        },
    }
    for name, parts in expect.items():
        net, report, _ = build(name)
        ranks = report.ranks()
        for layer_name, part in parts.items():
            assert layer_part(net, layer_name) == part, (name, layer_name)
            want = 2 if part == "encoder" else 4
            assert ranks[layer_name] == dict.fromkeys(REGIONS, want), (name, layer_name)
        # every wrapped layer is one or the other, and both kinds occur
        assert {r["abdomen"] for r in ranks.values()} == {2, 4}
    # path-only rule (no model) agrees for MONAI UNet paths
    assert layer_part(None, "model.1.submodule.2.0.conv") == "decoder"
    assert layer_part(None, "model.1.submodule.1.submodule.residual") == "encoder"
    assert layer_part(None, "upsamples.0.transp_conv.conv") == "decoder"
    spec = encoder_decoder_ranks({t: i for i, t in enumerate(REGIONS)}, factor=3)
    assert spec("up_layers.0.0.conv1.conv", "spine") == 15 and spec("down_layers.0.conv", "spine") == 5


def test_per_region_rank_dict_and_rank_zero():
    torch.manual_seed(0)
    net = UNet(3, 1, 2, (4, 8, 16), (2, 2), num_res_units=0)
    ranks = {t: i % 3 for i, t in enumerate(REGIONS)}  # abdomen 0, brain 1, head_neck 2, ...
    report = add_region_experts(net, REGIONS, ranks, alpha=2.0)
    for _, layer in expert_layers(net):
        assert "abdomen" not in layer.experts
        assert layer.experts["brain"].rank == 1 and layer.experts["head_neck"].rank == 2
        assert layer.scales["head_neck"] == 1.0 and layer.scales["brain"] == 2.0
    assert report.expert_params["abdomen"] == 0
    x = torch.randn(2, 1, 8, 8, 8)
    with torch.no_grad():
        for _, layer in expert_layers(net):
            for f in layer.experts.values():
                f.B.normal_()
        with active_regions(net, "abdomen"):
            a = net(x)
        with active_regions(net, None):
            b = net(x)
    assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="missing \\['upper_limb'\\]"):
        add_region_experts(UNet(3, 1, 2, (4, 8), (2,)), REGIONS, {t: 1 for t in REGIONS[:-1]})


def test_report_counts_targets_and_freezing():
    torch.manual_seed(0)
    net = Classifier2D()
    n_backbone = sum(p.numel() for p in net.parameters())
    report = add_region_experts(net, REGIONS, 2, targets=["features"], train_backbone=False)
    assert report.wrapped == ["features.0", "features.2"]
    # r * (fan_in + out) per region: features.0: 2*(1*9 + 4), features.2: 2*(4*9 + 8)
    assert report.expert_params == dict.fromkeys(REGIONS, 2 * 13 + 2 * 44)
    assert report.backbone_params == n_backbone
    assert report.trainable_params == report.total_expert_params == 8 * 114
    assert not any(p.requires_grad for n, p in net.named_parameters() if ".experts." not in n)
    assert isinstance(net.fc, nn.Linear) and not isinstance(net.fc, ExpertLayer)
    text = str(report)
    assert "features.2" in text and "Conv2d" in text and "912" in text
    assert report.to_dict()["layers"][1]["ranks"]["spine"] == 2

    with pytest.raises(ConfigError, match="already has region experts"):
        add_region_experts(net, REGIONS, 2)

    for targets, want in [
        (re.compile(r"^fc$"), ["fc"]),
        (r"features\.[02]", ["features.0", "features.2"]),
        (lambda name, m: isinstance(m, nn.Linear), ["fc"]),
        (None, ["features.0", "features.2", "fc"]),
    ]:
        torch.manual_seed(0)
        fresh = Classifier2D()
        assert add_region_experts(fresh, REGIONS, 1, targets=targets).wrapped == want
    fresh = Classifier2D()
    r = add_region_experts(fresh, REGIONS, 1, exclude=["fc"])
    assert r.wrapped == ["features.0", "features.2"] and r.skipped == [("fc", "excluded")]
    assert all(p.requires_grad for p in fresh.parameters())


def test_shared_modules_are_wrapped_everywhere():
    # DynUNet's skip_layers reach the same blocks as downsamples/upsamples: no unwrapped conv may remain.
    net, report, shape = build("dynunet")
    base_ids = {id(layer.base_layer) for _, layer in expert_layers(net)}
    for module in net.modules():
        if isinstance(module, ExpertLayer):
            continue
        for child in module.children():
            assert not (isinstance(child, nn.Conv3d | nn.ConvTranspose3d) and id(child) not in base_ids)
    assert len(report.layers) == len(base_ids)


def test_invalid_region_lists():
    for bad in ([], "abdomen", ["a", "a"], ["a.b"], ["keys"]):
        with pytest.raises(ConfigError):
            add_region_experts(Classifier2D(), bad, 1)
