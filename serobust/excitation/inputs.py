"""How the excitation-analysis functions take their inputs: checked once, then cut into batches.

Every public analysis function (shift metrics, sensitivity, interventions, adaptive attacks, class
profiles) takes clean images ``x``, often labels ``y`` and perturbed images ``x_adv``. They are
checked here once per call, over the whole tensor (:func:`serobust.runtime.check_images`: one host
sync), before any batch loop, so images on the 0..255 scale, normalized images or NaN raise an
:class:`~serobust.errors.InputError` naming the fix instead of producing plausible-looking numbers.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..errors import InputError
from ..runtime import check_batch_size, check_images, check_labels

__all__ = ["check_analysis_inputs", "check_batch_size", "batch_slices"]


def check_analysis_inputs(
    x: torch.Tensor,
    *,
    y: torch.Tensor | None = None,
    x_adv: torch.Tensor | None = None,
    batch_size: int | None = None,
    x_adv_name: str = "x_adv",
) -> None:
    """Check the images, labels, perturbed images and batch size of one analysis call.

    Args:
        x: clean images, float (N, C, H, W) in [0, 1], N >= 1.
        y: labels, integer (N,), when the function takes them.
        x_adv: perturbed images of the same shape, when the function takes them.
        batch_size: checked to be a positive integer, when given.
        x_adv_name: how ``x_adv`` is called in messages (e.g. the attack that returned it).

    Raises:
        InputError: a check failed; the message names the argument and the fix.
        ValueError: ``batch_size`` is not a positive integer.
    """
    check_images(x, name="x")
    if x.shape[0] == 0:
        raise InputError("x holds no images; pass at least one (N >= 1)")
    if x_adv is not None:
        check_images(x_adv, name=x_adv_name)
        if x_adv.shape != x.shape:
            raise InputError(f"{x_adv_name} must have the same shape as x {tuple(x.shape)}, got "
                             f"{tuple(x_adv.shape)}; pass the perturbed versions of x, in the same order")
    if y is not None:
        check_labels(y, x.shape[0], name="y")
    if batch_size is not None:
        check_batch_size(batch_size)


def batch_slices(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices of ``range(n)`` of at most ``batch_size`` indices."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))
