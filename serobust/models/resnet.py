"""CIFAR ResNets of He et al. 2016 (section 4.2), with optional SE on the residual branch.

3x3 stem with 16 channels, three stages of n BasicBlocks at 16/32/64 channels (stride 2 at the start of
stages 2 and 3), global average pool, linear; depth = 6n + 2. Shortcuts are option A (strided identity
with zero-padded channels, no parameters), as in the paper's CIFAR experiments and akamaster's
reference implementation, which gives the published parameter counts:

=========  ==========
model      parameters
=========  ==========
ResNet-20  0.27M
ResNet-32  0.46M
ResNet-56  0.85M
=========  ==========

In the SE twin, the gate sits on the residual branch before the addition (the paper's SE-ResNet,
figure 3): ``out = relu(shortcut(x) + SE(bn2(conv2(relu(bn1(conv1(x)))))))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .common import Normalize, make_se, residual_stages
from .registry import register_model

__all__ = ["CifarResNet", "BasicBlock"]


class ShortcutA(nn.Module):
    """Parameter-free shortcut: spatial subsampling and zero-padding of the new channels."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad = cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, se: bool, reduction: float, min_hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.se = make_se(se, cout, reduction, min_hidden)
        self.shortcut = ShortcutA(cin, cout, stride) if (stride != 1 or cin != cout) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 input; ``se=True`` adds an SE gate to every block."""

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        in_channels: int = 3,
        *,
        se: bool = False,
        reduction: float = 16,
        min_hidden: int = 8,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers = residual_stages(
            BasicBlock, 16, (16, 32, 64), (n, n, n), se=se, reduction=reduction, min_hidden=min_hidden
        )
        self.layer1, self.layer2, self.layer3 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(self.normalize(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model("resnet20")
def resnet20(**kw) -> nn.Module:
    return CifarResNet(depth=20, **kw)


@register_model("resnet32")
def resnet32(**kw) -> nn.Module:
    return CifarResNet(depth=32, **kw)


@register_model("resnet56")
def resnet56(**kw) -> nn.Module:
    return CifarResNet(depth=56, **kw)
