"""Adaptive attacks on the SE mechanism: do the gates damp perturbations, or hide gradients?

A robustness gain of an SE twin measured with plain PGD could come from gates that obstruct
gradients rather than damp perturbations (gradient masking; Athalye et al., ICML 2018). The two
attacks aimed at the gates are registered attacks (:mod:`serobust.attacks.se_gates`):
``excitation_pgd`` also pushes every excitation away from its clean value, ``frozen_gate_pgd``
computes its gradients with every gate frozen at its clean excitation (BPDA-like).

:func:`adaptive_attacks` runs both next to plain PGD with the same start and budget, each through
the attack harness (:func:`serobust.attacks.generate`: input checks, eval mode, batching, result
checks); if either is much stronger than PGD, PGD-based robustness of that model should not be
trusted. Plain PGD is ``excitation_pgd`` with ``weight=0``: the same loop
(:func:`serobust.linf_pgd.linf_pgd`) on the cross-entropy alone, so the three rows differ only in
their loss. The random starts are one seeded stream per (attack, eps) drawn batch by batch
(``start_seed=seed``, see :mod:`serobust.attacks.starts`): the three attacks start from the same
points, and the numbers are those of the implementation before the attacks were registered.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

from ..attacks.base import AttackSpec, attack
from ..attacks.harness import generate
from ..eps import parse_eps_list
from ..runtime import eval_mode, model_device
from .adapters import find_se_modules
from .inputs import batch_slices, check_analysis_inputs

__all__ = ["adaptive_attacks", "adaptive_specs", "ADAPTIVE_ATTACKS"]

logger = logging.getLogger(__name__)

#: The rows :func:`adaptive_attacks` compares, in order; ``pgd`` (``excitation_pgd`` at weight 0) is the reference.
ADAPTIVE_ATTACKS = ("pgd", "excitation_pgd", "frozen_gate_pgd")

_STRONGER_MARGIN = 0.02  # an adaptive attack "is stronger" when it lowers accuracy by more than 2 points


def adaptive_specs(*, steps: int = 20, alpha: float | None = None, weight: float = 1.0, random_start: bool = True,
                   seed: int = 0) -> dict[str, AttackSpec]:
    """The registered attacks behind each row of :func:`adaptive_attacks`, row name -> spec.

    Raises:
        ValueError / TypeError: steps not an int >= 1, alpha not > 0, weight not finite, seed < 0.
    """
    common = {"steps": steps, "alpha": alpha, "random_start": random_start, "start_seed": seed}
    return {"pgd": attack("excitation_pgd", weight=0.0, **common),
            "excitation_pgd": attack("excitation_pgd", weight=weight, **common),
            "frozen_gate_pgd": attack("frozen_gate_pgd", **common)}


def _unique_eps(eps: float | str | Sequence[float | str]) -> list[float]:
    eps_list = parse_eps_list(eps)
    if len(set(eps_list)) < len(eps_list):
        warnings.warn(f"eps has repeated budgets {eps_list}; each is attacked once", stacklevel=3)
        eps_list = list(dict.fromkeys(eps_list))
    return eps_list


def _frame(correct: list[int], max_linf: list[float], keys: list[tuple[int, str]], eps_list: list[float],
           n: int, clean_acc: float) -> pd.DataFrame:
    """The result rows, and the warnings (the eps ball was checked by the harness, :func:`generate`)."""
    rows = []
    for (ei, kind), h, m in zip(keys, correct, max_linf):
        rows.append({"attack": kind, "eps": eps_list[ei], "robust_acc": h / n, "n": n, "clean_acc": clean_acc,
                     "max_linf": m})
    frame = pd.DataFrame(rows)
    pgd_acc = frame[frame.attack == "pgd"].set_index("eps")["robust_acc"]
    frame["stronger_than_pgd"] = frame["robust_acc"] < frame["eps"].map(pgd_acc) - _STRONGER_MARGIN
    for row in frame.itertuples():
        if row.robust_acc > clean_acc:
            logger.warning("%s at eps=%g: robust accuracy %.3f exceeds clean accuracy %.3f; check the model "
                           "is deterministic in eval mode", row.attack, row.eps, row.robust_acc, clean_acc)
        if row.stronger_than_pgd:
            logger.warning("%s at eps=%g is %.1f points stronger than plain PGD: the SE gates obstruct "
                           "gradients; do not trust PGD-based robustness of this model", row.attack, row.eps,
                           100 * (pgd_acc[row.eps] - row.robust_acc))
    return frame[["attack", "eps", "robust_acc", "n", "stronger_than_pgd", "clean_acc", "max_linf"]]


@torch.no_grad()
def _score(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, *,
           batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """On the model's device: how many ``x_adv`` the model classifies as ``y``, and ``max |x_adv - x|``."""
    device = model_device(model)
    hits = torch.zeros((), dtype=torch.long, device=device)
    linf = torch.zeros((), device=device)
    for sl in batch_slices(len(x), batch_size):
        xb, adv = x[sl].to(device, torch.float32), x_adv[sl].to(device, torch.float32)
        hits += (model(adv).argmax(1) == y[sl].to(device)).sum()
        linf = torch.maximum(linf, (adv - xb).abs().amax())
    return hits, linf


def adaptive_attacks(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | str | Sequence[float | str],
    *,
    steps: int = 20,
    alpha: float | None = None,
    weight: float = 1.0,
    random_start: bool = True,
    seed: int = 0,
    batch_size: int = 256,
) -> pd.DataFrame:
    """Robust accuracy of an SE model under plain PGD and the two adaptive attacks, per eps.

    Each attack (:func:`adaptive_specs`: ``excitation_pgd`` at weight 0 for ``pgd``, ``excitation_pgd``,
    ``frozen_gate_pgd``) runs through :func:`serobust.attacks.generate` with the same budget, step size
    and random start, and every ``x_adv`` is evaluated on the real model (an example counts as robust
    when the model classifies its ``x_adv`` correctly). If either adaptive attack is much stronger than
    plain PGD (``stronger_than_pgd``: more than 2 points lower accuracy), the SE gates hide gradients
    rather than damp perturbations, and a robustness gain measured with plain PGD should not be trusted.
    The harness checks ``||x_adv - x||_inf <= eps`` and ``x_adv`` in [0, 1] (``max_linf`` reports the
    first); a warning is logged when robust accuracy exceeds clean accuracy.

    Args:
        model: the SE twin.
        x: clean images in [0, 1], (N, C, H, W).
        y: labels, (N,).
        eps: one Linf budget or a list (floats or strings such as ``"8/255"``).
        steps: PGD steps of every attack.
        alpha: step size; ``None`` gives ``2.5 * eps / steps``.
        weight: weight of the excitation-shift term of ``excitation_pgd``.
        random_start: start from a uniform random point in the eps ball.
        seed: seed of the random start (shared by the three attacks; drawn batch by batch, so the start
            depends on ``batch_size``) and of the harness.
        batch_size: examples attacked together.

    Returns:
        Tidy DataFrame with columns ``attack, eps, robust_acc, n, stronger_than_pgd, clean_acc,
        max_linf``; one row per (eps, attack), ``attack`` in ``pgd, excitation_pgd, frozen_gate_pgd``.

    Raises:
        NoSEModuleError: ``model`` has no SE module (a baseline).
        InputError: images not float (N, C, H, W) in [0, 1], NaN, or bad labels.
        ValueError / TypeError: bad steps, alpha, weight or eps.
    """
    find_se_modules(model)
    check_analysis_inputs(x, y=y, batch_size=batch_size)
    specs = adaptive_specs(steps=steps, alpha=alpha, weight=weight, random_start=random_start, seed=seed)
    eps_list = _unique_eps(eps)
    with eval_mode(model):
        clean_hits, _ = _score(model, x, x, y, batch_size=batch_size)
    hits, linf = [], []
    for eps_f in eps_list:
        done: dict[AttackSpec, torch.Tensor] = {}  # weight 0: the pgd and excitation_pgd rows are one run
        for spec in specs.values():
            if spec not in done:
                done[spec] = x if eps_f == 0 else generate(model, x, y, spec, eps_f, seed=seed, batch_size=batch_size)
            with eval_mode(model):
                h, m = _score(model, x, done[spec], y, batch_size=batch_size)
            hits.append(h)
            linf.append(m)
    keys = [(ei, kind) for ei in range(len(eps_list)) for kind in specs]
    n = len(x)
    return _frame(torch.stack(hits).tolist(), torch.stack(linf).tolist(), keys, eps_list, n, clean_hits.item() / n)
