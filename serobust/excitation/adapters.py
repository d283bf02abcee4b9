"""Finding SE modules in any model, through a small adapter registry.

An adapter says, for one SE module class, which of its submodules outputs the excitation ``s`` (the
gate). Everything else is common to SE blocks: the module's input is the feature map ``u``, the squeeze
``z`` is ``u``'s global average over (H, W), and the output is ``s * u``. Hooks on the module and on its
gate are therefore enough to read z, s, |u| and |s * u|, and a hook on the gate that returns another
tensor replaces ``s`` (used by the interventions).

Built in: serobust's :class:`~serobust.models.se.SqueezeExcite`, torchvision's
:class:`torchvision.ops.SqueezeExcitation` (MobileNetV3, EfficientNet, RegNetY) and, when timm is
installed, timm's ``SEModule`` and pytorchcv's ``SEBlock``. Add others with :func:`register_se_adapter`, for example the ``SELayer``
of senet.pytorch, whose gate is the last element of its ``fc`` Sequential::

    serobust.register_se_adapter(SELayer, gate="fc.3")
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from torch import nn

from ..errors import SerobustError
from ..models.se import SqueezeExcite

__all__ = ["SEAdapter", "register_se_adapter", "find_se_modules", "NoSEModuleError", "SEBlock"]


class NoSEModuleError(SerobustError, ValueError):
    """The model has no module that any registered SE adapter recognises."""


@dataclass(frozen=True)
class SEAdapter:
    """How to read one SE module class: ``gate`` is the dotted path of the submodule that outputs s."""

    module_type: type
    gate: str


@dataclass(frozen=True)
class SEBlock:
    """One SE module found in a model: its dotted name, the module, and its gate submodule."""

    name: str
    module: nn.Module
    gate: nn.Module


_ADAPTERS: dict[type, SEAdapter] = {}


def register_se_adapter(module_type: type, *, gate: str) -> SEAdapter:
    """Teach serobust to recognise ``module_type`` as an SE block whose excitation is ``gate``'s output.

    The gate's output must hold one value per channel (shape (B, C) or (B, C, 1, 1)); the module's
    input must be the feature map u and its output ``s * u``.
    """
    if not isinstance(module_type, type) or not issubclass(module_type, nn.Module):
        raise TypeError(f"module_type must be an nn.Module subclass, got {module_type!r}")
    if not isinstance(gate, str) or not gate:
        raise ValueError("gate must be the dotted name of the submodule that outputs the excitation s")
    adapter = SEAdapter(module_type, gate)
    _ADAPTERS[module_type] = adapter
    return adapter


def _register_builtins() -> None:
    register_se_adapter(SqueezeExcite, gate="gate")
    from torchvision.ops import SqueezeExcitation

    register_se_adapter(SqueezeExcitation, gate="scale_activation")
    for module, cls, gate in (("timm.layers.squeeze_excite", "SEModule", "gate"),  # optional dependencies
                              ("timm.models._efficientnet_blocks", "SqueezeExcite", "gate"),
                              ("pytorchcv.models.common.att", "SEBlock", "sigmoid")):
        try:
            register_se_adapter(getattr(importlib.import_module(module), cls), gate=gate)
        except (ImportError, AttributeError):
            continue


_register_builtins()


def _adapter_for(module: nn.Module) -> SEAdapter | None:
    for klass in type(module).__mro__:
        if klass in _ADAPTERS:
            return _ADAPTERS[klass]
    return None


def find_se_modules(model: nn.Module) -> list[SEBlock]:
    """Every SE module of ``model`` in definition order, named by its module path.

    Raises:
        NoSEModuleError: no registered SE adapter matches any submodule (a baseline, or an SE class
            serobust does not know: register it with :func:`serobust.register_se_adapter`).
    """
    blocks = []
    for name, module in model.named_modules():
        adapter = _adapter_for(module)
        if adapter is None:
            continue
        try:
            gate = module.get_submodule(adapter.gate)
        except AttributeError as e:
            raise NoSEModuleError(
                f"SE module {name!r} ({type(module).__name__}) has no gate submodule {adapter.gate!r}; "
                "fix the adapter with serobust.register_se_adapter(<class>, gate=<dotted name>)"
            ) from e
        blocks.append(SEBlock(name or "<root>", module, gate))
    if not blocks:
        known = ", ".join(sorted(a.module_type.__name__ for a in _ADAPTERS.values()))
        raise NoSEModuleError(
            f"{type(model).__name__} has no SE module (known SE classes: {known}). Probe the SE twin, not "
            "the baseline, or register your SE class with serobust.register_se_adapter(<class>, gate=<name>)."
        )
    return blocks
