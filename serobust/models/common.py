"""Pieces shared by every model family: in-model normalization and the optional SE gate."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .se import SqueezeExcite

__all__ = ["Normalize", "make_se", "residual_stages"]


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` as the first layer, so the model takes [0, 1] images.

    Attacks work in pixel space (torchattacks assumes inputs in [0, 1]); normalizing in the data
    loader instead would silently rescale every eps. mean and std are buffers, saved with the model.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor(list(mean), dtype=torch.float32)
        std_t = torch.as_tensor(list(std), dtype=torch.float32)
        if mean_t.shape != std_t.shape or mean_t.ndim != 1:
            raise ValueError(f"mean and std must be sequences of equal length, got {list(mean)} and {list(std)}")
        if bool((std_t <= 0).any()):
            raise ValueError(f"std must be positive, got {list(std)}")
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1))
        self.register_buffer("std", std_t.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def make_se(se: bool, channels: int, reduction: float, min_hidden: int) -> nn.Module | None:
    """An SE gate when ``se`` is true, else ``None`` (the baseline keeps no module at all)."""
    return SqueezeExcite(channels, reduction=reduction, min_hidden=min_hidden) if se else None


def residual_stages(
    block: Callable[..., nn.Module],
    cin: int,
    widths: Sequence[int],
    depths: Sequence[int],
    *,
    se: bool,
    reduction: float,
    min_hidden: int,
) -> list[nn.Sequential]:
    """The stages of a residual network: ``depths[i]`` blocks of width ``widths[i]``, the first block of every
    stage after the first downsampling by 2. ``block(cin, cout, stride, se, reduction, min_hidden)`` builds one
    block; blocks are built in order, so a baseline and its SE twin draw their shared weights identically."""
    stages = []
    for i, (cout, n) in enumerate(zip(widths, depths)):
        blocks = []
        for j in range(n):
            blocks.append(block(cin, cout, 2 if (i > 0 and j == 0) else 1, se, reduction, min_hidden))
            cin = cout
        stages.append(nn.Sequential(*blocks))
    return stages
