"""The Squeeze-and-Excitation block (Hu et al., arXiv 1709.01507), with probe-friendly submodules.

    u (B, C, H, W) --squeeze--> z (B, C) --fc1--> relu --fc2--> gate (sigmoid) --> s (B, C)
    output = s[:, :, None, None] * u

Every step is a named submodule so that forward hooks can read (and, for interventions, replace)
the intermediate values without touching globals:

* ``module.squeeze`` outputs the squeeze ``z`` with shape (B, C, 1, 1) (global average pool);
* ``module.gate`` outputs the excitation ``s`` with shape (B, C) (the sigmoid);
* a forward hook on the SE module itself sees ``u`` (its input) and ``s * u`` (its output).

:class:`serobust.ExcitationProbe` uses exactly these hooks.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["SqueezeExcite", "se_hidden_width"]


def se_hidden_width(channels: int, reduction: float, min_hidden: int = 8) -> int:
    """Bottleneck width of an SE block: ``round(channels / reduction)`` floored at ``min_hidden``.

    The paper's formula gives one hidden unit for 16 channels at r = 16, which is no longer a
    learned excitation but a single scalar broadcast to all channels. Like timm (floor 8), the width
    is floored at ``min_hidden``, and never exceeds ``channels`` so the block stays a bottleneck or
    at most an identity width.
    """
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if not reduction > 0 or math.isinf(reduction):
        raise ValueError(f"reduction ratio r must be a positive finite number, got {reduction}")
    if min_hidden < 1:
        raise ValueError(f"min_hidden must be >= 1, got {min_hidden}")
    return int(min(channels, max(min_hidden, round(channels / reduction))))


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation gate: rescales each channel of ``u`` by ``s = sigmoid(W2 relu(W1 z))``.

    Args:
        channels: number of channels C of the gated feature map.
        reduction: reduction ratio r; the hidden width is ``se_hidden_width(C, r, min_hidden)``.
        min_hidden: floor of the hidden width (default 8, as in timm).

    Shape:
        input ``u``: (B, C, H, W); output: (B, C, H, W).
    """

    def __init__(self, channels: int, reduction: float = 16, min_hidden: int = 8) -> None:
        super().__init__()
        self.channels = channels
        self.reduction = reduction
        self.hidden = se_hidden_width(channels, reduction, min_hidden)
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(channels, self.hidden)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(self.hidden, channels)
        self.gate = nn.Sigmoid()

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        z = self.squeeze(u).flatten(1)  # (B, C)
        s = self.gate(self.fc2(self.relu(self.fc1(z))))  # (B, C)
        return u * s[:, :, None, None].to(u.dtype)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, reduction={self.reduction}, hidden={self.hidden}"
