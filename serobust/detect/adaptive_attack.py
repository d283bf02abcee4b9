"""The adaptive attack on a detector: fool the classifier and hide from the detector at once.

Carlini & Wagner (AISec 2017, "Adversarial examples are not easily detected") broke ten detectors by
attacking the classifier and the detector together; a detector is evidence only if it survives such
an attack. :func:`detector_pgd` is that attack for :class:`~serobust.detect.MahalanobisDetector`, run
with serobust's one Linf PGD loop (:func:`serobust.linf_pgd.linf_pgd`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..excitation.inputs import batch_slices, check_analysis_inputs
from ..eps import parse_eps_list
from ..linf_pgd import default_alpha, linf_pgd, uniform_start
from ..runtime import attack_state, check_int, model_device
from .features import Reader
from .mahalanobis import MahalanobisDetector

__all__ = ["detector_pgd", "check_attack_args"]


def check_attack_args(weight: float, steps: int, alpha: float | None) -> None:
    """Raise ``ValueError`` unless weight >= 0 is finite, steps a positive int, alpha None or > 0."""
    if not (isinstance(weight, (int, float)) and not isinstance(weight, bool) and 0 <= weight < math.inf):
        raise ValueError(f"weight must be a finite number >= 0 (the score's weight in the loss), got {weight!r}")
    check_int(steps, name="steps")
    if alpha is not None and not (isinstance(alpha, (int, float)) and alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"alpha (step size in [0, 1] pixel units) must be a positive number or None, got {alpha!r}")


class _BestFooling:
    """Per example, the iterate that fools the model with the lowest detector score seen so far.

    Fed from inside the PGD loss closure (every iterate the loop differentiates at) and once with
    the final iterate; device tensors only, updated with ``torch.where`` (no host sync).
    """

    def __init__(self, start: torch.Tensor) -> None:
        self.x = start.clone()  # (B, C, H, W)
        self.score = torch.full(start.shape[:1], math.inf, device=start.device)  # (B,)
        self.found = torch.zeros(start.shape[:1], dtype=torch.bool, device=start.device)  # (B,)

    def update(self, xa: torch.Tensor, fooled: torch.Tensor, score: torch.Tensor) -> None:
        better = fooled & (score < self.score)
        self.x = torch.where(better[:, None, None, None], xa, self.x)
        self.score = torch.where(better, score, self.score)
        self.found |= fooled

    def result(self, last: torch.Tensor) -> torch.Tensor:
        """The best fooling iterate where one was found, else the last iterate."""
        return torch.where(self.found[:, None, None, None], self.x, last)


def _detector_pgd_batch(detector: MahalanobisDetector, read: Reader, xb: torch.Tensor, yb: torch.Tensor,
                        start: torch.Tensor, *, eps: float, alpha: float, steps: int, weight: float) -> torch.Tensor:
    """One batch of :func:`detector_pgd`; float32 on the model's device."""
    best = _BestFooling(start)

    def objective(xa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, score = detector.logits_and_score(read, xa)
        fooled = logits.detach().argmax(1) != yb  # (B,) on the device: no sync
        best.update(xa.detach(), fooled, score.detach())
        return logits, score, fooled

    def loss(xa: torch.Tensor) -> torch.Tensor:
        logits, score, fooled = objective(xa)
        ce = F.cross_entropy(logits.float(), yb, reduction="none")  # (B,)
        # C&W's clipped classification term: once an example is misclassified, only its score is lowered
        return torch.where(fooled, -score, ce - weight * score).sum()

    last = linf_pgd(loss, xb, eps=eps, alpha=alpha, steps=steps, start=start)
    with torch.no_grad():
        objective(last)
    return best.result(last)


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

    Per example, ascends ``CE(logits(x'), y) - weight * score(x')`` over ``||x' - x||_inf <= eps``,
    ``x'`` in [0, 1], with :func:`serobust.linf_pgd.linf_pgd`, until the model misclassifies the
    example; from then on it descends ``score(x')`` alone (Carlini & Wagner's classification term
    clipped at kappa = 0; with ``weight = 0`` this is the "selective" attack of Bryniarski et al., ICLR
    2022, "Evading adversarial example detectors using orthogonal projected gradient descent"). The
    score is differentiated through the detector's features (an :class:`ExcitationProbe` with
    ``differentiable=True``, or hooks on the pooled blocks) and the Mahalanobis distance to the mean
    of the currently predicted class. Per example the attack returns the fooling iterate with the
    lowest score it met (else the last iterate): a white-box attacker evaluates the detector as it goes.

    Why not the fixed sum ``CE - weight * score`` throughout: measured on the 8x8 digits cnn pair, PGD's
    sign gradient follows the score on almost every pixel already at ``weight = 0.001``, so the sum
    either stops fooling the classifier or ignores the detector (at eps 0.2, weights 0.001 to 0.1 gave
    AUROC 0.94 to 0.78 while attack success fell from 74% to 5%); the selective form took the AUROC to
    about 0.55 with every example fooled.
    ``weight > 0`` still lets a not-yet-fooled example trade misclassification for a lower score;
    :func:`detection_analysis` runs several weights and keeps the best per example.
    No host synchronisation inside the loop. By default the attack starts at the clean image: a random
    start ``x + U(-eps, eps)`` puts noise on every pixel, the zero background of digits included, which is
    itself what a detector of unusual features flags, so it handicaps the attacker (``random_start=True``
    draws it from a CPU generator seeded with ``seed``, the same start on every device, batch by batch).

    Args:
        detector: a fitted :class:`MahalanobisDetector`; its model is attacked (eval mode, parameters
            frozen, both restored).
        x: clean images (N, C, H, W) in [0, 1]; y: labels (N,).
        eps: Linf budget in [0, 1] pixel units (``"8/255"`` accepted).
        weight: weight of the detector score in the loss of a not-yet-fooled example (>= 0).
        steps: PGD steps (default 50, five times PGD-10: the score is lowered only after fooling, and
            an evaluation of a defence needs a converged attack, Carlini et al. 2019); alpha: step size
            (default ``2.5 * eps / steps``, Madry et al.).
        random_start: start from ``x + U(-eps, eps)`` instead of ``x``.
        seed: seed of the random start; batch_size: examples attacked together.

    Returns:
        ``x_adv`` with x's shape, dtype and device.

    Raises:
        RuntimeError: the detector is not fitted, or (a serobust bug) ``x_adv`` left the eps ball or [0, 1].
        InputError: bad images or labels; ValueError: bad weight, steps or alpha.
    """
    detector._require_fit()
    check_analysis_inputs(x, y=y, batch_size=batch_size)
    check_attack_args(weight, steps, alpha)
    (eps_f,) = parse_eps_list([eps])
    if eps_f == 0:
        return x.clone()
    model, device = detector.model, model_device(detector.model)
    step = default_alpha(eps_f, steps) if alpha is None else float(alpha)
    gen = torch.Generator().manual_seed(seed)
    out = []
    with attack_state(model), detector.reading(differentiable=True) as read:
        for sl in batch_slices(len(x), batch_size):
            xb, yb = x[sl].to(device, torch.float32), y[sl].to(device)
            start = uniform_start(xb, eps_f, generator=gen) if random_start else xb.clone()
            out.append(_detector_pgd_batch(detector, read, xb, yb, start, eps=eps_f, alpha=step, steps=steps,
                                           weight=weight))
    x_adv = torch.cat(out)
    linf, lo, hi = torch.stack([(x_adv - x.to(device, torch.float32)).abs().amax(), x_adv.amin(),
                                x_adv.amax()]).tolist()
    if linf > eps_f + 1e-6 or lo < 0 or hi > 1:
        raise RuntimeError(f"detector_pgd left the eps ball or [0, 1] (max |x_adv - x| = {linf}, range "
                           f"[{lo}, {hi}]); this is a serobust bug, please report it")
    return x_adv.to(x.device, x.dtype)
