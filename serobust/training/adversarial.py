"""The inner maximisation of adversarial training (PGD-AT, Madry et al. 2018; FGSM with a random start,
Wong et al. 2020) in [0, 1] pixel space, through the shared :func:`~serobust.linf_pgd.linf_pgd`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..eps import parse_eps
from ..linf_pgd import default_alpha, linf_pgd, start_from_noise, uniform_noise
from .config import TrainConfig
from .precision import autocast

__all__ = ["TrainingAttack", "adversarial_batch"]


@dataclass(frozen=True)
class TrainingAttack:
    """The inner maximisation of adversarial training: ``steps`` Linf PGD steps of size ``alpha`` from a
    uniform start in the eps ball ([0, 1] pixel units)."""

    eps: float
    alpha: float
    steps: int

    @classmethod
    def of(cls, cfg: TrainConfig) -> TrainingAttack | None:
        """FGSM-RS (Wong et al. 2020) is one step of size ``1.25 * eps``, PGD-AT (Madry et al. 2018)
        ``adv_steps`` steps of size ``2.5 * eps / steps``, unless ``adv_alpha`` is set; None without AT."""
        if cfg.adversarial is None:
            return None
        eps = parse_eps(cfg.adv_eps)
        if cfg.adversarial == "fgsm_rs":
            return cls(eps, parse_eps(cfg.adv_alpha) if cfg.adv_alpha is not None else 1.25 * eps, 1)
        alpha = parse_eps(cfg.adv_alpha) if cfg.adv_alpha is not None else default_alpha(eps, cfg.adv_steps)
        return cls(eps, alpha, cfg.adv_steps)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor,
                 device: torch.device, *, cache: bool = True) -> torch.Tensor:
        """Adversarial examples from the start ``x + (2 * noise - 1) * eps`` (``noise``: U[0, 1) draws of x's
        shape). No random draw and no host sync, so a CUDA graph can hold it; ``cache`` as for
        :func:`autocast`. The model stays in the mode the trainer put it in; bf16 autocast on CUDA, as for
        the training step. Only the input gets gradients."""

        def loss(x_adv: torch.Tensor) -> torch.Tensor:
            with autocast(device, cache=cache):
                return F.cross_entropy(model(x_adv), y)

        return linf_pgd(loss, x, eps=self.eps, alpha=self.alpha, steps=self.steps,
                        start=start_from_noise(x, noise, self.eps))


def adversarial_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
                       gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """PGD-AT or FGSM-RS examples in [0, 1] pixel space (the shared :func:`~serobust.linf_pgd.linf_pgd`),
    starting at a uniform random point of the eps ball drawn from ``gen`` (the epoch's generator): what
    the training step computes before its update (see :class:`TrainingAttack`)."""
    attack = TrainingAttack.of(cfg)
    if attack is None:
        raise ValueError("TrainConfig.adversarial is None: there is no adversarial batch to make")
    return attack(model, x, y, uniform_noise(x, generator=gen), device)
