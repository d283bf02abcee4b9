"""The paired model zoo: shapes, parameter counts, pairing bit for bit, SE placement."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import serobust
from serobust.models import SqueezeExcite, build_model, build_pair, se_hidden_width

INPUTS = {"cnn": (1, 28), "resnet20": (3, 32), "resnet32": (3, 32), "resnet56": (3, 32), "preact_resnet18": (3, 32)}


def test_registry_lists_every_family():
    assert serobust.ARCHITECTURES == ["cnn", "resnet20", "resnet32", "resnet56", "preact_resnet18"]


def test_unknown_architecture_lists_valid_names():
    with pytest.raises(ValueError, match="resnet20.*preact_resnet18"):
        build_pair("resnet18", num_classes=10)


@pytest.mark.parametrize("arch", serobust.ARCHITECTURES)
def test_pair_shares_every_common_entry_bit_for_bit(arch):
    cin, _ = INPUTS[arch]
    base, se = build_pair(arch, num_classes=10, in_channels=cin, seed=3)
    b_sd, s_sd = base.state_dict(), se.state_dict()
    assert set(b_sd) <= set(s_sd)
    for k, v in b_sd.items():
        assert torch.equal(v, s_sd[k]), k
    se_names = {n for n, m in se.named_modules() if isinstance(m, SqueezeExcite)}
    extra = set(s_sd) - set(b_sd)
    assert extra and all(k.rsplit(".", 2)[0] in se_names for k in extra)
    assert not any(isinstance(m, SqueezeExcite) for m in base.modules())


@pytest.mark.parametrize("arch", serobust.ARCHITECTURES)
def test_forward_backward_and_no_nan(arch):
    cin, size = INPUTS[arch]
    for model in build_pair(arch, num_classes=7, in_channels=cin, seed=0):
        x = torch.rand(2, cin, size, size, requires_grad=True)
        out = model(x)
        assert out.shape == (2, 7) and torch.isfinite(out).all()
        out.sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("size", [8, 28, 32])
def test_cnn_runs_on_8_28_and_32_pixel_input(size):
    _, se = build_pair("cnn", num_classes=10, in_channels=1)
    assert se(torch.rand(3, 1, size, size)).shape == (3, 10)


def test_same_seed_same_model_different_seed_differs():
    a = build_model("resnet20", 10, se=True, seed=1).state_dict()
    b = build_model("resnet20", 10, se=True, seed=1).state_dict()
    c = build_model("resnet20", 10, se=True, seed=2).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


def test_build_does_not_touch_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_pair("cnn", num_classes=10, in_channels=1)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("arch,params", [("resnet20", 0.27e6), ("resnet32", 0.46e6), ("resnet56", 0.85e6),
                                         ("preact_resnet18", 11.17e6)])
def test_reference_parameter_counts(arch, params):
    # He et al. 2016 / akamaster's table: ResNet-20 0.27M, ResNet-32 0.46M, ResNet-56 0.85M
    base = build_model(arch, num_classes=10)
    n = sum(p.numel() for p in base.parameters())
    assert abs(n - params) / params < 0.01, n


def test_se_gate_computes_the_paper_formula():
    torch.manual_seed(0)
    gate = SqueezeExcite(32, reduction=4)
    u = torch.randn(5, 32, 6, 6)
    z = u.mean(dim=(2, 3))
    s = torch.sigmoid(torch.relu(z @ gate.fc1.weight.T + gate.fc1.bias) @ gate.fc2.weight.T + gate.fc2.bias)
    torch.testing.assert_close(gate(u), u * s[:, :, None, None])
    assert isinstance(gate.gate, nn.Sigmoid) and isinstance(gate.squeeze, nn.AdaptiveAvgPool2d)


@pytest.mark.parametrize("channels,r,floor,expected", [(16, 16, 8, 8), (64, 16, 8, 8), (256, 16, 8, 16),
                                                       (4, 16, 8, 4), (64, 4, 8, 16), (16, 16, 1, 1)])
def test_hidden_width_floor(channels, r, floor, expected):
    assert se_hidden_width(channels, r, floor) == expected


@pytest.mark.parametrize("bad", [0, -1, float("inf")])
def test_bad_reduction_raises(bad):
    with pytest.raises(ValueError, match="reduction"):
        build_pair("cnn", num_classes=10, in_channels=1, reduction=bad)


def test_se_sits_on_the_residual_branch_before_the_addition():
    _, se = build_pair("resnet20", num_classes=10, seed=0)
    block = se.layer1[0]
    x = torch.rand(2, 16, 8, 8)
    # force the gate to zero: the block must reduce to relu(shortcut(x)) = relu(x)
    nn.init.zeros_(block.se.fc2.weight)
    nn.init.constant_(block.se.fc2.bias, -1e4)
    torch.testing.assert_close(block(x), torch.relu(x))


def test_normalization_is_the_first_layer_and_uses_the_given_stats():
    base, _ = build_pair("cnn", num_classes=10, in_channels=1, mean=(0.2,), std=(0.4,))
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(base.normalize(x), (x - 0.2) / 0.4)
    assert next(iter(base.named_children()))[0] == "normalize"
    with pytest.raises(ValueError, match="one value per input channel"):
        build_pair("cnn", num_classes=10, in_channels=1, mean=(0.2, 0.3), std=(0.4, 0.5))


def test_building_a_model_leaves_every_generator_alone(monkeypatch):
    """Seeded initialization touches neither the global CPU stream nor any GPU's generator (the registry
    seeds the CPU generator inside fork_rng; torch.manual_seed would reseed every GPU too)."""
    reseeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: reseeded.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: reseeded.append(seed))
    before = torch.get_rng_state()
    a = serobust.build_model("cnn", 10, 1, seed=3)
    b = serobust.build_model("cnn", 10, 1, seed=3)
    assert reseeded == [] and torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = serobust.build_model("cnn", 10, 1, seed=4)
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))
