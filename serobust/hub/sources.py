"""The model libraries members come from (timm, torchvision, pytorchcv, robustbench): how to install them,
import them, and check that a name exists in their registry (no weights are read)."""

from __future__ import annotations

import importlib
import importlib.util

from .specs import MemberError, MemberSpec

__all__ = ["INSTALL_HINTS", "library", "check_name"]

INSTALL_HINTS = {"timm": "pip install timm (or 'serobust[hub]')", "pytorchcv": "pip install pytorchcv (or 'serobust[hub]')",
                 "robustbench": "pip install robustbench (it pins its own timm version: use a separate venv if "
                                "that clashes)"}


def library(name: str):
    if importlib.util.find_spec(name) is None:
        raise MemberError(f"members from {name} need it installed: {INSTALL_HINTS[name]}")
    return importlib.import_module(name)


def check_name(spec: MemberSpec, key: str) -> None:
    """The name exists in the library's registry (and has pretrained weights when no file is given)."""
    lib, name = spec.library, spec.name
    if lib == "timm":
        timm = library("timm")
        if not timm.is_model(name):
            raise MemberError(f"{key}: timm has no model {name!r} (timm.list_models('{name.split('.')[0][:6]}*') "
                              "lists the names)")
        if not spec.weights:
            try:
                cfg = timm.get_pretrained_cfg(name)
            except RuntimeError as e:
                raise MemberError(f"{key}: {e}; timm.list_pretrained('{name.split('.')[0]}*') lists the tags") from None
            if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
                raise MemberError(f"{key}: timm publishes no pretrained weights for {name!r}; give weights = "
                                  "\"<file>\" or a name from timm.list_pretrained()")
    elif lib == "torchvision":
        import torchvision

        if name not in torchvision.models.list_models():
            raise MemberError(f"{key}: torchvision has no classification model {name!r} "
                              "(torchvision.models.list_models() lists them)")
    elif lib == "pytorchcv":
        library("pytorchcv")
        from pytorchcv.model_provider import _models

        if name not in _models:
            raise MemberError(f"{key}: pytorchcv has no model {name!r} (pytorchcv.model_provider._models lists them)")
    elif lib == "robustbench":
        parts = name.split("/")
        if len(parts) != 3 or not all(parts):
            raise MemberError(f"{key}: give robustbench:<dataset>/<threat>/<name>, e.g. "
                              "robustbench:cifar10/Linf/Standard")
        library("robustbench")
        from robustbench.model_zoo import model_dicts
        from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

        try:
            known = model_dicts[BenchmarkDataset(parts[0])][ThreatModel(parts[1])]
        except (ValueError, KeyError):
            raise MemberError(f"{key}: robustbench has no dataset/threat {parts[0]}/{parts[1]}") from None
        if parts[2] not in known:
            raise MemberError(f"{key}: robustbench has no {parts[0]}/{parts[1]} model {parts[2]!r}")
