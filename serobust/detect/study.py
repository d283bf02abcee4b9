"""The detection study: the excitation detector and its pooled control against attacks, noise and the
adaptive attack, one row per (features, perturbation, eps).

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

from ..analysis_inputs import check_analysis_inputs
from ..eps import parse_eps_list
from ..names import GAUSSIAN
from ..se_adapters import find_se_modules
from .adaptive_attack import check_attack_args, detector_pgd
from .mahalanobis import MahalanobisDetector
from .roc import detection_metrics

if TYPE_CHECKING:  # pragma: no cover - the attack package loads torchattacks: imported when used
    from ..attacks import AttackSpec

__all__ = ["detection_analysis", "ADAPTIVE", "COLUMNS"]

#: The ``perturbation`` value of the adaptive attack's rows (:func:`~serobust.detect.detector_pgd`).
ADAPTIVE = "adaptive"
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


def _adaptive_worst_case(detector: MahalanobisDetector, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                         weights: list[float], steps: int, seed: int,
                         batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example, the adaptive attack (over ``weights``) that fools the model with the lowest score.

    Returns predictions and scores, (N,) each: for an example some weight fooled, the fooling
    example with the lowest score (an attacker keeps the best of its tries); otherwise the first
    weight's example (it counts as a failed attack).
    """
    best_pred = best_score = None
    for w in weights:
        x_adv = detector_pgd(detector, x, y, eps, weight=w, steps=steps, seed=seed, batch_size=batch_size)
        pred, score = detector.predict_score(x_adv, batch_size=batch_size)
        if best_pred is None:
            best_pred, best_score = pred, score
            continue
        fooled, best_fooled = pred != y.to(pred.device), best_pred != y.to(pred.device)
        better = fooled & (~best_fooled | (score < best_score))
        best_pred, best_score = torch.where(better, pred, best_pred), torch.where(better, score, best_score)
    return best_pred, best_score


def _perturbed(detector: MahalanobisDetector, x: torch.Tensor, y: torch.Tensor, eps: float,
               attacks: list[str | AttackSpec],
               *, weights: list[float], adaptive_steps: int, seed: int,
               batch_size: int) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """(perturbation, predictions, scores) of each perturbation of ``x`` on the detector's model."""
    # lazy, through serobust's exports: the attack package loads torchattacks
    from .. import attack as make_attack
    from .. import generate
    from ..controls import matched_gaussian_noise

    specs = [make_attack(a) if isinstance(a, str) else a for a in attacks]
    x_pgd = None
    for spec in specs:
        x_adv = generate(detector.model, x, y, spec, eps, seed=seed, batch_size=batch_size)
        if spec.name == "pgd" and x_pgd is None:
            x_pgd = x_adv
        yield (spec.label, *detector.predict_score(x_adv, batch_size=batch_size))
    if x_pgd is None:  # the Gaussian control is sized by a PGD attack
        x_pgd = generate(detector.model, x, y, "pgd", eps, seed=seed, batch_size=batch_size)
    noise = matched_gaussian_noise(x, x_pgd.to(x.dtype), generator=torch.Generator().manual_seed(seed),
                                   batch_size=max(batch_size, 1024))
    yield (GAUSSIAN, *detector.predict_score(noise, batch_size=batch_size))
    yield (ADAPTIVE, *_adaptive_worst_case(detector, x, y, eps, weights=weights, steps=adaptive_steps,
                                           seed=seed, batch_size=batch_size))


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
    adaptive_weight: float | Sequence[float] = 0.0,
    adaptive_steps: int = 20,
    seed: int = 0,
    batch_size: int = 256,
) -> pd.DataFrame:
    """Does the excitation flag attacks beyond the baseline's features, and survive an adaptive attack?

    Two :class:`MahalanobisDetector` s are fitted on the clean images ``x_fit`` (training images):
    ``"excitation"`` on the SE twin (``[s, z]`` of its SE blocks) and ``"pooled"`` on the baseline
    (average-pooled outputs of the same blocks, ``serobust.matched_layers(baseline, se_model)``).
    Each is then scored on the clean test images ``x`` and on perturbations of them crafted against its
    own model, per eps: every attack in ``attacks`` (``serobust.generate`` with ``seed``), ``"gaussian"``
    noise with each example's PGD perturbation L2 norm (:func:`serobust.controls.matched_gaussian_noise`;
    PGD is the first ``pgd`` of ``attacks``, or default PGD), and ``"adaptive"``: :func:`detector_pgd`
    against that detector (``adaptive_steps`` steps), per example the lowest-scoring fooling example
    over the weights in ``adaptive_weight`` (the attacker tunes the weight; give several). Positives
    and negatives are as in the module docstring.

    Args:
        se_model: the SE twin; baseline: its baseline (same block names, no SE).
        x_fit, y_fit: clean training images and labels for the detectors' statistics.
        x, y: clean test images (N, C, H, W) in [0, 1] and labels.
        eps: one Linf budget > 0 or a list (``"8/255"`` accepted).
        attacks: attack names or ``serobust.attack(...)`` specs (Linf attacks, e.g. ``fgsm``, ``pgd``).
        adaptive_weight: weight(s) of the score in the adaptive attack's loss before it fools the model
            (see :func:`detector_pgd`). The default 0 (the selective attack) was the strongest single
            weight on the digits cnn pair; each further weight costs one more attack per model and eps
            (the attack dominates the cost: about 20 forward-backward passes per weight).
        adaptive_steps: PGD steps of the adaptive attack.
        seed: seed of the attacks, the noise and the adaptive random start.
        batch_size: examples per forward pass / attack call.

    Returns:
        One row per (features, perturbation, eps): ``features`` (``excitation``/``pooled``),
        ``perturbation`` (attack labels, ``gaussian``, ``adaptive``), ``eps``, ``auroc``,
        ``tpr_at_5fpr``, ``n_pos``, ``n_neg``, ``attack_success`` (fraction of clean-correct examples
        the perturbation makes misclassified).

    Raises:
        InputError: bad images or labels; ValueError: eps of 0, bad weights or steps, unmatched pair.
    """
    check_analysis_inputs(x, y=y, batch_size=batch_size)
    eps_list = parse_eps_list(eps)
    if 0 in eps_list:
        raise ValueError(f"eps {eps_list} holds 0: nothing is perturbed to detect; give budgets > 0")
    weights = _weights(adaptive_weight)
    for w in weights:
        check_attack_args(w, adaptive_steps, None)
    from .. import matched_layers  # lazy: resolved through serobust's exports

    layers = matched_layers(baseline, se_model)
    detectors = {"excitation": MahalanobisDetector(se_model, features="excitation",
                                                   blocks=_se_blocks_under(se_model, layers)),
                 "pooled": MahalanobisDetector(baseline, features="pooled", blocks=layers)}
    rows = []
    for features, detector in detectors.items():
        detector.fit(x_fit, y_fit, batch_size=batch_size)
        pred, clean_score = detector.predict_score(x, batch_size=batch_size)
        y_dev = y.to(pred.device)
        negative = pred == y_dev
        for eps_f in eps_list:
            for name, pert_pred, score in _perturbed(detector, x, y, eps_f, list(attacks), weights=weights,
                                                     adaptive_steps=adaptive_steps, seed=seed,
                                                     batch_size=batch_size):
                fooled = negative & (pert_pred != y_dev)
                positive = negative if name == GAUSSIAN else fooled
                metrics = detection_metrics(clean_score[negative], score[positive])
                n_neg = metrics["n_neg"]
                rows.append({"features": features, "perturbation": name, "eps": eps_f, **metrics,
                             "attack_success": int(fooled.sum()) / n_neg if n_neg else math.nan})
    return pd.DataFrame(rows, columns=list(COLUMNS))
