"""AutoAttack (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks"): APGD-CE, APGD-T, FAB-T and Square in order, each on the examples
still robust after the previous ones; an example counts as fooled if any component fools it.

``version="standard"`` is the published evaluation exactly: APGD-CE 100 steps, APGD-T 100 steps on the
9 top non-true classes, FAB-T 100 steps on 9 targets, Square 5000 queries, one restart each
(torchattacks' own AutoAttack runs 10 steps, which is not the published evaluation). ``"fast"`` is a
lighter screen for notebooks: no FAB-T, fewer steps, targets and queries. ``apgd_steps``,
``apgdt_steps``, ``n_target_classes``, ``fab_steps``, ``square_queries`` override the preset; 0 skips
that component.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import torch
import torchattacks
from torch import nn

from .base import NORMS, Attack, Runner, register_attack
from .rules import choice_rule, int_rule, optional

__all__ = ["PRESETS", "AutoAttack", "components"]

#: The budget of each version; None options of a spec are filled from here.
PRESETS: Mapping[str, Mapping[str, int]] = MappingProxyType({
    "standard": MappingProxyType(
        {"apgd_steps": 100, "apgdt_steps": 100, "n_target_classes": 9, "fab_steps": 100, "square_queries": 5000}
    ),
    "fast": MappingProxyType(
        {"apgd_steps": 25, "apgdt_steps": 25, "n_target_classes": 3, "fab_steps": 0, "square_queries": 1000}
    ),
})


def _plan(config: Mapping[str, Any], num_classes: int | None) -> tuple[list[tuple[str, int, int]], list[str]]:
    """The components that will run: (name, budget, targets), and notes on anything capped or skipped."""
    notes = []
    targets = config["n_target_classes"]
    if num_classes is not None and targets > num_classes - 1:
        notes.append(f"n_target_classes capped at {num_classes - 1} (num_classes - 1)")
        targets = num_classes - 1
    plan = []
    if config["apgd_steps"]:
        plan.append(("APGD-CE", config["apgd_steps"], 0))
    if config["apgdt_steps"]:
        if num_classes is not None and num_classes < 4:
            notes.append("APGD-T skipped: its targeted DLR loss needs >= 4 classes")
        else:
            plan.append(("APGD-T", config["apgdt_steps"], targets))
    if config["fab_steps"]:
        plan.append(("FAB-T", config["fab_steps"], targets))
    if config["square_queries"]:
        plan.append(("Square", config["square_queries"], 0))
    return plan, notes


def components(config: Mapping[str, Any], num_classes: int | None) -> list[str]:
    """The names of the components a resolved AutoAttack config runs, in order (``APGD-CE``, ...)."""
    return [name for name, _, _ in _plan(config, num_classes)[0]]


class _InOrder:
    """Components in order, each on the examples still robust (AutoAttack's standard evaluation).

    After each call, ``component`` holds per example the index of the component that fooled it (-1: none
    did, or the clean input was already misclassified), so a per-example table can say how robust
    accuracy falls component by component, as AutoAttack reports it.
    """

    def __init__(self, model: nn.Module, attacks: list[torchattacks.Attack]) -> None:
        self.model = model
        self.attacks = attacks
        self.component: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = x.clone()
        with torch.no_grad():
            robust = self.model(x).argmax(1) == y  # (B,)
        component = torch.full_like(y, -1)
        for k, atk in enumerate(self.attacks):
            idx = robust.nonzero().squeeze(1)  # host sync: the subset size decides the work
            if idx.numel() == 0:
                break
            adv = atk(x[idx], y[idx])
            with torch.no_grad():
                fooled = self.model(adv).argmax(1) != y[idx]
            x_adv[idx[fooled]] = adv[fooled]
            robust[idx[fooled]] = False
            component[idx[fooled]] = k
        self.component = component
        return x_adv


@register_attack
class AutoAttack(Attack):
    """The standard AutoAttack ensemble with the published budgets (or a preset/override)."""

    name = "autoattack"
    norm = None  # from the option
    defaults = {"version": "standard", "norm": "Linf", "apgd_steps": None, "apgdt_steps": None,
                "n_target_classes": None, "fab_steps": None, "square_queries": None}
    rules = {"version": choice_rule(tuple(PRESETS)), "norm": choice_rule(NORMS),
             "apgd_steps": optional(int_rule(0)), "apgdt_steps": optional(int_rule(0)),
             "n_target_classes": optional(int_rule(1)), "fab_steps": optional(int_rule(0)),
             "square_queries": optional(int_rule(0))}
    title = "AutoAttack"
    cheap = {"apgd_steps": 2, "apgdt_steps": 2, "n_target_classes": 3, "fab_steps": 2, "square_queries": 5}

    def display(self, config: Mapping[str, Any]) -> str:
        """AutoAttack for the standard evaluation, AutoAttack (fast) for the lighter preset."""
        return self.title if config["version"] == "standard" else f"{self.title} ({config['version']})"

    def resolve(self, config: dict[str, Any]) -> dict[str, Any]:
        for key, value in PRESETS[config["version"]].items():
            if config[key] is None:
                config[key] = value
        return config

    def budget(self, config: Mapping[str, Any], *, eps: float | None, num_classes: int | None) -> str:
        plan, _ = _plan(config, num_classes)
        preset = PRESETS[config["version"]]
        version = (config["version"] if all(config[k] == v for k, v in preset.items())
                   else f"custom from {config['version']}")
        parts = []
        for comp, budget, targets in plan:
            unit = "queries" if comp == "Square" else "steps"
            parts.append(f"{comp} {budget} {unit}" + (f" x {targets} targets" if targets else ""))
        return f"{version} ({', '.join(parts) or 'no components'})"

    def runner(self, model: nn.Module, config: Mapping[str, Any], *, eps: float | None, num_classes: int,
               seed: int) -> tuple[Runner, list[str]]:
        plan, notes = _plan(config, num_classes)
        norm = config["norm"]
        comps: list[torchattacks.Attack] = []
        for comp, budget, targets in plan:
            if comp == "APGD-CE":
                comps.append(torchattacks.APGD(model, norm=norm, eps=eps, steps=budget, n_restarts=1, seed=seed,
                                               loss="ce"))
            elif comp == "APGD-T":
                comps.append(torchattacks.APGDT(model, norm=norm, eps=eps, steps=budget, n_restarts=1, seed=seed,
                                                n_classes=targets + 1))
            elif comp == "FAB-T":
                comps.append(torchattacks.FAB(model, norm=norm, eps=eps, steps=budget, n_restarts=1, seed=seed,
                                              multi_targeted=True, n_classes=targets + 1))
            else:
                comps.append(torchattacks.Square(model, norm=norm, eps=eps, n_queries=budget, n_restarts=1,
                                                 seed=seed))
        return _InOrder(model, comps), notes
