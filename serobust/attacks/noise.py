"""Random sign noise: a control, not an attack. Uniform random corners of the Linf ball
(x + eps * random sign), best of ``n_samples`` draws per example. A gradient attack that loses to it at
the same eps is masked (Carlini et al. 2019, "On evaluating adversarial robustness", section 5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .base import Attack, Runner, register_attack
from .restarts import best_of
from .rules import int_rule


@register_attack
class SignNoise(Attack):
    """x + eps * sign(uniform(-1, 1)), clipped to [0, 1]; draws from the (seeded) global RNG."""

    name = "noise"
    norm = "Linf"
    defaults = {"n_samples": 1}
    rules = {"n_samples": int_rule(1)}
    title = "random sign noise"
    cheap = {"n_samples": 2}

    def budget(self, config: Mapping[str, Any], *, eps: float | None, num_classes: int | None) -> str:
        return f"random sign noise (Linf corners), {config['n_samples']} draw(s)"

    def runner(self, model: nn.Module, config: Mapping[str, Any], *, eps: float | None, num_classes: int,
               seed: int) -> tuple[Runner, list[str]]:
        def draw(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            sign = torch.empty_like(x).uniform_(-1.0, 1.0).sign()
            return (x + eps * sign).clamp(0.0, 1.0)

        return best_of(model, draw, config["n_samples"], highest_loss=False), []
