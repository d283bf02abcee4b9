"""The one Linf PGD loop of serobust: projected sign-gradient ascent on a loss closure.

Projected gradient descent in the form of Madry et al. (ICLR 2018, "Towards Deep Learning Models
Resistant to Adversarial Attacks", Sec. 2.1): from a start point in the eps ball around x, repeat
``x' <- Proj(x' + alpha * sign(grad loss(x')))``, the projection being onto the Linf ball of radius
eps around x and then onto the image range [0, 1]. The loss is a closure ``loss(x_adv) -> scalar``,
so one loop serves

* adversarial training (:func:`serobust.training.adversarial.adversarial_batch`: PGD-AT, and FGSM with a random
  start, Wong et al. 2020, which is one step of this loop from a random start);
* the adaptive attacks registered in :mod:`serobust.attacks.se_gates` (an excitation term in the loss,
  or the SE gates frozen) and :mod:`serobust.attacks.detector_pgd` (the detector's score in the loss).

The loop is plain torch: no host synchronisation inside (no ``.item()``, no data-dependent Python
branch), only the input receives gradients (``torch.autograd.grad`` with respect to ``x_adv``), and
the caller owns everything around it (model mode, autocast inside the closure, random generators).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .runtime import check_int

__all__ = ["linf_pgd", "uniform_start", "uniform_noise", "start_from_noise", "default_alpha"]


def default_alpha(eps: float, steps: int) -> float:
    """Madry et al.'s step size ``2.5 * eps / steps``: enough to cross the ball from any start."""
    return 2.5 * eps / steps


def uniform_noise(x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """``U[0, 1)`` draws of x's shape, float32, on the generator's device: the randomness of a start.

    Split from :func:`start_from_noise` so that a CUDA graph can replay the start: the draw happens
    outside the graph into a static buffer, the arithmetic inside it (the adversarial-training step of
    :mod:`serobust.training.adversarial`).
    """
    return torch.rand(x.shape, generator=generator, device=generator.device, dtype=torch.float32)  # [0, 1)


def start_from_noise(x: torch.Tensor, noise: torch.Tensor, eps: float) -> torch.Tensor:
    """``clip(x + (2 * noise - 1) * eps, 0, 1)`` for ``noise`` in [0, 1): a uniform point of the eps ball.

    No random draw and no host sync (capturable in a CUDA graph); ``noise`` is not modified.

    Shape: x (N, ...), noise (N, ...) -> (N, ...).
    """
    delta = (2 * noise - 1).mul_(eps).to(x.device)
    return (x + delta).clamp_(0, 1)


def uniform_start(x: torch.Tensor, eps: float, *, generator: torch.Generator) -> torch.Tensor:
    """``clip(x + U(-eps, eps), 0, 1)``: a uniform random start in the eps ball, inside [0, 1].

    The noise is drawn in float32 on the generator's device (:func:`uniform_noise`) and moved to x's
    device, so one seed gives one start for every attack that draws from the same generator state.

    Shape: x (N, ...) -> (N, ...).
    """
    return start_from_noise(x, uniform_noise(x, generator=generator), eps)


def linf_pgd(
    loss: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """Maximise ``loss(x_adv)`` over ``||x_adv - x||_inf <= eps``, ``x_adv`` in [0, 1], by PGD.

    Each step: ``x_adv += alpha * sign(d loss / d x_adv)``, then ``x_adv - x`` is clipped to
    [-eps, eps] and ``x_adv`` to [0, 1]. Gradients are taken with respect to ``x_adv`` only (never
    accumulated into parameters' ``.grad``) and with autograd enabled even inside ``torch.no_grad``.

    Args:
        loss: ``loss(x_adv) -> scalar`` to maximise; it runs the model (under autocast if the caller
            wants it) and may read anything the forward pass records.
        x: the clean images (N, C, H, W) in [0, 1], the centre of the eps ball.
        eps: Linf radius in [0, 1] pixel units.
        alpha: step size in [0, 1] pixel units (:func:`default_alpha` for Madry's choice).
        steps: number of steps (0 returns the start).
        start: the first iterate, e.g. :func:`uniform_start`; ``None`` starts from ``x``.

    Returns:
        ``x_adv``, detached, same shape and dtype as ``start`` (or ``x``).
    """
    check_int(steps, name="steps", minimum=0)
    for name, value in (("eps", eps), ("alpha", alpha)):
        if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number >= 0 in [0, 1] pixel units, got {value!r}")
    x = x.detach()
    x_adv = (x if start is None else start).detach()
    with torch.enable_grad():
        for _ in range(steps):
            x_adv.requires_grad_(True)
            (grad,) = torch.autograd.grad(loss(x_adv), x_adv)
            x_adv = x_adv.detach() + alpha * grad.sign()
            delta = torch.clamp(x_adv - x, min=-eps, max=eps)  # project onto the eps ball ...
            x_adv = torch.clamp(x + delta, min=0, max=1).detach()  # ... and onto [0, 1]
    return x_adv
