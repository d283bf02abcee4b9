"""Adaptive attacks on the SE mechanism: do the gates damp perturbations, or hide gradients?

A robustness gain of an SE twin measured with plain PGD could come from gates that obstruct
gradients rather than damp perturbations (gradient masking; Athalye et al., ICML 2018, whose BPDA
replaces an obstructing component by a differentiable stand-in). Two attacks aimed at the SE gates
test this (Hu et al., 1709.01507, for the gate ``s = sigmoid(W2 relu(W1 z))``):

* :func:`excitation_pgd` -- Linf PGD whose loss also pushes every excitation away from its clean
  value, so the attack cannot stop at inputs where the gates happen to stay put;
* :func:`frozen_gate_pgd` -- PGD computed with every gate frozen at its clean excitation (gradients
  do not flow through ``s``; a BPDA-like "gate removed" attack), evaluated on the real model.

:func:`adaptive_attacks` runs both next to plain :func:`pgd` with the same start and budget; if either
is much stronger than PGD, PGD-based robustness of that model should not be trusted. All three are
the shared loop :func:`serobust.linf_pgd.linf_pgd` in float32 with different loss closures; the
excitations come from an :class:`~serobust.excitation.probe.ExcitationProbe` (``differentiable=True`` inside
the loss) and the frozen gates from :func:`serobust.excitation.interventions.gate_override`.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .excitation.inputs import batch_slices, check_analysis_inputs
from .eps import parse_eps_list
from .excitation.interventions import gate_override
from .linf_pgd import default_alpha, linf_pgd, uniform_start
from .excitation.probe import ExcitationProbe
from .runtime import eval_mode, model_device
from .excitation.adapters import find_se_modules

__all__ = ["pgd", "excitation_pgd", "frozen_gate_pgd", "adaptive_attacks", "ADAPTIVE_ATTACKS"]

logger = logging.getLogger(__name__)

#: The attacks :func:`adaptive_attacks` compares, in row order; ``pgd`` is the reference.
ADAPTIVE_ATTACKS = ("pgd", "excitation_pgd", "frozen_gate_pgd")

_STRONGER_MARGIN = 0.02  # an adaptive attack "is stronger" when it lowers accuracy by more than 2 points


def _make_generator(device: torch.device, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device if device.type == "cuda" else "cpu")
    gen.manual_seed(seed)
    return gen


@torch.no_grad()
def _clean_excitations(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each SE block's excitation for ``x``, name -> (B, C), detached."""
    with ExcitationProbe(model, check_inputs=False) as probe:
        model(x)
    return {name: rec["s"] for name, rec in probe.pop_records().items()}


def _attack_batch(kind: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor,
                  s_clean: dict[str, torch.Tensor] | None, *, eps: float, alpha: float, steps: int,
                  weight: float) -> torch.Tensor:
    """One batch of one attack kind (see :data:`ADAPTIVE_ATTACKS`); float32 throughout."""

    def cross_entropy(xa: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(xa), y)

    if kind == "pgd":
        return linf_pgd(cross_entropy, x, eps=eps, alpha=alpha, steps=steps, start=start)
    if s_clean is None:
        s_clean = _clean_excitations(model, x)
    if kind == "excitation_pgd":
        ref_norm = {n: s.pow(2).sum(1).clamp_min(1e-12) for n, s in s_clean.items()}  # (B,)
        with ExcitationProbe(model, differentiable=True, check_inputs=False) as probe:

            def loss(xa: torch.Tensor) -> torch.Tensor:
                ce = cross_entropy(xa)
                s_now = probe.pop_records()  # this step's excitations, with their graphs
                shift = torch.stack([(s_now[n]["s"] - s).pow(2).sum(1) / ref_norm[n]
                                     for n, s in s_clean.items()])  # (blocks, B)
                return ce + weight * shift.mean(0).mean()  # mean over blocks, then over the batch (like CE)

            return linf_pgd(loss, x, eps=eps, alpha=alpha, steps=steps, start=start)
    if kind == "frozen_gate_pgd":
        with gate_override(model, s_clean):  # detached clean s: no gradient flows through the gates
            return linf_pgd(cross_entropy, x, eps=eps, alpha=alpha, steps=steps, start=start)
    raise ValueError(f"unknown attack kind {kind!r}; valid kinds: {list(ADAPTIVE_ATTACKS)}")


def _check_attack_args(steps: int, alpha: float | None, weight: float) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if alpha is not None and not (isinstance(alpha, (int, float)) and alpha > 0 and math.isfinite(alpha)):
        raise ValueError("alpha (the step size in [0, 1] pixel units) must be a positive number or None, "
                         f"got {alpha!r}")
    if not (isinstance(weight, (int, float)) and math.isfinite(weight)):
        raise ValueError(f"weight must be a finite number, got {weight!r}")


def _step_size(eps: float, steps: int, alpha: float | None) -> float:
    return default_alpha(eps, steps) if alpha is None else float(alpha)


def _run_attack(kind: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | str, *,
                steps: int, alpha: float | None, weight: float, random_start: bool, seed: int,
                batch_size: int) -> torch.Tensor:
    if kind != "pgd":
        find_se_modules(model)  # a baseline fails here, with the fix
    check_analysis_inputs(x, y=y, batch_size=batch_size)
    _check_attack_args(steps, alpha, weight)
    (eps_f,) = parse_eps_list([eps])
    device = model_device(model)
    gen = _make_generator(device, seed)
    step = _step_size(eps_f, steps, alpha)
    out = []
    with eval_mode(model):
        for sl in batch_slices(len(x), batch_size):
            xb = x[sl].to(device, torch.float32)
            yb = y[sl].to(device)
            if eps_f == 0:
                out.append(xb.clone())
                continue
            start = uniform_start(xb, eps_f, generator=gen) if random_start else xb.clone()
            out.append(_attack_batch(kind, model, xb, yb, start, None, eps=eps_f, alpha=step, steps=steps,
                                     weight=weight))
    return torch.cat(out).to(x.device, x.dtype)


_ATTACK_DOC = """

    Linf PGD (:func:`serobust.linf_pgd.linf_pgd`) in float32: random start ``x + U(-eps, eps)``
    (seeded by ``seed``, drawn batch by batch, so the start depends on ``batch_size``; the three
    attacks of this module draw the same start for the same seed), ``steps`` sign steps of size
    ``alpha`` (default ``2.5 * eps / steps``), each followed by projection onto the eps ball and onto
    [0, 1]. The model runs in eval mode; the modes of its modules are restored afterwards.

    Args:
        model: the model to attack (an SE model for the adaptive attacks).
        x: clean images in [0, 1], (N, C, H, W).
        y: labels, (N,).
        eps: Linf budget in [0, 1] pixel units (a float or a string such as ``"8/255"``).
        steps: number of PGD steps.
        alpha: step size in pixel units; ``None`` gives ``2.5 * eps / steps``.
        random_start: start from a uniform random point of the eps ball (True) or from ``x``.
        seed: seed of the random start.
        batch_size: examples attacked together.

    Returns:
        ``x_adv`` with the shape, dtype and device of ``x``.

    Raises:
        InputError: images not float (N, C, H, W) in [0, 1], NaN, or bad labels.
"""


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | str, *, steps: int = 20,
        alpha: float | None = None, random_start: bool = True, seed: int = 0,
        batch_size: int = 256) -> torch.Tensor:
    """Plain untargeted Linf PGD on the cross-entropy loss (the reference for the adaptive attacks)."""
    return _run_attack("pgd", model, x, y, eps, steps=steps, alpha=alpha, weight=0.0,
                       random_start=random_start, seed=seed, batch_size=batch_size)


def excitation_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | str, *, steps: int = 20,
                   alpha: float | None = None, weight: float = 1.0, random_start: bool = True, seed: int = 0,
                   batch_size: int = 256) -> torch.Tensor:
    """PGD that also pushes every SE excitation away from its clean value.

    Maximises ``CE + weight * mean_blocks(||s(x') - s(x)||^2 / ||s(x)||^2)`` (both terms averaged over
    the batch), where ``s(x)`` is the clean excitation of each example. ``weight = 0`` is plain PGD;
    a negative weight keeps excitations close to clean instead (an attack that evades excitation-based
    detection).

    Raises:
        NoSEModuleError: ``model`` has no SE module.
    """
    return _run_attack("excitation_pgd", model, x, y, eps, steps=steps, alpha=alpha, weight=weight,
                       random_start=random_start, seed=seed, batch_size=batch_size)


def frozen_gate_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | str, *, steps: int = 20,
                    alpha: float | None = None, random_start: bool = True, seed: int = 0,
                    batch_size: int = 256) -> torch.Tensor:
    """PGD computed with every SE gate frozen at its clean excitation (a BPDA-like "gate removed" attack).

    While the attack runs, each gate outputs the example's clean ``s`` (detached), so gradients do not
    flow through the excitations; the returned ``x_adv`` is meant to be evaluated on the real model.
    If this attack beats plain PGD, the gates obstruct gradients (masking) rather than damp the
    perturbation.

    Raises:
        NoSEModuleError: ``model`` has no SE module.
    """
    return _run_attack("frozen_gate_pgd", model, x, y, eps, steps=steps, alpha=alpha, weight=0.0,
                       random_start=random_start, seed=seed, batch_size=batch_size)


for _fn in (pgd, excitation_pgd, frozen_gate_pgd):
    _fn.__doc__ = (_fn.__doc__ or "") + _ATTACK_DOC
del _fn


def _unique_eps(eps: float | str | Sequence[float | str]) -> list[float]:
    eps_list = parse_eps_list(eps)
    if len(set(eps_list)) < len(eps_list):
        warnings.warn(f"eps has repeated budgets {eps_list}; each is attacked once", stacklevel=3)
        eps_list = list(dict.fromkeys(eps_list))
    return eps_list


def _frame(correct: list[int], max_linf: list[float], keys: list[tuple[int, str]], eps_list: list[float],
           n: int, clean_acc: float) -> pd.DataFrame:
    """The result rows, after the sanity checks every run makes (eps ball, then the warnings)."""
    rows = []
    for (ei, kind), h, m in zip(keys, correct, max_linf):
        if m > eps_list[ei] + 1e-6:
            raise RuntimeError(f"{kind} at eps={eps_list[ei]} left the eps ball (max |x_adv - x| = {m}); "
                               "this is a serobust bug, please report it")
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

    Each batch is attacked by :func:`pgd`, :func:`excitation_pgd` and :func:`frozen_gate_pgd` with the
    same budget, step size and random start, and every ``x_adv`` is evaluated on the real model. If
    either adaptive attack is much stronger than plain PGD (``stronger_than_pgd``: more than 2 points
    lower accuracy), the SE gates hide gradients rather than damp perturbations, and a robustness gain
    measured with plain PGD should not be trusted. Every run checks ``||x_adv - x||_inf <= eps`` and
    ``x_adv`` in [0, 1] (reported as ``max_linf``) and warns (logging) when robust accuracy exceeds
    clean accuracy.

    Args:
        model: the SE twin.
        x: clean images in [0, 1], (N, C, H, W).
        y: labels, (N,).
        eps: one Linf budget or a list (floats or strings such as ``"8/255"``).
        steps: PGD steps of every attack.
        alpha: step size; ``None`` gives ``2.5 * eps / steps``.
        weight: weight of the excitation-shift term of :func:`excitation_pgd`.
        random_start: start from a uniform random point in the eps ball.
        seed: seed of the random start (shared by the three attacks).
        batch_size: examples attacked together.

    Returns:
        Tidy DataFrame with columns ``attack, eps, robust_acc, n, stronger_than_pgd, clean_acc,
        max_linf``; one row per (eps, attack), ``attack`` in ``pgd, excitation_pgd, frozen_gate_pgd``.

    Raises:
        NoSEModuleError: ``model`` has no SE module (a baseline).
        InputError: images not float (N, C, H, W) in [0, 1], NaN, or bad labels.
    """
    find_se_modules(model)
    check_analysis_inputs(x, y=y, batch_size=batch_size)
    _check_attack_args(steps, alpha, weight)
    eps_list = _unique_eps(eps)
    device = model_device(model)
    n = len(x)
    correct = {(e, k): torch.zeros((), dtype=torch.long, device=device) for e in range(len(eps_list))
               for k in ADAPTIVE_ATTACKS}
    max_linf = {key: torch.zeros((), device=device) for key in correct}
    out_of_range = torch.zeros((), dtype=torch.bool, device=device)
    clean_correct = torch.zeros((), dtype=torch.long, device=device)
    with eval_mode(model):
        with torch.no_grad():
            for sl in batch_slices(n, batch_size):
                clean_correct += (model(x[sl].to(device, torch.float32)).argmax(1) == y[sl].to(device)).sum()
        for ei, eps_f in enumerate(eps_list):
            gen = _make_generator(device, seed)  # same stream as pgd()/excitation_pgd()/frozen_gate_pgd()
            step = _step_size(eps_f, steps, alpha)
            for sl in batch_slices(n, batch_size):
                xb = x[sl].to(device, torch.float32)
                yb = y[sl].to(device)
                if eps_f > 0:
                    start = uniform_start(xb, eps_f, generator=gen) if random_start else xb.clone()
                    s_clean = _clean_excitations(model, xb)
                for kind in ADAPTIVE_ATTACKS:
                    if eps_f == 0:
                        adv = xb
                    else:
                        adv = _attack_batch(kind, model, xb, yb, start, s_clean, eps=eps_f, alpha=step,
                                            steps=steps, weight=weight)
                    with torch.no_grad():
                        correct[(ei, kind)] += (model(adv).argmax(1) == yb).sum()
                    max_linf[(ei, kind)] = torch.maximum(max_linf[(ei, kind)], (adv - xb).abs().amax())
                    out_of_range |= (adv.amin() < 0) | (adv.amax() > 1)
    keys = list(correct)
    hits = torch.stack([correct[k] for k in keys]).tolist()  # the one host sync for the counts
    linf = torch.stack([max_linf[k] for k in keys]).tolist()
    if bool(out_of_range):
        raise RuntimeError("adaptive_attacks produced x_adv outside [0, 1]; this is a serobust bug, please report it")
    return _frame(hits, linf, keys, eps_list, n, clean_correct.item() / n)
