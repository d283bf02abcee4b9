"""Carlini-Wagner L2 (Carlini & Wagner 2017, "Towards evaluating the robustness of neural networks"):
a minimum-norm attack. It minimizes ``||delta||_2^2 + c * f(x + delta)`` with Adam in tanh space
(``x + delta = (tanh(w) + 1) / 2`` keeps the image in [0, 1] without clipping), where
``f = max(Z_y - max_{i != y} Z_i, -kappa)`` on the logits Z, and keeps per example the smallest
perturbation that fooled the model.

It has no budget: the harness runs it once per batch and scores it at each eps by whether the
perturbation it found is within eps (L2, pixel units); otherwise the clean input counts. One fixed ``c``
(no binary search over c, as in torchattacks), so it is an upper bound on the minimal L2 norm.

Two departures from ``torchattacks.CW``, both back to the paper's reference code (``l2_attack.py``):
the image is mapped to tanh space as ``atanh((2x - 1) * 0.999999)``, because ``atanh(+-1)`` is infinite
and torchattacks' mapping freezes every pixel at exactly 0 or 1 (most of an MNIST digit); and the best
wrong logit is taken over the other classes only (torchattacks' ``max((1 - onehot) * Z)`` reads 0 for the
true class, wrong when every other logit is negative).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

from .base import Attack, Runner, register_attack
from .rules import float_rule, int_rule

_BOX = 0.999999  # the reference code's shrink of [-1, 1] before atanh


class _CW(torchattacks.CW):
    def inverse_tanh_space(self, x: torch.Tensor) -> torch.Tensor:
        return torch.atanh((x * 2 - 1) * _BOX)

    def f(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        true = F.one_hot(labels, outputs.shape[1]).bool()  # (B, K)
        other = outputs.masked_fill(true, float("-inf")).amax(1)
        real = outputs.gather(1, labels[:, None]).squeeze(1)
        if self.targeted:
            return torch.clamp(other - real, min=-self.kappa)
        return torch.clamp(real - other, min=-self.kappa)


@register_attack
class CarliniWagnerL2(Attack):
    """torchattacks.CW (fixed c, Adam, early stop when the loss stops falling), minimum-norm L2."""

    name = "cw"
    norm = "L2"
    minimum_norm = True
    defaults = {"c": 1.0, "kappa": 0.0, "steps": 50, "lr": 0.01}
    rules = {"c": float_rule(0.0), "kappa": float_rule(0.0, strict=False), "steps": int_rule(1),
             "lr": float_rule(0.0)}
    title = "CW-L2"
    cheap = {"steps": 8, "c": 5.0, "lr": 0.05}

    def display(self, config: Mapping[str, Any]) -> str:
        """CW-L2, whatever its options: a minimum-norm attack is not named by its steps."""
        return self.title

    def budget(self, config: Mapping[str, Any], *, eps: float | None, num_classes: int | None) -> str:
        return (f"minimum-norm L2: {config['steps']} Adam steps, lr={config['lr']:g}, c={config['c']:g}, "
                f"kappa={config['kappa']:g}; fooled at eps only if ||delta||_2 <= eps")

    def runner(self, model: nn.Module, config: Mapping[str, Any], *, eps: float | None, num_classes: int,
               seed: int) -> tuple[Runner, list[str]]:
        return _CW(model, c=config["c"], kappa=config["kappa"], steps=config["steps"], lr=config["lr"]), []
