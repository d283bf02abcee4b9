"""Checks of every attack run and of the model, in AutoAttack's ``checks.py`` spirit.

* :func:`perturbation`: per-example statistics of a run, computed on the device in four kernels
  (difference, Linf norm, L2 norm, min/max); NaN propagates through all of them, so no separate NaN scan.
* :func:`sanity`: after the run, on the host: ``||x_adv - x|| <= eps`` in the attack's norm, ``x_adv``
  in [0, 1], no NaN, robust <= clean. The caller checks the *input* first (see
  :class:`~serobust.attacks.batches.GuardedBatches`), so a violation here is a bug in the harness or in
  the attack, and raises RuntimeError saying so.
* :class:`OutputChecks`: softmax outputs (attacks need logits) and randomized outputs (gradient attacks
  need EOT), recorded on the device on the first batch and reported once at the end.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["perturbation", "sanity", "probability_rows", "OutputChecks", "LINF_TOL", "L2_RTOL"]

LINF_TOL = 1e-6  # float rounding of x + eps - x; anything beyond is a projection bug
L2_RTOL = 1e-5


def perturbation(x_adv: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per example (all (B,), on the device): ``linf``/``l2`` of x_adv - x, ``lo``/``hi`` of x_adv."""
    delta = (x_adv - x).flatten(1)  # (B, C*H*W)
    lo, hi = torch.aminmax(x_adv.flatten(1), dim=1)
    return {"linf": torch.linalg.vector_norm(delta, float("inf"), dim=1), "l2": delta.norm(dim=1), "lo": lo, "hi": hi}


def sanity(label: str, norm: str, eps: float, stats: Mapping[str, torch.Tensor], *,
           clean: torch.Tensor | None = None, robust: torch.Tensor | None = None) -> None:
    """Raise RuntimeError if a run broke an invariant; ``stats`` are host tensors from :func:`perturbation`."""
    where = f"{label} at eps={eps:.6g}"
    culprit = f"harness bug (or a bug in attack {label!r})"
    nan = stats["linf"].isnan() | stats["lo"].isnan() | stats["hi"].isnan()
    if bool(nan.any()):
        raise RuntimeError(f"{culprit}: {where} produced NaN in {int(nan.sum())} adversarial examples")
    if len(stats["lo"]) and (float(stats["lo"].min()) < 0 or float(stats["hi"].max()) > 1):
        raise RuntimeError(f"{culprit}: {where} left [0, 1]: x_adv in [{float(stats['lo'].min())}, "
                           f"{float(stats['hi'].max())}]")
    if norm == "Linf":
        worst, limit = (float(stats["linf"].max()) if len(stats["linf"]) else 0.0), eps + LINF_TOL
    else:
        worst, limit = (float(stats["l2"].max()) if len(stats["l2"]) else 0.0), eps * (1 + L2_RTOL) + LINF_TOL
    if worst > limit:
        raise RuntimeError(f"{culprit}: {where} exceeded the {norm} budget: max norm {worst:.8g} > {eps:.8g}")
    if clean is not None and robust is not None and int(robust.sum()) > int(clean.sum()):
        raise RuntimeError(f"{culprit}: {where} robust accuracy exceeds clean accuracy")


def probability_rows(outputs: torch.Tensor) -> torch.Tensor:
    """Per row (B,): the outputs look like probabilities (all >= 0, summing to 1 within 1e-2)."""
    return (outputs >= 0).all(1) & ((outputs.sum(1) - 1).abs() < 1e-2)


class OutputChecks:
    """Softmax and randomness checks of a model's outputs on one batch, read back once.

    :meth:`record` runs one extra forward (randomness: the same input twice in eval mode must give the
    same outputs, within a tolerance: non-deterministic GPU kernels differ in the last bits, randomized
    defenses by far more) and keeps two device flags; :meth:`report` warns.
    """

    def __init__(self, name: str = "the model") -> None:
        self.name = name
        self._flags: torch.Tensor | None = None

    def record(self, model: nn.Module, x: torch.Tensor, outputs: torch.Tensor) -> None:
        """Record the flags for outputs ``outputs = model.score(x)`` (the harness's float32 forward) or
        ``model(x)`` (no host sync)."""
        with torch.no_grad():
            again = getattr(model, "score", model)(x)  # the forward that produced ``outputs``
        randomized = ~torch.isclose(again, outputs, rtol=1e-3, atol=1e-3).all()
        self._flags = torch.stack([probability_rows(outputs).all(), randomized])

    def report(self, *, stacklevel: int) -> None:
        """Warn about what :meth:`record` found (one host sync)."""
        if self._flags is None:
            return
        probs_like, randomized = self._flags.tolist()
        if probs_like:
            warnings.warn(f"{self.name}'s outputs look like probabilities (rows are >= 0 and sum to 1); attacks "
                          "expect logits: remove the final softmax", stacklevel=stacklevel + 1)
        if randomized:
            warnings.warn(f"{self.name} gives different outputs for the same input in eval mode (randomized "
                          "defense?); results vary run to run, and gradient attacks need EOT (apgd_ce eot_iter) "
                          "to be reliable", stacklevel=stacklevel + 1)
