"""APGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks"): step-size free PGD with momentum, the first component of AutoAttack.

``loss="ce"`` is APGD-CE; ``loss="dlr"`` the margin-based Difference of Logits Ratio, invariant to
logit scaling (it needs >= 3 classes). 100 steps as in AutoAttack; Linf or L2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torchattacks
from torch import nn

from .base import NORMS, Attack, Runner, common_display, register_attack
from .rules import choice_rule, int_rule, unit_rule


@register_attack
class APGDCE(Attack):
    """torchattacks.APGD with its own seed (from the call's seed, the attack and eps)."""

    name = "apgd_ce"
    norm = None  # from the option
    defaults = {"steps": 100, "n_restarts": 1, "loss": "ce", "norm": "Linf", "rho": 0.75, "eot_iter": 1}
    rules = {"steps": int_rule(1), "n_restarts": int_rule(1), "loss": choice_rule(("ce", "dlr")),
             "norm": choice_rule(NORMS), "rho": unit_rule, "eot_iter": int_rule(1)}
    title = "APGD-CE"
    cheap = {"steps": 3}

    def display(self, config: Mapping[str, Any]) -> str:
        """APGD-CE-100 or APGD-DLR-100: the loss names the attack."""
        return common_display(f"APGD-{config['loss'].upper()}", config)

    def budget(self, config: Mapping[str, Any], *, eps: float | None, num_classes: int | None) -> str:
        eot = f", EOT {config['eot_iter']}" if config["eot_iter"] > 1 else ""
        return f"APGD-{config['loss'].upper()} {config['steps']} steps, {config['n_restarts']} restart(s){eot}"

    def runner(self, model: nn.Module, config: Mapping[str, Any], *, eps: float | None, num_classes: int,
               seed: int) -> tuple[Runner, list[str]]:
        if config["loss"] == "dlr" and num_classes < 3:
            raise ValueError(f"apgd_ce: the DLR loss needs >= 3 classes, the model has {num_classes}; use loss='ce'")
        return torchattacks.APGD(model, norm=config["norm"], eps=eps, steps=config["steps"],
                                 n_restarts=config["n_restarts"], seed=seed, loss=config["loss"],
                                 eot_iter=config["eot_iter"], rho=config["rho"]), []
