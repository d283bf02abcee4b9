"""Paired baseline/SE model zoo: the registry, the SE gate, and one module per architecture family.

Every module of this package is imported with it, built-in families first, so **adding an architecture is
one file**: a module in this folder that defines the model (SE modules made with :func:`make_se`, on the
block's output or residual branch) and registers a factory with ``@register_model("name")``. The family
modules here are examples: ``cnn`` (a small CNN for digits), ``resnet`` (CIFAR ResNet-20/32/56) and
``preact_resnet`` (PreAct-ResNet-18).
"""

from __future__ import annotations

import importlib
import pkgutil

from .common import Normalize, make_se
from .registry import ARCHITECTURES, build_model, build_pair, register_model
from .se import SqueezeExcite, se_hidden_width

_BUILT_IN = ("cnn", "resnet", "preact_resnet")
_INFRASTRUCTURE = {"common", "registry", "se"}
for _name in (*_BUILT_IN, *sorted(m.name for m in pkgutil.iter_modules(__path__)
                                  if m.name not in _BUILT_IN and m.name not in _INFRASTRUCTURE)):
    importlib.import_module(f"{__name__}.{_name}")

from .cnn import SmallCNN  # noqa: E402
from .preact_resnet import PreActResNet  # noqa: E402
from .resnet import CifarResNet  # noqa: E402

__all__ = [
    "ARCHITECTURES",
    "build_model",
    "build_pair",
    "register_model",
    "SqueezeExcite",
    "se_hidden_width",
    "Normalize",
    "make_se",
    "SmallCNN",
    "CifarResNet",
    "PreActResNet",
]
