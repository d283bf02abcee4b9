"""The detection study: the excitation detector and its pooled controls against attacks, noise and the
adaptive attack, one row per (features, perturbation, eps).

Three detectors (:data:`DETECTORS`): ``"excitation"`` (``[s, z]`` of the SE twin's blocks), ``"pooled_twin"``
(the twin's own pooled block outputs, the within-network control: same network, same adversarial images,
same positives and negatives, so the difference is what the excitations add to the features that carry
them) and ``"pooled"`` (the baseline's pooled block outputs, on the baseline's own attacks).

Which examples count: negatives are the clean test images the detector's model classifies correctly;
positives are the perturbed versions of those images that the model misclassifies (successful
adversarial examples: a failed attack is nothing to detect), except for the Gaussian control, where
every noisy version of a negative is a positive (noise rarely flips a label; its row asks whether the
detector flags any perturbation of the attack's size, not an adversarial one).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import pandas as pd
import torch
from torch import nn

from ..eps import parse_eps_list
from ..excitation.adapters import find_se_modules
from ..excitation.inputs import check_analysis_inputs
from ..names import GAUSSIAN
from .adaptive_attack import detector_attack, detector_pgd
from .mahalanobis import MahalanobisDetector
from .roc import detection_metrics

if TYPE_CHECKING:  # pragma: no cover - the attack package loads torchattacks: imported when used
    from ..attacks import AttackSpec

__all__ = ["detection_analysis", "ADAPTIVE", "COLUMNS", "DETECTORS", "TWIN_CONTROL", "adaptive_label"]

#: The ``perturbation`` value of the adaptive attack's rows (:func:`~serobust.detect.detector_pgd`): per
#: example the strongest of the weights tried; ``adaptive(w=<weight>)`` rows hold each weight alone.
ADAPTIVE = "adaptive"
#: The ``features`` value of the within-twin control: the SE twin's own pooled block outputs.
TWIN_CONTROL = "pooled_twin"
#: detector name (the ``features`` column) -> (the member it reads, its feature kind, attacked adaptively)
DETECTORS = {"excitation": ("twin", "excitation", True), TWIN_CONTROL: ("twin", "pooled", False),
             "pooled": ("baseline", "pooled", True)}


def adaptive_label(weight: float) -> str:
    """The ``perturbation`` value of the adaptive attack with one weight: ``adaptive(w=1)``."""
    return f"{ADAPTIVE}(w={weight:g})"


#: The columns of :func:`detection_analysis`'s table, in order.
COLUMNS = ("features", "perturbation", "eps", "auroc", "tpr_at_5fpr", "n_pos", "n_neg", "attack_success")


def _se_blocks_under(se_model: nn.Module, layers: list[str]) -> list[str]:
    """The SE modules of ``se_model`` whose parent block is one of ``layers`` (the matched blocks)."""
    return [b.name for b in find_se_modules(se_model) if b.name.rsplit(".", 1)[0] in layers]


def _weights(adaptive_weight: float | Sequence[float]) -> list[float]:
    weights = [adaptive_weight] if isinstance(adaptive_weight, (int, float)) else list(adaptive_weight)
    if not weights:
        raise ValueError("adaptive_weight is empty; give a weight (e.g. 1.0) or a list of weights")
    return weights


def _adaptive(detector: MahalanobisDetector, x: torch.Tensor, y: torch.Tensor, eps: float, *,
              weights: list[float], steps: int, seed: int,
              batch_size: int) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """(perturbation, predictions, scores) of the adaptive attack with each weight (``adaptive(w=...)``,
    when there are several), then per example the strongest of them (``adaptive``).

    The strongest: for an example some weight fooled, the fooling example with the lowest score (an
    attacker keeps the best of its tries); otherwise the first weight's example (a failed attack).
    """
    best_pred = best_score = None
    for w in weights:
        x_adv = detector_pgd(detector, x, y, eps, weight=w, steps=steps, seed=seed, batch_size=batch_size)
        pred, score = detector.predict_score(x_adv, batch_size=batch_size)
        if len(weights) > 1:
            yield adaptive_label(w), pred, score
        if best_pred is None:
            best_pred, best_score = pred, score
            continue
        fooled, best_fooled = pred != y.to(pred.device), best_pred != y.to(pred.device)
        better = fooled & (~best_fooled | (score < best_score))
        best_pred, best_score = torch.where(better, pred, best_pred), torch.where(better, score, best_score)
    yield ADAPTIVE, best_pred, best_score


def _attacked(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, attacks: list[str | AttackSpec],
              *, seed: int, batch_size: int) -> Iterator[tuple[str, torch.Tensor]]:
    """(perturbation, images) of each attack on ``model`` and of the Gaussian control sized by its PGD."""
    # lazy: the attack package loads torchattacks
    from ..attacks import attack as make_attack
    from ..attacks import generate
    from ..excitation.controls import matched_gaussian_noise

    specs = [make_attack(a) if isinstance(a, str) else a for a in attacks]
    x_pgd = None
    for spec in specs:
        x_adv = generate(model, x, y, spec, eps, seed=seed, batch_size=batch_size)
        if spec.name == "pgd" and x_pgd is None:
            x_pgd = x_adv
        yield spec.label, x_adv
    if x_pgd is None:  # the Gaussian control is sized by a PGD attack
        x_pgd = generate(model, x, y, "pgd", eps, seed=seed, batch_size=batch_size)
    yield GAUSSIAN, matched_gaussian_noise(x, x_pgd.to(x.dtype), generator=torch.Generator().manual_seed(seed),
                                           batch_size=max(batch_size, 1024))


def detection_analysis(
    se_model: nn.Module,
    baseline: nn.Module,
    x_fit: torch.Tensor,
    y_fit: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float | str | Sequence[float | str],
    attacks: Sequence[str | AttackSpec] = ("fgsm", "pgd"),
    adaptive_weight: float | Sequence[float] = (0.0, 1.0, 10.0),
    adaptive_steps: int = 50,
    twin_control: bool = True,
    seed: int = 0,
    batch_size: int = 256,
) -> pd.DataFrame:
    """Does the excitation flag attacks beyond the features that carry it, and survive an adaptive attack?

    :class:`MahalanobisDetector` s are fitted on the clean images ``x_fit`` (training images):
    ``"excitation"`` on the SE twin (``[s, z]`` of its SE blocks), ``"pooled_twin"`` on the SE twin's
    own average-pooled outputs of the same blocks (with ``twin_control``) and ``"pooled"`` on the
    baseline (the same blocks, ``serobust.matched_layers(baseline, se_model)``). Each is scored on the
    clean test images ``x`` and on perturbations of them crafted against its own model, per eps: every
    attack in ``attacks`` (``serobust.generate`` with ``seed``) and ``"gaussian"`` noise with each
    example's PGD perturbation L2 norm (:func:`serobust.excitation.controls.matched_gaussian_noise`; PGD is the
    first ``pgd`` of ``attacks``, or default PGD). The two twin detectors score the very same images
    (crafted once against the twin). The ``"excitation"`` and ``"pooled"`` detectors also face
    ``"adaptive"``: :func:`detector_pgd` against that detector (``adaptive_steps`` steps from the clean
    image), once per weight in ``adaptive_weight`` (rows ``adaptive(w=<weight>)`` when there are several)
    and per example the strongest of them (row ``adaptive``: the lowest-scoring fooling example, as an
    attacker tuning the weight would keep). Positives and negatives are as in the module docstring.

    Args:
        se_model: the SE twin; baseline: its baseline (same block names, no SE).
        x_fit, y_fit: clean training images and labels for the detectors' statistics.
        x, y: clean test images (N, C, H, W) in [0, 1] and labels.
        eps: one Linf budget > 0 or a list (``"8/255"`` accepted).
        attacks: attack names or ``serobust.attack(...)`` specs (Linf attacks, e.g. ``fgsm``, ``pgd``).
        adaptive_weight: weight(s) of the score in the adaptive attack's loss before it fools the model
            (see :func:`detector_pgd`); default 0, 1 and 10. Each weight costs one attack of
            ``adaptive_steps`` forward-backward passes per adaptively attacked detector and eps.
        adaptive_steps: PGD steps of the adaptive attack (default 50).
        twin_control: also fit and score the ``"pooled_twin"`` control.
        seed: seed of the attacks and the noise.
        batch_size: examples per forward pass / attack call.

    Returns:
        One row per (features, perturbation, eps): ``features`` (a name of :data:`DETECTORS`),
        ``perturbation`` (attack labels, ``gaussian``, ``adaptive(w=...)``, ``adaptive``), ``eps``,
        ``auroc``, ``tpr_at_5fpr``, ``n_pos``, ``n_neg``, ``attack_success`` (fraction of clean-correct
        examples the perturbation makes misclassified).

    Raises:
        InputError: bad images or labels; ValueError: eps of 0, bad weights or steps, unmatched pair.
    """
    check_analysis_inputs(x, y=y, batch_size=batch_size)
    eps_list = parse_eps_list(eps)
    if 0 in eps_list:
        raise ValueError(f"eps {eps_list} holds 0: nothing is perturbed to detect; give budgets > 0")
    weights = _weights(adaptive_weight)
    for w in weights:
        detector_attack(weight=w, steps=adaptive_steps, seed=seed)  # every option checked before any fit
    from ..excitation.sensitivity import matched_layers

    layers = matched_layers(baseline, se_model)
    models = {"twin": se_model, "baseline": baseline}
    blocks = {"excitation": _se_blocks_under(se_model, layers), "pooled": layers}
    detectors = {name: MahalanobisDetector(models[member], features=kind, blocks=blocks[kind])
                 for name, (member, kind, _) in DETECTORS.items() if twin_control or name != TWIN_CONTROL}
    clean = {}
    for name, detector in detectors.items():
        detector.fit(x_fit, y_fit, batch_size=batch_size)
        clean[name] = detector.predict_score(x, batch_size=batch_size)
    results: dict[tuple[str, float], list[tuple[str, torch.Tensor, torch.Tensor]]] = {}
    for member, model in models.items():
        mine = [n for n in detectors if DETECTORS[n][0] == member]
        for eps_f in eps_list:
            for pert, x_pert in _attacked(model, x, y, eps_f, list(attacks), seed=seed, batch_size=batch_size):
                for name in mine:
                    results.setdefault((name, eps_f), []).append(
                        (pert, *detectors[name].predict_score(x_pert, batch_size=batch_size)))
            for name in mine:
                if DETECTORS[name][2]:
                    results[name, eps_f] += list(_adaptive(detectors[name], x, y, eps_f, weights=weights,
                                                           steps=adaptive_steps, seed=seed, batch_size=batch_size))
    rows = []
    for name in detectors:
        pred, clean_score = clean[name]
        y_dev = y.to(pred.device)
        negative = pred == y_dev
        for eps_f in eps_list:
            for pert, pert_pred, score in results[name, eps_f]:
                fooled = negative & (pert_pred != y_dev)
                positive = negative if pert == GAUSSIAN else fooled
                metrics = detection_metrics(clean_score[negative], score[positive])
                n_neg = metrics["n_neg"]
                rows.append({"features": name, "perturbation": pert, "eps": eps_f, **metrics,
                             "attack_success": int(fooled.sum()) / n_neg if n_neg else math.nan})
    return pd.DataFrame(rows, columns=list(COLUMNS))
