"""PGD in the Linf ball (Madry et al. 2018, "Towards deep learning models resistant to adversarial
attacks"): ``steps`` signed-gradient steps of size ``alpha`` from a random start, projected on the ball.

``alpha=None`` means 2.5 * eps / steps, Madry et al.'s rule: enough to cross the ball from any start.
``n_restarts`` full runs from independent random starts; per example the first success, else the
highest-loss result, is kept (:func:`~serobust.attacks.restarts.best_of`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torchattacks
from torch import nn

from .base import Attack, Runner, register_attack
from .restarts import best_of
from .rules import alpha_rule, bool_rule, int_rule


@register_attack
class PGD(Attack):
    """Projected gradient descent on the CE loss, Linf ball (torchattacks.PGD)."""

    name = "pgd"
    norm = "Linf"
    defaults = {"steps": 10, "alpha": None, "random_start": True, "n_restarts": 1}
    rules = {"steps": int_rule(1), "alpha": alpha_rule, "random_start": bool_rule, "n_restarts": int_rule(1)}
    title = "PGD"  # PGD-10, PGD-50, 5 restarts, PGD-10 (no random start)
    cheap = {"steps": 3}
    #: the torchattacks class: PGD for Linf, PGDL2 for the L2 subclass
    torchattack: type[torchattacks.Attack] = torchattacks.PGD

    def validate(self, config: Mapping[str, Any], *, label: str) -> None:
        if config["random_start"] is False and config["n_restarts"] > 1:
            warnings.warn(
                f"{label}: n_restarts > 1 with random_start=False repeats the same deterministic attack; "
                "it will run once (set random_start=True for restarts to help)",
                stacklevel=5,
            )

    def budget(self, config: Mapping[str, Any], *, eps: float | None, num_classes: int | None) -> str:
        if config["alpha"] is None:
            alpha = "2.5*eps/steps" + (f"={2.5 * eps / config['steps']:.4g}" if eps is not None else "")
        else:
            alpha = f"{config['alpha']:.4g}"
        restarts = config["n_restarts"] if config["random_start"] else 1
        start = "random start" if config["random_start"] else "no random start"
        return f"{config['steps']} steps, alpha={alpha}, {start}, {restarts} restart(s)"

    def runner(self, model: nn.Module, config: Mapping[str, Any], *, eps: float | None, num_classes: int,
               seed: int) -> tuple[Runner, list[str]]:
        alpha = config["alpha"] if config["alpha"] is not None else 2.5 * eps / config["steps"]
        atk = self.torchattack(model, eps=eps, alpha=alpha, steps=config["steps"],
                               random_start=config["random_start"])
        notes = []
        if config["n_restarts"] > 1 and not config["random_start"]:
            notes.append("n_restarts ignored: random_start=False makes restarts identical")
        n = config["n_restarts"] if config["random_start"] else 1
        return best_of(model, atk, n), notes
