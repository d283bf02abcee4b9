"""A small CNN for 28x28 digits that also runs on 8x8 and 32x32 input.

Layout (C = width): [conv3x3-BN-ReLU(-SE)] x 2 at C, maxpool, x 2 at 2C, maxpool, x 1 at 4C,
global average pool, linear. The SE gate (when on) rescales each block's output, as SE does for a
non-residual transformation in the paper (SE-Inception). With the default width 16, the
baseline has about 0.1M parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .common import Normalize, make_se
from .registry import register_model

__all__ = ["SmallCNN"]


class ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, se: bool, reduction: float, min_hidden: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.se = make_se(se, cout, reduction, min_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.conv(x)))
        return self.se(x) if self.se is not None else x


class SmallCNN(nn.Module):
    """Five conv blocks with two max-pools; SE after each block when ``se=True``."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        *,
        se: bool = False,
        reduction: float = 16,
        min_hidden: int = 8,
        width: int = 16,
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.5,),
    ) -> None:
        super().__init__()
        w = width
        self.normalize = Normalize(mean, std)
        block = lambda cin, cout: ConvBlock(cin, cout, se, reduction, min_hidden)  # noqa: E731
        self.features = nn.Sequential(
            block(in_channels, w), block(w, w), nn.MaxPool2d(2),
            block(w, 2 * w), block(2 * w, 2 * w), nn.MaxPool2d(2),
            block(2 * w, 4 * w),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.normalize(x))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model("cnn")
def cnn(**kw) -> nn.Module:
    return SmallCNN(**kw)
