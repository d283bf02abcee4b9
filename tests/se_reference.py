"""Independent references for the excitation-analysis tests (not a test module: imported by them).

A hand-written forward pass of serobust's SmallCNN whose SE gates can be set to any excitation, the
SE excitation written out from the weights, and a textbook Linf PGD: expected values computed
without the code under test.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from serobust.excitation.adapters import find_se_modules
from serobust.excitation.probe import ExcitationProbe
from serobust.models.cnn import ConvBlock


def manual_s(se: nn.Module, u: torch.Tensor) -> torch.Tensor:
    """The excitation of serobust's SqueezeExcite written out: sigmoid(W2 relu(W1 mean_hw(u)))."""
    z = u.mean((2, 3))  # (B, C)
    return torch.sigmoid(F.linear(torch.relu(F.linear(z, se.fc1.weight, se.fc1.bias)), se.fc2.weight, se.fc2.bias))


def conv_index(model: nn.Module, k: int) -> int:
    """Index in model.features of the k-th ConvBlock."""
    return [i for i, m in enumerate(model.features) if isinstance(m, ConvBlock)][k]


def manual_forward(model: nn.Module, x: torch.Tensor, gate=None):
    """SmallCNN forward by hand; ``gate(k, u) -> s (B, C) or (C,)`` replaces block k's excitation.

    Returns (logits, list of the s used per block, list of u per block).
    """
    h = model.normalize(x)
    used_s, us, k = [], [], 0
    for layer in model.features:
        if isinstance(layer, ConvBlock):
            u = torch.relu(layer.bn(layer.conv(h)))
            s = manual_s(layer.se, u) if gate is None else gate(k, u)
            s = s.expand(u.shape[0], u.shape[1])
            used_s.append(s)
            us.append(u)
            h = u * s[:, :, None, None]
            k += 1
        else:
            h = layer(h)
    return model.fc(torch.flatten(model.pool(h), 1)), used_s, us


def reference_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
                  start: torch.Tensor | None = None) -> torch.Tensor:
    """Linf PGD written from the textbook definition (from ``start``, default x)."""
    x_adv = (x if start is None else start).clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (g,) = torch.autograd.grad(loss, x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def probe_s(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each SE block's excitation for x, name -> (N, C), read with the ExcitationProbe."""
    with torch.no_grad(), ExcitationProbe(model) as probe:
        model(x)
    return {name: rec["s"] for name, rec in probe.records().items()}


def acc(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(1) == y).float().mean().item()


def block_names(model: nn.Module) -> list[str]:
    return [b.name for b in find_se_modules(model)]


def digits_fixtures(n: int = 160, eps: float = 0.1):
    """Module fixtures ``se_model`` (the trained SE twin), ``test_xy`` (n test digits and labels) and
    ``x_adv_pgd`` (their textbook-PGD adversarials on the twin at ``eps``), for
    ``se_model, test_xy, x_adv_pgd = digits_fixtures()`` at the top of a test module."""

    @pytest.fixture(scope="module")
    def se_model(trained_digits_pair):
        return trained_digits_pair[1]

    @pytest.fixture(scope="module")
    def test_xy(digits_xy):
        _, (x, y) = digits_xy
        return x[:n], y[:n]

    @pytest.fixture(scope="module")
    def x_adv_pgd(se_model, test_xy):
        x, y = test_xy
        return reference_pgd(se_model, x, y, eps, eps / 4, 10)

    return se_model, test_xy, x_adv_pgd
