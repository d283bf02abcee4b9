"""The adaptive attack on a detector, as a function of the detector: :func:`detector_pgd`.

The attack itself is the registered ``detector_pgd`` (:class:`serobust.attacks.detector_pgd.DetectorPGD`),
run by the attack harness on :class:`~serobust.attacks.detector_pgd.DetectedClassifier` (the classifier with
its fitted detector); this module is the short way to call it with a detector in hand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .mahalanobis import MahalanobisDetector

__all__ = ["detector_pgd", "detector_attack"]


def detector_attack(*, weight: float = 0.0, steps: int = 50, alpha: float | None = None, random_start: bool = False,
                    seed: int = 0):
    """The :class:`~serobust.attacks.AttackSpec` :func:`detector_pgd` runs: ``start_seed=seed`` keeps the
    seeded CPU stream of random starts drawn batch by batch (see :mod:`serobust.attacks.starts`).

    Raises:
        ValueError / TypeError: a weight < 0, steps < 1, a bad alpha or seed (the message names the range).
    """
    from ..attacks.base import attack  # lazy: the attack package loads torchattacks

    return attack("detector_pgd", weight=weight, steps=steps, alpha=alpha, random_start=random_start,
                  start_seed=seed)


def detector_pgd(
    detector: MahalanobisDetector,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | str,
    *,
    weight: float = 0.0,
    steps: int = 50,
    alpha: float | None = None,
    random_start: bool = False,
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """Linf PGD that fools the classifier and lowers the detector's score (Carlini & Wagner 2017).

    ``generate(DetectedClassifier(detector), x, y, detector_attack(...), eps, seed=seed,
    batch_size=batch_size)``: the registered attack ``detector_pgd`` through the harness (input checks,
    eval mode and frozen parameters restored afterwards, batching, result checks). What the attack does
    and why: :class:`serobust.attacks.detector_pgd.DetectorPGD`.

    Args:
        detector: a fitted :class:`MahalanobisDetector`; its model is attacked.
        x: clean images (N, C, H, W) in [0, 1]; y: labels (N,).
        eps: Linf budget in [0, 1] pixel units (``"8/255"`` accepted); 0 returns a copy of ``x``.
        weight: weight of the detector score in the loss of a not-yet-fooled example (>= 0).
        steps: PGD steps (default 50); alpha: step size (default ``2.5 * eps / steps``).
        random_start: start from ``x + U(-eps, eps)`` instead of ``x`` (drawn from a CPU generator seeded
            with ``seed``, batch by batch: the same start on every device).
        seed: seed of the random start; batch_size: examples attacked together.

    Returns:
        ``x_adv`` with x's shape, dtype and device.

    Raises:
        RuntimeError: the detector is not fitted, or (a serobust bug) ``x_adv`` left the eps ball or [0, 1].
        InputError: bad images or labels; ValueError: bad weight, steps or alpha.
    """
    from ..attacks.detector_pgd import DetectedClassifier
    from ..attacks.harness import generate

    spec = detector_attack(weight=weight, steps=steps, alpha=alpha, random_start=random_start, seed=seed)
    x_adv = generate(DetectedClassifier(detector), x, y, spec, eps, seed=seed, batch_size=batch_size)
    return x_adv.to(x.dtype)
