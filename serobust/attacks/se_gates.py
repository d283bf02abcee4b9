"""Adaptive attacks on the SE gates: do the gates damp perturbations, or hide gradients?

A robustness gain of an SE twin measured with plain PGD could come from gates that obstruct gradients
rather than damp perturbations (gradient masking; Athalye et al., ICML 2018, whose BPDA replaces an
obstructing component by a differentiable stand-in). Two registered attacks aim at the gates
``s = sigmoid(W2 relu(W1 z))`` (Hu et al., 1709.01507):

* ``excitation_pgd`` (:class:`ExcitationPGD`) -- Linf PGD whose loss also pushes every excitation away
  from its clean value, so the attack cannot stop at inputs where the gates happen to stay put;
  ``weight=0`` is plain cross-entropy PGD (the reference row of
  :func:`serobust.excitation.adaptive.adaptive_attacks`);
* ``frozen_gate_pgd`` (:class:`FrozenGatePGD`) -- PGD computed with every gate frozen at its clean
  excitation (gradients do not flow through ``s``; a BPDA-like "gate removed" attack); the harness
  scores the result on the real model.

Both are the shared loop :func:`serobust.linf_pgd.linf_pgd` in float32 with different loss closures:
the excitations come from an :class:`~serobust.excitation.probe.ExcitationProbe` (``differentiable=True``
inside the loss), the frozen gates from :func:`serobust.excitation.interventions.gate_override`. They run
through the harness like every attack (``generate(se_model, x, y, attack("excitation_pgd", weight=10),
eps)``): input checks, eval mode and frozen parameters, batching, seeding (the random start, see
:mod:`~serobust.attacks.starts`), result checks. A model without SE modules raises
:class:`~serobust.excitation.adapters.NoSEModuleError` when the runner is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..excitation.adapters import find_se_modules
from ..excitation.interventions import gate_override
from ..excitation.probe import ExcitationProbe
from ..linf_pgd import default_alpha, linf_pgd
from ..runtime import model_device
from .base import Attack, Runner, alpha_rule, bool_rule, int_rule, optional, register_attack
from .rules import finite_rule
from .starts import StartStream

__all__ = ["ExcitationPGD", "FrozenGatePGD", "finite_rule"]


@torch.no_grad()
def clean_excitations(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each SE block's excitation for ``x``, name -> (B, C), detached."""
    with ExcitationProbe(model, check_inputs=False) as probe:
        model(x)
    return {name: rec["s"] for name, rec in probe.pop_records().items()}


class _GatePGD(Attack):
    """What the two gate attacks share: options, budget text, the runner around :meth:`attack_batch`."""

    norm = "Linf"
    defaults: ClassVar[Mapping[str, Any]] = {"steps": 20, "alpha": None, "random_start": True, "start_seed": None}
    rules = {"steps": int_rule(1), "alpha": alpha_rule, "random_start": bool_rule, "start_seed": optional(int_rule(0))}
    cheap: ClassVar[Mapping[str, Any]] = {"steps": 2}
    title: ClassVar[str] = ""

    def display(self, config: Mapping[str, Any]) -> str:
        """``excitation-PGD-20``, ``frozen-gate PGD-10 (no random start)``: the name a reader sees."""
        text = f"{self.title}-{config['steps']}"
        return text if config["random_start"] else text + " (no random start)"

    def budget(self, config: Mapping[str, Any], *, eps: float | None, num_classes: int | None) -> str:
        if config["alpha"] is None:
            alpha = "2.5*eps/steps" + (f"={default_alpha(eps, config['steps']):.4g}" if eps is not None else "")
        else:
            alpha = f"{config['alpha']:.4g}"
        start = "no random start" if not config["random_start"] else (
            "random start" if config["start_seed"] is None else f"random start (stream seed {config['start_seed']})")
        return f"{config['steps']} steps, alpha={alpha}, {start}"

    def runner(self, model: nn.Module, config: Mapping[str, Any], *, eps: float | None, num_classes: int,
               seed: int) -> tuple[Runner, list[str]]:
        find_se_modules(model)  # a baseline fails here, naming the fix
        steps = config["steps"]
        alpha = default_alpha(eps, steps) if config["alpha"] is None else config["alpha"]
        device = model_device(model)
        # the gate attacks drew their seeded stream on the model's device (a CUDA generator on CUDA)
        starts = StartStream(config["start_seed"], device=device if device.type == "cuda" else "cpu")

        def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            start = starts(x, eps) if config["random_start"] else x.clone()
            return self.attack_batch(model, x, y, start, config, eps=eps, alpha=alpha)

        return run, []

    def attack_batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor,
                     config: Mapping[str, Any], *, eps: float, alpha: float) -> torch.Tensor:
        """One batch (float32 on the model's device), from ``start``."""
        raise NotImplementedError


@register_attack
class ExcitationPGD(_GatePGD):
    """PGD that also pushes every SE excitation away from its clean value.

    Maximises ``CE + weight * mean_blocks(||s(x') - s(x)||^2 / ||s(x)||^2)`` (both terms averaged over
    the batch), where ``s(x)`` is the clean excitation of each example. ``weight = 0`` is plain PGD on
    the cross-entropy (the probe is not even attached); a negative weight keeps excitations close to
    clean instead (an attack that evades excitation-based detection).
    """

    name = "excitation_pgd"
    title = "excitation-PGD"
    defaults = {**_GatePGD.defaults, "weight": 1.0}
    rules = {**_GatePGD.rules, "weight": finite_rule}

    def display(self, config: Mapping[str, Any]) -> str:
        return super().display(config) + f" (w={config['weight']:g})"

    def budget(self, config: Mapping[str, Any], *, eps: float | None, num_classes: int | None) -> str:
        return super().budget(config, eps=eps, num_classes=num_classes) + f", excitation weight {config['weight']:g}"

    def attack_batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor,
                     config: Mapping[str, Any], *, eps: float, alpha: float) -> torch.Tensor:
        weight, steps = config["weight"], config["steps"]
        if weight == 0:
            return linf_pgd(lambda xa: F.cross_entropy(model(xa), y), x, eps=eps, alpha=alpha, steps=steps, start=start)
        s_clean = clean_excitations(model, x)
        ref_norm = {n: s.pow(2).sum(1).clamp_min(1e-12) for n, s in s_clean.items()}  # (B,)
        with ExcitationProbe(model, differentiable=True, check_inputs=False) as probe:

            def loss(xa: torch.Tensor) -> torch.Tensor:
                ce = F.cross_entropy(model(xa), y)
                s_now = probe.pop_records()  # this step's excitations, with their graphs
                shift = torch.stack([(s_now[n]["s"] - s).pow(2).sum(1) / ref_norm[n]
                                     for n, s in s_clean.items()])  # (blocks, B)
                return ce + weight * shift.mean(0).mean()  # mean over blocks, then over the batch (like CE)

            return linf_pgd(loss, x, eps=eps, alpha=alpha, steps=steps, start=start)


@register_attack
class FrozenGatePGD(_GatePGD):
    """PGD computed with every SE gate frozen at its clean excitation (a BPDA-like "gate removed" attack).

    While the attack runs, each gate outputs the example's clean ``s`` (detached), so gradients do not
    flow through the excitations; the harness scores the returned ``x_adv`` on the real model. If this
    attack beats plain PGD, the gates obstruct gradients (masking) rather than damp the perturbation.
    """

    name = "frozen_gate_pgd"
    title = "frozen-gate PGD"

    def attack_batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor,
                     config: Mapping[str, Any], *, eps: float, alpha: float) -> torch.Tensor:
        with gate_override(model, clean_excitations(model, x)):  # detached clean s: no gradient through the gates
            return linf_pgd(lambda xa: F.cross_entropy(model(xa), y), x, eps=eps, alpha=alpha,
                            steps=config["steps"], start=start)
