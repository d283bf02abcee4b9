"""Random perturbations of the attack's size: the controls an adversarial excitation shift is read against.

An excitation shift under attack means little on its own: any perturbation moves the excitations
somewhat. :func:`serobust.shift_analysis` therefore measures the same shift under two random controls
of matched size (common random numbers: the same draws at every eps for a given generator):

* :func:`sign_noise` -- the attack's Linf budget with random signs, ``clip(x + eps * sign(N(0, 1)))``;
* :func:`matched_gaussian_noise` -- a Gaussian direction scaled, per sample, so that the perturbation
  actually applied after clipping has the L2 norm of the adversarial one.

If the adversarial damping ratio is no lower than the controls', the gate damps perturbations in
general, not adversarial ones in particular (DESIGN.md, H1's "beyond what random noise does").

Only the Gaussian control is matched in L2. On images with a zero (or saturated) background the Linf
sign noise loses every step that points out of [0, 1]: measured on 200 mnist5k test digits (81% of the
pixels exactly 0), its applied L2 norm is 0.74 of ``eps * sqrt(D)`` at eps 0.05, 0.1 and 0.2, and the
attack's own (clipped) perturbation differs again. The Gaussian control's applied norm equals the
attack's applied norm image by image (bisection on the scale; largest error 5e-7 there), so a mechanism
quantity under attack divided by its value under the ``"gaussian"`` rows of the same (seed, eps, block)
is the attack's effect relative to chance of the same size.
"""

from __future__ import annotations

import warnings

import torch

from ..eps import parse_eps
from ..runtime import check_images
from .inputs import check_analysis_inputs

__all__ = ["sign_noise", "matched_gaussian_noise"]


def sign_noise(x: torch.Tensor, eps: float | str, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``clip(x + eps * sign(N(0, 1)), 0, 1)``: uniform random signs at the Linf budget ``eps``.

    The noise is drawn on the CPU (reproducible across devices with a CPU ``generator``) and moved to
    x's device.

    Shape: x (N, C, H, W) in [0, 1] -> same.

    Raises:
        InputError: ``x`` is not a float image batch in [0, 1] without NaN.
    """
    check_images(x, name="x")
    eps = parse_eps(eps)
    signs = torch.randn(x.shape, generator=generator).sign().to(device=x.device, dtype=x.dtype)
    return (x + eps * signs).clamp(0.0, 1.0)


def matched_gaussian_noise(
    x: torch.Tensor,
    x_adv: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    batch_size: int = 1024,
    iters: int = 50,
) -> torch.Tensor:
    """Gaussian noise whose applied perturbation has, per sample, the L2 norm of ``x_adv - x``.

    The direction is a standard normal draw; its scale t is found per sample by bisection so that the
    perturbation actually applied, ``clip(x + t * n, 0, 1) - x``, has the adversarial perturbation's L2
    norm (clipping only shrinks a perturbation, and ``t -> ||clip(x + t n) - x||`` is non-decreasing, so
    bisection converges). Scaling before clipping would leave the control weaker than the attack on
    images with many pixels at 0 or 1. Where the target is out of reach (every pixel would saturate),
    the noise saturates and a warning says for how many samples.

    Shape: x, x_adv (N, C, H, W) in [0, 1] -> (N, C, H, W).

    Raises:
        InputError: bad images or mismatched shapes.
    """
    check_analysis_inputs(x, x_adv=x_adv, batch_size=batch_size)
    out = torch.empty_like(x)
    unreachable = torch.zeros((), dtype=torch.long, device=x.device)
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size].float()
        b = xb.shape[0]
        xf = xb.reshape(b, -1)  # (B, D)
        target = (x_adv[start : start + batch_size].float().reshape(b, -1) - xf).norm(dim=1)  # (B,)
        n = torch.randn(xf.shape, generator=generator).to(xf.device)
        n = n / n.norm(dim=1, keepdim=True)
        # farthest reachable perturbation: every pixel pushed to 0 or 1 along the sign of n
        reach = torch.where(n > 0, 1 - xf, torch.where(n < 0, xf, torch.zeros_like(xf)))
        max_norm = reach.norm(dim=1)
        t_sat = (reach / n.abs().clamp_min(1e-30)).amax(dim=1)  # scale at which everything saturates
        too_far = target > max_norm
        unreachable += too_far.sum()
        lo = torch.zeros_like(target)
        hi = torch.where(too_far, t_sat, torch.maximum(t_sat, target))
        for _ in range(iters):
            mid = (lo + hi) / 2
            norm = ((xf + mid[:, None] * n).clamp(0, 1) - xf).norm(dim=1)
            below = norm < target
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        t = torch.where(too_far, t_sat, hi)
        out[start : start + b] = (xf + t[:, None] * n).clamp(0, 1).reshape(xb.shape).to(x.dtype)
    n_unreachable = int(unreachable)  # the one host sync, after the loop
    if n_unreachable:
        warnings.warn(f"{n_unreachable} samples: the adversarial L2 norm exceeds what clipped noise can reach; "
                      "their Gaussian control saturates every pixel", stacklevel=2)
    return out
