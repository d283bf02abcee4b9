"""Square attack (Andriushchenko et al. 2020, "Square Attack: a query-efficient black-box adversarial
attack via random search"): score-based, no gradients, so gradient masking cannot stop it; the black-box
component of AutoAttack and of the masking diagnostics. 5000 queries as in AutoAttack; Linf or L2."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torchattacks
from torch import nn

from .base import NORMS, Attack, Runner, register_attack
from .rules import choice_rule, int_rule, unit_rule


@register_attack
class Square(Attack):
    """torchattacks.Square with its own seed (from the call's seed, the attack and eps)."""

    name = "square"
    norm = None  # from the option
    defaults = {"n_queries": 5000, "n_restarts": 1, "p_init": 0.8, "loss": "margin", "norm": "Linf"}
    rules = {"n_queries": int_rule(1), "n_restarts": int_rule(1), "p_init": unit_rule,
             "loss": choice_rule(("margin", "ce")), "norm": choice_rule(NORMS)}
    title = "Square"
    cheap = {"n_queries": 10}

    def display(self, config: Mapping[str, Any]) -> str:
        """Square (5000 queries): its budget is queries, not steps."""
        return f"{self.title} ({config['n_queries']} queries)"

    def budget(self, config: Mapping[str, Any], *, eps: float | None, num_classes: int | None) -> str:
        return (f"{config['n_queries']} queries, {config['n_restarts']} restart(s), p_init={config['p_init']:g}, "
                f"{config['loss']} loss")

    def runner(self, model: nn.Module, config: Mapping[str, Any], *, eps: float | None, num_classes: int,
               seed: int) -> tuple[Runner, list[str]]:
        return torchattacks.Square(model, norm=config["norm"], eps=eps, n_queries=config["n_queries"],
                                   n_restarts=config["n_restarts"], p_init=config["p_init"], loss=config["loss"],
                                   seed=seed), []
