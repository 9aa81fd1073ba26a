"""Expert layers on their own: EKS equals the per-region loop, gradients stay separated, edge cases."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lorkd_core.errors import ConfigError, ModelError
from lorkd_core.experts import (
    EKS_IMPLS,
    ExpertConv,
    ExpertConvTranspose,
    ExpertLinear,
    UnsupportedLayerError,
    active_regions,
    add_region_experts,
    delta_weight,
    set_active_regions,
    set_default_eks_impl,
)

REGIONS = ["a", "b", "c", "d"]
RANKS = {"a": 2, "b": 3, "c": 0, "d": 1}  # c: no expert anywhere; ranks differ per region

# (name, layer factory, sample input shape without batch)
LAYERS = [
    ("conv2d_stride_bias", lambda: nn.Conv2d(3, 5, 3, stride=2, padding=1), (3, 9, 8)),
    (
        "conv2d_dilated_nobias",
        lambda: nn.Conv2d(4, 6, (3, 1), stride=(1, 2), padding=(2, 0), dilation=2, bias=False),
        (4, 10, 9),
    ),
    ("conv2d_same", lambda: nn.Conv2d(2, 3, 3, padding="same"), (2, 7, 7)),
    ("conv3d_stride", lambda: nn.Conv3d(2, 4, 3, stride=2, padding=1), (2, 7, 6, 5)),
    ("conv3d_1x1_nobias", lambda: nn.Conv3d(3, 5, 1, bias=False), (3, 4, 4, 4)),
    ("convT2d_outpad", lambda: nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1), (4, 5, 6)),
    ("convT3d_nobias", lambda: nn.ConvTranspose3d(3, 2, 2, stride=2, bias=False), (3, 3, 4, 3)),
    (
        "convT3d_dilated",
        lambda: nn.ConvTranspose3d(2, 3, 3, stride=2, padding=1, output_padding=1, dilation=2),
        (2, 3, 3, 3),
    ),
    ("linear", lambda: nn.Linear(7, 5), (7,)),
    ("linear_tokens_nobias", lambda: nn.Linear(6, 4, bias=False), (3, 6)),
]

BATCHES = {
    "mixed": [0, 1, 3, 1, 0],
    "contiguous": [0, 0, 1, 1, 3],
    "with_rank0": [2, 0, 2, 3],
    "single_region": [1, 1, 1],
    "batch1": [3],
    "only_rank0": [2, 2],
}


class Holder(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)


def make(factory, seed: int = 0, b_std: float = 0.5) -> Holder:
    torch.manual_seed(seed)
    model = Holder(factory())
    add_region_experts(model, REGIONS, RANKS, alpha=3.0)  # scales 1.5, 1, -, 3: a dropped scale shows
    for factors in model.layer.experts.values():
        with torch.no_grad():
            factors.B.normal_(0.0, b_std)  # B = 0 would hide every routing bug
    return model


def loop_forward(model: nn.Module, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The reference: split by region, run each group with that region only, reassemble."""
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


@pytest.mark.parametrize("impl", EKS_IMPLS)
@pytest.mark.parametrize("name,factory,shape", LAYERS, ids=[c[0] for c in LAYERS])
def test_eks_equals_per_region_loop(name, factory, shape, impl):
    model = make(factory)
    set_default_eks_impl(impl)
    for batch, regions in BATCHES.items():
        index = torch.tensor(regions)
        x = torch.randn(len(index), *shape)
        with torch.no_grad():
            with active_regions(model, index):
                y = model(x)
            ref = loop_forward(model, x, index)
            base = model.layer.base_layer(x)
        torch.testing.assert_close(y, ref, atol=1e-5, rtol=0, msg=lambda m, b=batch: f"batch {b}: {m}")
        if batch != "only_rank0":  # the experts must actually change something
            assert (ref - base).abs().max() > 1e-2, batch


@pytest.mark.parametrize("impl", ["gather", "lowrank", "lowrank_grouped", "paper"])
@pytest.mark.parametrize("name,factory,shape", LAYERS, ids=[c[0] for c in LAYERS])
def test_gradient_separation(name, factory, shape, impl):
    index = torch.tensor([3, 0, 0, 3, 2])  # a, d and rank-0 c present; b absent
    x = torch.randn(len(index), *shape)
    eks, ref = make(factory), make(factory)
    set_default_eks_impl(impl)
    with active_regions(eks, index):
        y = eks(x)
    w = torch.randn_like(y)
    (y * w).sum().backward()
    (loop_forward(ref, x, index) * w).sum().backward()

    for region in ("a", "d"):
        for p in ("A", "B"):
            got = getattr(eks.layer.experts[region], p).grad
            want = getattr(ref.layer.experts[region], p).grad
            assert got is not None and got.abs().max() > 0
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    for p in ("A", "B"):  # absent region: no gradient at all (the paper form gives exact zeros)
        g = getattr(eks.layer.experts["b"], p).grad
        assert g is None or torch.count_nonzero(g) == 0
    for p in ("weight", "bias"):
        got = getattr(eks.layer.base_layer, p)
        if got is None:
            continue
        torch.testing.assert_close(got.grad, getattr(ref.layer.base_layer, p).grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name,factory,shape", LAYERS[::3], ids=[c[0] for c in LAYERS[::3]])
def test_backbone_gets_gradient_from_every_sample(name, factory, shape):
    index = torch.tensor([1, 3, 0, 2])
    x = torch.randn(len(index), *shape)
    model = make(factory)
    with active_regions(model, index):
        y = model(x)
    w = torch.randn_like(y)
    (y * w).sum().backward()
    batch_grad = model.layer.base_layer.weight.grad.clone()

    per_sample = []
    for i, t in enumerate(index.tolist()):
        model.zero_grad(set_to_none=True)
        with active_regions(model, t):
            (model(x[i : i + 1]) * w[i : i + 1]).sum().backward()
        per_sample.append(model.layer.base_layer.weight.grad.clone())
    assert all(g.abs().max() > 0 for g in per_sample)
    torch.testing.assert_close(batch_grad, torch.stack(per_sample).sum(0), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name,factory,shape", LAYERS, ids=[c[0] for c in LAYERS])
def test_fresh_experts_equal_the_backbone(name, factory, shape):
    torch.manual_seed(0)
    model = Holder(factory())
    add_region_experts(model, REGIONS, RANKS)
    x = torch.randn(4, *shape)
    with torch.no_grad():
        base = model.layer.base_layer(x)
        with active_regions(model, "b"):
            assert torch.equal(model(x), base)
        with active_regions(model, torch.tensor([0, 1, 2, 3])):
            torch.testing.assert_close(model(x), base, atol=1e-6, rtol=0)
        assert torch.equal(model(x), base)  # routing None after the block


@pytest.mark.parametrize("name,factory,shape", LAYERS, ids=[c[0] for c in LAYERS])
def test_delta_weight_matches_the_definition(name, factory, shape):
    model = make(factory)
    layer = model.layer
    a, b = layer.experts["b"].A, layer.experts["b"].B
    dw = delta_weight(layer, "b")
    w0 = layer.base_layer.weight
    assert dw.shape == w0.shape
    if isinstance(layer, ExpertConvTranspose):  # weight (in, out, *k): dW[i, o] = (B A)[o, i]
        expected = (b @ a).reshape(w0.shape[1], w0.shape[0], *w0.shape[2:]).transpose(0, 1)
    else:
        expected = (b @ a).reshape(w0.shape)
    torch.testing.assert_close(dw, expected * layer.scales["b"])
    assert torch.count_nonzero(delta_weight(layer, "c")) == 0
    # mode 2 is an ordinary call with W0 + dW
    x = torch.randn(2, *shape)
    plain = factory()
    plain.load_state_dict(layer.base_layer.state_dict())
    with torch.no_grad():
        plain.weight.add_(dw)
        with active_regions(model, "b"):
            torch.testing.assert_close(model(x), plain(x), atol=1e-5, rtol=0)


def test_factor_shapes_and_init():
    torch.manual_seed(0)
    model = Holder(nn.Conv3d(4, 6, 3))
    add_region_experts(model, REGIONS, RANKS, alpha=4.0)
    layer = model.layer
    assert isinstance(layer, ExpertConv)
    assert sorted(layer.experts.keys()) == ["a", "b", "d"]  # rank 0: no parameters
    assert tuple(layer.experts["b"].A.shape) == (3, 4 * 27)
    assert tuple(layer.experts["b"].B.shape) == (6, 3)
    assert torch.count_nonzero(layer.experts["b"].B) == 0
    bound = 1 / (4 * 27) ** 0.5  # kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    a = layer.experts["b"].A
    assert a.abs().max() <= bound and a.abs().max() > 0.8 * bound
    assert layer.scales == {"a": 2.0, "b": 4.0 / 3, "c": 1.0, "d": 4.0}
    # attribute access falls through to the base layer
    assert layer.in_channels == 4 and layer.weight is layer.base_layer.weight

    t = Holder(nn.ConvTranspose2d(4, 6, 3))
    add_region_experts(t, REGIONS, 2)
    assert tuple(t.layer.experts["a"].A.shape) == (2, 4 * 9)
    assert tuple(t.layer.experts["a"].B.shape) == (6, 2)
    lin = Holder(nn.Linear(5, 3))
    add_region_experts(lin, REGIONS, 2)
    assert isinstance(lin.layer, ExpertLinear)
    assert tuple(lin.layer.experts["a"].A.shape) == (2, 5)


def test_per_layer_impl_overrides_default():
    model = make(LAYERS[0][1])
    index = torch.tensor([0, 1, 3])
    x = torch.randn(3, *LAYERS[0][2])
    model.layer.eks_impl = "lowrank"
    calls = []
    orig = type(model.layer)._lowrank

    def spy(self, *args):
        calls.append(1)
        return orig(self, *args)

    type(model.layer)._lowrank = spy
    try:
        with torch.no_grad(), active_regions(model, index):
            model(x)
    finally:
        type(model.layer)._lowrank = orig
    assert len(calls) == 3  # one low-rank path per present region
    with pytest.raises(ConfigError, match="unknown EKS implementation"):
        set_default_eks_impl("fast")


@pytest.mark.parametrize(
    "layer,match",
    [
        (nn.Conv2d(4, 4, 3, groups=2), "groups=2"),
        (nn.Conv3d(4, 4, 3, groups=4), "groups=4"),
        (nn.ConvTranspose2d(4, 4, 3, groups=2), "groups=2"),
        (nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), "padding_mode='reflect'"),
        (nn.Conv1d(4, 4, 3), "Conv1d"),
    ],
)
def test_unsupported_layers_are_refused_by_name(layer, match):
    model = nn.Sequential()
    model.add_module("stem", nn.Conv2d(4, 4, 1))
    model.add_module("odd", layer)
    with pytest.raises(UnsupportedLayerError, match=match) as err:
        add_region_experts(model, REGIONS, 2)
    assert "'odd'" in str(err.value) and "exclude" in str(err.value)
    assert isinstance(err.value, ConfigError) and isinstance(err.value, TypeError)
    assert type(model.stem) is nn.Conv2d  # nothing was wrapped
    report = add_region_experts(model, REGIONS, 2, exclude=["odd"])
    assert report.wrapped == ["stem"] and report.skipped == [("odd", "excluded")]


def test_routing_errors():
    model = make(LAYERS[0][1])
    x = torch.randn(3, *LAYERS[0][2])
    with pytest.raises(ConfigError, match="unknown region 'liver'"):
        set_active_regions(model, "liver")
    with pytest.raises(ConfigError, match="out of range"):
        set_active_regions(model, 4)
    with pytest.raises(ConfigError, match="0..3"):
        set_active_regions(model, torch.tensor([0, 5]))
    with pytest.raises(ConfigError, match="integers"):
        set_active_regions(model, torch.tensor([0.0, 1.0]))
    with pytest.raises(ConfigError, match="shape"):
        set_active_regions(model, torch.zeros(2, 2, dtype=torch.long))
    with active_regions(model, torch.tensor([0, 1])), pytest.raises(ModelError, match="2 entries.*3 samples"):
        model(x)
    # names are accepted as well as indices, and route the same way
    with torch.no_grad():
        with active_regions(model, ["a", "d", "b"]):
            by_name = model(x)
        with active_regions(model, torch.tensor([0, 3, 1])):
            by_index = model(x)
    assert torch.equal(by_name, by_index)
    with pytest.raises(ConfigError, match="no region experts"):
        set_active_regions(nn.Linear(2, 2), None)
