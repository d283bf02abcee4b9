"""FGSM: one signed-gradient step of size eps (Goodfellow, Shlens & Szegedy 2015, "Explaining and
harnessing adversarial examples"). The single-step reference the masking diagnostics compare PGD with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torchattacks
from torch import nn

from .base import Attack, Runner, register_attack


@register_attack
class FGSM(Attack):
    """x + eps * sign(grad of the CE loss), clipped to [0, 1]; Linf, no options."""

    name = "fgsm"
    title = "FGSM"
    norm = "Linf"
    cheap = {}  # no options: one step is already cheap

    def budget(self, config: Mapping[str, Any], *, eps: float | None, num_classes: int | None) -> str:
        return "single step of eps * sign(gradient)"

    def runner(self, model: nn.Module, config: Mapping[str, Any], *, eps: float | None, num_classes: int,
               seed: int) -> tuple[Runner, list[str]]:
        return torchattacks.FGSM(model, eps=eps), []
