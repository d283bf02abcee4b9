"""Loading given members: the network built by its library (or read from a file), wrapped with its
normalization (:class:`ExternalModel`) and checked against the data and the pair's roles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import SerobustError
from ..models.common import Normalize
from .parse import parse_pair
from .preprocessing import Preprocess, preprocess
from .specs import MemberError, MemberSpec, WeightsNotFoundError
from .weights import cache_dir, load_state, weights_file

__all__ = ["ExternalModel", "load_member", "load_pair", "check_se_member"]


_ARCH_LIBRARIES = ("timm", "torchvision", "pytorchcv")  # those that build an architecture without weights
_REGISTER_SE_HINT = ("give an SE model (e.g. timm:seresnet50) as se, or register its SE class with "
                     "serobust.register_se_adapter(<class>, gate=<name>)")


def _architecture(spec: MemberSpec, num_classes: int | None = None) -> nn.Module:
    """The member's architecture without weights (one of :data:`_ARCH_LIBRARIES`); timm and torchvision
    models get ``num_classes`` outputs when it is given."""
    kw = {"num_classes": num_classes} if num_classes is not None and spec.library != "pytorchcv" else {}
    if spec.library == "timm":
        import timm

        return timm.create_model(spec.name, pretrained=False, **kw)
    if spec.library == "torchvision":
        import torchvision

        return torchvision.models.get_model(spec.name, weights=None, **kw)
    from pytorchcv.model_provider import get_model

    return get_model(spec.name, pretrained=False)


def _build(spec: MemberSpec, num_classes: int | None, weights_dir: str, download: bool) -> nn.Module:
    lib, name = spec.library, spec.name
    if lib == "torchscript":  # a program, not weights: the user names this file explicitly (README says so)
        try:
            return torch.jit.load(name, map_location="cpu")
        except (RuntimeError, ValueError) as e:
            raise MemberError(f"{name} is not a TorchScript file ({str(e).splitlines()[0][:160]}); save it with "
                              "torch.jit.save(torch.jit.script(model), path)") from None
    if spec.weights:  # the architecture without weights, then the user's state dict
        if not Path(spec.weights).is_file():
            raise WeightsNotFoundError(f"{spec.source}: the weights file {spec.weights} does not exist; put the state "
                                       "dict there (torch.save(model.state_dict(), path)) or fix the member's weights")
        if lib not in _ARCH_LIBRARIES:
            raise MemberError(f"{spec.source}: robustbench members load their own weights; remove weights")
        model = _architecture(spec, num_classes)
        load_state(model, Path(spec.weights), spec, num_classes)
        return model
    found, where = weights_file(spec, weights_dir)
    if found is None and not download:
        raise WeightsNotFoundError(f"{spec.source}: weights not found and [model] download = false; put them at "
                                   f"{where}")
    try:
        if lib == "timm":
            import timm

            overlay = {"file": str(found)} if weights_dir and found is not None else None
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay)
        if lib == "torchvision":
            import torchvision

            weights = torchvision.models.get_model_weights(name).DEFAULT
            model = torchvision.models.get_model(name, weights=None)
            model.load_state_dict(weights.get_state_dict(progress=False, model_dir=str(cache_dir(lib, weights_dir))))
            return model
        if lib == "pytorchcv":
            from pytorchcv.model_provider import get_model

            return get_model(name, pretrained=True, root=str(cache_dir(lib, weights_dir)))
        from robustbench.utils import load_model

        dataset, threat, model_name = name.split("/")
        return load_model(model_name=model_name, model_dir=str(cache_dir(lib, weights_dir)), dataset=dataset,
                          threat_model=threat)
    except (SerobustError, KeyboardInterrupt):
        raise
    except Exception as e:  # offline, a proxy, a truncated download: the library's own error, then the fix
        raise WeightsNotFoundError(f"{spec.source}: the pretrained weights could not be loaded ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0][:160] if str(e) else ''}); put them at {where}") from None


def check_se_member(spec: MemberSpec, key: str = "se") -> int:
    """The SE member's architecture has SE modules the probe knows: built without weights on the meta device
    (no memory, no download), so ``serobust check`` can refuse a baseline given as ``se``. Returns the count."""
    from ..excitation.adapters import NoSEModuleError, find_se_modules

    if spec.library not in _ARCH_LIBRARIES:
        return -1  # robustbench and TorchScript: known only once loaded (load_member checks them)
    with torch.device("meta"):
        net = _architecture(spec)
    try:
        return len(find_se_modules(net))
    except NoSEModuleError:
        raise MemberError(f"{key} = {spec.source} has no SE module the probe knows: {_REGISTER_SE_HINT}") from None


class ExternalModel(nn.Module):
    """A loaded member taking [0, 1] images: its mean/std normalization first, then the network (``net``)."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def load_member(spec: MemberSpec, *, num_classes: int | None = None, se: bool = False, weights_dir: str = "",
                download: bool = True) -> ExternalModel:
    """The member in eval mode on the CPU, taking [0, 1] images at its input size (see :func:`preprocess`).

    Args:
        num_classes: the data set's class count; a model with another output width is an error.
        se: the member is the pair's SE model: it must have SE modules the probe recognises.

    Raises:
        WeightsNotFoundError: pretrained weights neither on disk nor downloadable (names the file and folder).
        MemberError: weights that do not fit, no SE module in the SE member, a class-count mismatch.
        CheckpointError: a weights file that is not a weights-only state dict.
    """
    net = _build(spec, num_classes, weights_dir, download)
    prep = preprocess(spec)
    model = ExternalModel(net, prep.mean, prep.std).eval()
    if se:
        from ..excitation.adapters import NoSEModuleError, find_se_modules

        try:
            find_se_modules(model)
        except NoSEModuleError:
            raise MemberError(f"the SE member {spec.source} has no SE module the probe knows: "
                              f"{_REGISTER_SE_HINT}") from None
    out = _output_width(net, model, prep)
    if num_classes is not None and out is not None and out != num_classes:
        raise MemberError(f"{spec.source} outputs {out} classes but the data set has {num_classes}: evaluate it on "
                          f"data with its {out} classes (ImageNet-1k for ImageNet models), or give a checkpoint "
                          f"trained on these {num_classes}")
    return model


def _output_width(net: nn.Module, model: nn.Module, prep: Preprocess) -> int | None:
    """The model's class count: from its classifier attribute when it has one, else one forward pass."""
    n = getattr(net, "num_classes", None)
    if isinstance(n, int) and n > 0:
        return n
    side = prep.size or 32
    try:
        with torch.no_grad():
            return int(model(torch.zeros(1, len(prep.mean), side, side)).shape[-1])
    except RuntimeError:
        return None


def load_pair(baseline: str | Mapping[str, Any], se: str | Mapping[str, Any], *, num_classes: int | None = None,
              weights_dir: str = "", download: bool = True) -> tuple[ExternalModel, ExternalModel, Preprocess]:
    """A given pair from the Python API: ``(baseline, se_model, preprocessing)``, members as in a config.

    ``preprocessing.geometry()`` is what :func:`serobust.load_dataset` needs to decode an ImageNet-style
    folder for them (``load_dataset("imagenet", path=..., preprocess=prep.geometry())``)::

        base, se, prep = serobust.load_pair("timm:resnet50.a1_in1k", "timm:seresnet50.a1_in1k")
    """
    pair = parse_pair({"baseline": baseline, "se": se}, "pair")
    return (load_member(pair.baseline, num_classes=num_classes, weights_dir=weights_dir, download=download),
            load_member(pair.se, num_classes=num_classes, se=True, weights_dir=weights_dir, download=download),
            preprocess(pair.baseline))
