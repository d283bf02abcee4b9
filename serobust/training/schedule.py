"""What a training step depends on besides the weights: the learning rate of a global step and the epoch's
random generators and example order.

Both are stateless functions of ``(seed, epoch, step)``, so a run resumed from the checkpoint of epoch k
draws exactly what an uninterrupted run draws, and a baseline and its SE twin see the same batches.
"""

from __future__ import annotations

import math

import torch

from .config import TrainConfig

__all__ = ["lr_at", "epoch_generator", "epoch_order"]


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Learning rate of a global step; stateless so that resumed runs need only the step count."""
    if cfg.schedule == "constant":
        return cfg.lr
    warm = int(cfg.warmup_frac * total)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    frac = (step - warm) / max(1, total - warm)
    if cfg.schedule == "onecycle":
        return cfg.lr * max(0.0, 1.0 - frac)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * frac))


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed * 1_000_003 + epoch)
    return g


def epoch_order(n: int, seed: int, epoch: int, gen: torch.Generator) -> torch.Tensor:
    """The epoch's permutation of ``n`` examples, always drawn on the CPU (from ``gen`` itself when it is the
    CPU epoch generator, else from a CPU generator seeded alike), so that a seed sees the same batches on
    every device. A CPU tensor: the caller moves it (one host-to-device copy per epoch)."""
    order_gen = gen if gen.device.type == "cpu" else epoch_generator(seed, epoch, torch.device("cpu"))
    return torch.randperm(n, generator=order_gen)
