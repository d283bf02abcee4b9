"""PreAct-ResNet-18 (He et al. 2016, "Identity Mappings"), the usual adversarial-robustness benchmark.

Four stages of two pre-activation blocks at 64/128/256/512 channels (about 11.2M parameters for
10 classes), as used by Madry-style adversarial training papers (Rice et al. 2020, Wong et al. 2020).
In the SE twin, the gate sits on the residual branch before the addition.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .common import Normalize, make_se, residual_stages
from .registry import register_model

__all__ = ["PreActResNet"]


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, se: bool, reduction: float, min_hidden: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.se = make_se(se, cout, reduction, min_hidden)
        self.shortcut = (
            nn.Conv2d(cin, cout, 1, stride=stride, bias=False) if (stride != 1 or cin != cout) else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        if self.se is not None:
            out = self.se(out)
        return out + shortcut


class PreActResNet(nn.Module):
    """PreAct-ResNet with ``num_blocks`` per stage ((2, 2, 2, 2) is PreAct-ResNet-18)."""

    def __init__(
        self,
        num_blocks: Sequence[int] = (2, 2, 2, 2),
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
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(in_channels, 64, 3, padding=1, bias=False)
        stages = residual_stages(
            PreActBlock, 64, (64, 128, 256, 512), num_blocks, se=se, reduction=reduction, min_hidden=min_hidden
        )
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn = nn.BatchNorm2d(512)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.normalize(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = F.relu(self.bn(x))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model("preact_resnet18")
def preact_resnet18(**kw) -> nn.Module:
    return PreActResNet((2, 2, 2, 2), **kw)
