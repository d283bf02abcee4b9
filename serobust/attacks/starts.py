"""Random starts of the attacks built on :func:`serobust.linf_pgd.linf_pgd`: where their noise comes from.

A runner of such an attack (``excitation_pgd``, ``frozen_gate_pgd``, ``detector_pgd``) draws one start
``clip(x + U(-eps, eps), 0, 1)`` per batch (:func:`serobust.linf_pgd.start_from_noise`). Two sources:

* ``start_seed=None`` (the default): the global CPU generator, which the harness seeds before every
  (attack, eps, batch) run (:mod:`serobust.attacks.runs`), so a start depends on ``(seed, label, eps,
  batch)`` like every other registered attack's randomness, and on no other attack of the call;
* ``start_seed=<int>``: one generator seeded with it, drawn batch by batch through the call, the stream
  ``adaptive_attacks`` and ``detector_pgd`` used before they went through the harness. Their analyses
  pass their ``seed`` here, so their numbers did not move, and the three rows of ``adaptive_attacks``
  share one start per batch (same seed, same stream).
"""

from __future__ import annotations

import torch

from ..linf_pgd import start_from_noise, uniform_noise

__all__ = ["StartStream"]


class StartStream:
    """The random starts of one runner (one attack at one eps over the batches of one call).

    Args:
        start_seed: None for the harness's per-batch seeding, else the seed of a dedicated generator.
        device: where that generator lives (a CUDA generator draws other numbers than a CPU one for the
            same seed: the gate attacks used the model's device, ``detector_pgd`` the CPU).
    """

    def __init__(self, start_seed: int | None, *, device: torch.device | str = "cpu") -> None:
        # None: the global CPU generator, which the harness seeds before every run
        self._generator = torch.default_generator if start_seed is None else \
            torch.Generator(device=device).manual_seed(start_seed)

    def __call__(self, x: torch.Tensor, eps: float) -> torch.Tensor:
        """A uniform random point of the eps ball around ``x``, inside [0, 1]; (B, ...) -> (B, ...)."""
        return start_from_noise(x, uniform_noise(x, generator=self._generator), eps)
