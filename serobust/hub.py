"""Published and user-trained pairs: members loaded from a model library or a file instead of trained here.

A member is named by its source (:data:`SOURCES`):

- ``timm:<name>`` (``resnet50.a1_in1k``), ``torchvision:<name>`` (``regnet_y_400mf``), ``pytorchcv:<name>``
  (``seresnet20_cifar10``), ``robustbench:<dataset>/<threat>/<name>``: the library's architecture with its
  pretrained weights, loaded through the library's own loader (its hub cache, or ``weights_dir`` offline);
- the same with ``weights = "file"``: the architecture built without weights, then a weights-only state
  dict (``.pt``/``.pth``/``.bin`` through ``torch.load(weights_only=True)``, or ``.safetensors``) loaded
  into it; this is how a user's own checkpoints enter a study;
- ``torchscript:<file>``: a TorchScript model (a baseline only: its modules carry no Python class, so the
  probe cannot find SE blocks in it).

Preprocessing travels with the weights (:func:`preprocess`): the resize, crop and interpolation of the
model's pretrained configuration (timm's ``pretrained_cfg``, torchvision's weights transforms) are applied
when the images are decoded, to [0, 1] tensors at the model's input size; its mean and std go inside the
model (:class:`ExternalModel`), so attacks see [0, 1] images and eps is in [0, 1] pixels of that input.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import SerobustError
from .models.common import Normalize

__all__ = ["SOURCES", "MemberError", "WeightsNotFoundError", "MemberSpec", "PairSpec", "Preprocess",
           "parse_member", "parse_pair", "preprocess", "pair_geometry", "weights_file", "missing_weights",
           "load_member", "load_pair", "check_se_member", "member_preprocess", "ExternalModel", "resize_crop", "INSTALL_HINTS"]

log = logging.getLogger(__name__)

SOURCES = ("timm", "torchvision", "pytorchcv", "robustbench", "torchscript")
INSTALL_HINTS = {"timm": "pip install timm (or 'serobust[hub]')", "pytorchcv": "pip install pytorchcv (or 'serobust[hub]')",
                 "robustbench": "pip install robustbench (it pins its own timm version: use a separate venv if "
                                "that clashes)"}
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: pytorchcv (imgclsmob) evaluates its CIFAR-10 models with these statistics
_PYTORCHCV_STATS = {"cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))}
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
_MEMBER_KEYS = ("source", "weights", "mean", "std", "input_size", "crop_pct", "interpolation")


class MemberError(SerobustError, ValueError):
    """A member cannot be used: unknown name, a library missing, weights that do not fit, no SE module."""


class WeightsNotFoundError(SerobustError, FileNotFoundError):
    """Pretrained weights are not on disk and cannot be fetched; the message says which file to put where."""


# ---------------------------------------------------------------------------------------------- specs

@dataclass(frozen=True)
class MemberSpec:
    """One member as a config names it; ``weights`` (a local file) replaces the library's pretrained weights."""

    source: str
    weights: str = ""
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_size: int | None = None  # the square crop the model sees
    crop_pct: float | None = None  # resize the shorter side to input_size / crop_pct before the center crop
    interpolation: str | None = None

    @property
    def library(self) -> str:
        return self.source.split(":", 1)[0]

    @property
    def name(self) -> str:
        return self.source.split(":", 1)[1]

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, "")}


@dataclass(frozen=True)
class PairSpec:
    """A baseline and an SE member that share a recipe (not initial weights); ``name`` labels the replicate."""

    name: str
    baseline: MemberSpec
    se: MemberSpec


def _floats(value: Any, key: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise MemberError(f"{key} = {value!r}: give one number per input channel, e.g. [0.485, 0.456, 0.406]")
    return tuple(float(v) for v in value)


def parse_member(value: Any, key: str, *, base_dir: Path | None = None) -> MemberSpec:
    """A member from its config form: ``"timm:resnet50.a1_in1k"`` or a table ``{ source, weights, mean, std,
    input_size, crop_pct, interpolation }``; checked against the library's registry (no weights are read).

    Raises:
        MemberError: the message names ``key`` and what is allowed.
    """
    table = {"source": value} if isinstance(value, str) else value
    if not isinstance(table, Mapping):
        raise MemberError(f"{key} = {value!r}: give \"<library>:<name>\" or a table {{ source = ..., weights = ... }}")
    unknown = sorted(set(table) - set(_MEMBER_KEYS))
    if unknown:
        raise MemberError(f"{key}: unknown key(s) {unknown}; allowed {list(_MEMBER_KEYS)}")
    source = table.get("source")
    if not isinstance(source, str) or ":" not in source or source.split(":", 1)[0] not in SOURCES \
            or not source.split(":", 1)[1]:
        raise MemberError(f"{key}.source = {source!r}: give <library>:<name> with library one of {list(SOURCES)} "
                          "(e.g. \"timm:seresnet50.a1_in1k\", \"torchscript:model.pt\")")
    weights = table.get("weights", "")
    if not isinstance(weights, str):
        raise MemberError(f"{key}.weights = {weights!r}: give the path of a weights-only state dict file")
    library, name = source.split(":", 1)
    if library == "torchscript":
        name = _resolve(name, base_dir)
        source = f"torchscript:{name}"
        if weights:
            raise MemberError(f"{key}.weights: a TorchScript file carries its weights; remove weights")
    if weights:
        weights = _resolve(weights, base_dir)
    spec = MemberSpec(
        source=source, weights=weights,
        mean=_floats(table["mean"], f"{key}.mean") if "mean" in table else None,
        std=_floats(table["std"], f"{key}.std") if "std" in table else None,
        input_size=table.get("input_size"), crop_pct=table.get("crop_pct"), interpolation=table.get("interpolation"))
    if spec.input_size is not None and (isinstance(spec.input_size, bool) or not isinstance(spec.input_size, int)
                                        or spec.input_size < 8):
        raise MemberError(f"{key}.input_size = {spec.input_size!r}: give the side of the square input in pixels")
    if spec.crop_pct is not None and (isinstance(spec.crop_pct, bool) or not isinstance(spec.crop_pct, (int, float))
                                      or not 0.1 <= spec.crop_pct <= 1):
        raise MemberError(f"{key}.crop_pct = {spec.crop_pct!r}: a fraction in [0.1, 1] (e.g. 0.875)")
    if spec.interpolation is not None and spec.interpolation not in _INTERPOLATIONS:
        raise MemberError(f"{key}.interpolation = {spec.interpolation!r}: allowed {list(_INTERPOLATIONS)}")
    if spec.std is not None and any(s <= 0 for s in spec.std):
        raise MemberError(f"{key}.std = {list(spec.std)}: every value must be > 0")
    _check_name(spec, key)
    return spec


def _resolve(path: str, base_dir: Path | None) -> str:
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return str(p)


def _library(name: str):
    if importlib.util.find_spec(name) is None:
        raise MemberError(f"members from {name} need it installed: {INSTALL_HINTS[name]}")
    return importlib.import_module(name)


def _check_name(spec: MemberSpec, key: str) -> None:
    """The name exists in the library's registry (and has pretrained weights when no file is given)."""
    lib, name = spec.library, spec.name
    if lib == "timm":
        timm = _library("timm")
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
        _library("pytorchcv")
        from pytorchcv.model_provider import _models

        if name not in _models:
            raise MemberError(f"{key}: pytorchcv has no model {name!r} (pytorchcv.model_provider._models lists them)")
    elif lib == "robustbench":
        parts = name.split("/")
        if len(parts) != 3 or not all(parts):
            raise MemberError(f"{key}: give robustbench:<dataset>/<threat>/<name>, e.g. "
                              "robustbench:cifar10/Linf/Standard")
        _library("robustbench")
        from robustbench.model_zoo import model_dicts
        from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

        try:
            known = model_dicts[BenchmarkDataset(parts[0])][ThreatModel(parts[1])]
        except (ValueError, KeyError):
            raise MemberError(f"{key}: robustbench has no dataset/threat {parts[0]}/{parts[1]}") from None
        if parts[2] not in known:
            raise MemberError(f"{key}: robustbench has no {parts[0]}/{parts[1]} model {parts[2]!r}")


def parse_pair(value: Any, key: str, *, base_dir: Path | None = None) -> PairSpec:
    """A pair from its config table ``{ name, baseline, se }``."""
    if not isinstance(value, Mapping) or not {"baseline", "se"} <= set(value):
        raise MemberError(f"{key} must be a table {{ name = \"a1\", baseline = \"timm:resnet50.a1_in1k\", "
                          f"se = \"timm:seresnet50.a1_in1k\" }}; got {value!r}")
    extra = sorted(set(value) - {"name", "baseline", "se"})
    if extra:
        raise MemberError(f"{key}: unknown key(s) {extra}; allowed name, baseline, se")
    name = value.get("name", "")
    if not isinstance(name, str):
        raise MemberError(f"{key}.name = {name!r}: give a short label such as \"a1\"")
    pair = PairSpec(name, parse_member(value["baseline"], f"{key}.baseline", base_dir=base_dir),
                    parse_member(value["se"], f"{key}.se", base_dir=base_dir))
    if pair.se.library == "torchscript":
        raise MemberError(f"{key}.se is a TorchScript file: its modules have no Python class, so the probe cannot "
                          "find its SE blocks; give the SE member as source = \"<library>:<architecture>\" with "
                          "weights = \"<state dict file>\"")
    pair_geometry(pair, key)
    return pair


# ---------------------------------------------------------------------------------------------- preprocessing

@dataclass(frozen=True)
class Preprocess:
    """How a member's images are made: ``resize`` the shorter side (``None``: no resize), center-crop to
    ``size`` (``None``: the images as the data set has them), then ``(x - mean) / std`` inside the model.

    ``backend`` is ``"pil"`` (PIL's resize, as timm's eval transform) or ``"tensor"`` (torchvision's
    antialiased tensor resize, as its weights' ``transforms()``).
    """

    size: int | None
    resize: int | None
    interpolation: str
    backend: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def geometry(self) -> dict[str, Any]:
        """What the decoded images depend on (the data cache's key); mean and std stay in the model."""
        return {"size": self.size, "resize": self.resize, "interpolation": self.interpolation,
                "backend": self.backend}


@functools.lru_cache(maxsize=64)
def preprocess(spec: MemberSpec) -> Preprocess:
    """The member's preprocessing, from its pretrained configuration, with the spec's overrides on top."""
    lib, name = spec.library, spec.name
    crop_pct = None
    if lib == "timm":
        import timm
        from timm.data import resolve_data_config

        cfg = timm.get_pretrained_cfg(name)
        data = resolve_data_config(pretrained_cfg=cfg.to_dict() if cfg is not None else {})
        if data.get("crop_mode", "center") != "center":
            raise MemberError(f"{spec.source}: timm crop_mode {data['crop_mode']!r} is not supported; set input_size "
                              "and crop_pct on the member to use a center crop")
        size, crop_pct = int(data["input_size"][-1]), float(data["crop_pct"])
        base = Preprocess(size, math.floor(size / crop_pct), data["interpolation"], "pil",
                          tuple(data["mean"]), tuple(data["std"]))
    elif lib == "torchvision":
        import torchvision

        t = torchvision.models.get_model_weights(name).DEFAULT.transforms()
        base = Preprocess(int(t.crop_size[0]), int(t.resize_size[0]), t.interpolation.value, "pil",  # PIL in, PIL resize
                          tuple(t.mean), tuple(t.std))
    elif lib == "pytorchcv":
        suffix = name.rsplit("_", 1)[-1] if "_" in name else ""
        if suffix in ("cifar10", "cifar100", "svhn"):
            mean, std = _PYTORCHCV_STATS.get(suffix, (None, None))
            if mean is None and (spec.mean is None or spec.std is None):
                raise MemberError(f"{spec.source}: give mean and std of the images it was trained on "
                                  "(serobust knows pytorchcv's CIFAR-10 statistics only)")
            base = Preprocess(None, None, "bilinear", "pil", mean or (0.0,) * 3, std or (1.0,) * 3)
        else:  # pytorchcv's ImageNet models: resize 256, crop 224
            base = Preprocess(224, 256, "bilinear", "pil", _IMAGENET_MEAN, _IMAGENET_STD)
    elif lib == "robustbench":  # RobustBench models normalize inside; ImageNet ones expect Res256Crop224
        imagenet = name.split("/")[0] == "imagenet"
        base = Preprocess(224 if imagenet else None, 256 if imagenet else None, "bilinear", "pil", (0.0,) * 3,
                          (1.0,) * 3)
    else:  # torchscript: nothing known; the member table says
        base = Preprocess(None, None, "bilinear", "pil", (0.0,) * 3, (1.0,) * 3)
    size = spec.input_size or base.size
    if spec.input_size is not None or spec.crop_pct is not None:
        pct = spec.crop_pct or crop_pct or (base.size / base.resize if base.resize and base.size else 1.0)
        resize = math.floor(size / pct) if size else None
    else:
        resize = base.resize
    mean = spec.mean or base.mean
    std = spec.std or base.std
    if len(mean) != len(std):
        raise MemberError(f"{spec.source}: mean has {len(mean)} values and std {len(std)}; give one per channel")
    return dataclasses.replace(base, size=size, resize=resize, interpolation=spec.interpolation or base.interpolation,
                               mean=tuple(mean), std=tuple(std))


def pair_geometry(pair: PairSpec, key: str = "pair") -> dict[str, Any]:
    """The one image geometry of a pair's members (they attack the same images); an error if they differ."""
    a, b = preprocess(pair.baseline).geometry(), preprocess(pair.se).geometry()
    if a != b:
        raise MemberError(f"{key} ({pair.name or 'unnamed'}): the baseline's preprocessing {a} differs from the SE "
                          f"member's {b}; set input_size, crop_pct and interpolation on both members to one value")
    return a


def resize_crop(image, geometry: Mapping[str, Any]) -> torch.Tensor:
    """One PIL image -> uint8 (3, H, W) at the geometry's size: resize the shorter side, center crop.

    uint8 / 255 is exactly what ``ToTensor`` (timm) and ``convert_image_dtype`` (torchvision) give, so the
    stored images reproduce the libraries' transforms; normalization happens inside the model.
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    image = image.convert("RGB")
    mode = InterpolationMode(geometry["interpolation"])
    if geometry["backend"] == "tensor":
        image = F.pil_to_tensor(image)
    if geometry["resize"]:
        image = F.resize(image, [geometry["resize"]], interpolation=mode, antialias=True)
    if geometry["size"]:
        image = F.center_crop(image, [geometry["size"], geometry["size"]])
    return image if isinstance(image, torch.Tensor) else F.pil_to_tensor(image)


# ---------------------------------------------------------------------------------------------- weights

def _cache_dir(lib: str, weights_dir: str) -> Path:
    if weights_dir:
        return Path(weights_dir).expanduser() / lib
    if lib == "torchvision":
        return Path(torch.hub.get_dir()) / "checkpoints"
    if lib == "pytorchcv":
        return Path("~/.torch/models").expanduser()
    if lib == "robustbench":
        return Path("models").resolve()
    return Path(os.environ.get("HF_HUB_CACHE", "~/.cache/huggingface/hub")).expanduser()


def weights_file(spec: MemberSpec, weights_dir: str = "") -> tuple[Path | None, str]:
    """Where this member's weights are read from: ``(the file if present, where it must be put)``."""
    lib, name = spec.library, spec.name
    if spec.weights:
        p = Path(spec.weights)
        return (p if p.is_file() else None), f"the weights file {p}"
    if lib == "torchscript":
        p = Path(name)
        return (p if p.is_file() else None), f"the TorchScript file {p}"
    folder = _cache_dir(lib, weights_dir)
    if lib == "timm":
        import timm

        cfg = timm.get_pretrained_cfg(name)
        if weights_dir:
            for ext in (".safetensors", ".pth", ".bin"):
                if (folder / f"{name}{ext}").is_file():
                    return folder / f"{name}{ext}", ""
            return None, (f"{folder / (name + '.safetensors')} (model.safetensors of https://huggingface.co/"
                          f"{cfg.hf_hub_id})")
        if not cfg.hf_hub_id:  # weights published by URL only: torch hub's cache
            p = Path(torch.hub.get_dir()) / "checkpoints" / cfg.url.rsplit("/", 1)[-1]
            return (p if p.is_file() else None), f"{p} (from {cfg.url})"
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            hit = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(hit, str):
                return Path(hit), ""
        return None, (f"the Hugging Face cache {folder} (online: timm downloads it; offline: download "
                      f"model.safetensors of https://huggingface.co/{cfg.hf_hub_id}, put it at "
                      f"<weights_dir>/timm/{name}.safetensors and set [model] weights_dir)")
    if lib == "torchvision":
        import torchvision

        url = torchvision.models.get_model_weights(name).DEFAULT.url
        p = folder / url.rsplit("/", 1)[-1]
        return (p if p.is_file() else None), f"{p} (from {url})"
    if lib == "pytorchcv":
        from pytorchcv.models.common.model_store import get_model_name_suffix_data, imgclsmob_repo_url

        error, sha1, tag = get_model_name_suffix_data(name)
        file = f"{name}-{error}-{sha1[:8]}.pth"
        p = folder / file
        return (p if p.is_file() else None), f"{p} (unzipped from {imgclsmob_repo_url}/releases/download/{tag}/{file}.zip)"
    dataset, threat, model = name.split("/")
    p = folder / dataset / threat / f"{model}.pt"
    return (p if p.is_file() else None), f"{p} (robustbench downloads it when online)"


def missing_weights(spec: MemberSpec, weights_dir: str = "") -> str | None:
    """``None`` when the member's weights are on disk, else one line saying which file to put where."""
    found, where = weights_file(spec, weights_dir)
    return None if found is not None else f"{spec.source}: weights not found; put them at {where}"


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A weights-only state dict (``.safetensors`` or a torch file; ``{"state_dict": ...}`` wrappers unwrapped)."""
    from .io import CheckpointError

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling refused, truncated or not a weights file
        raise CheckpointError(f"{path} is not a readable weights-only state dict ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''}); save it with "
                              "torch.save(model.state_dict(), path)", where=str(path)) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors; save it with "
                              "torch.save(model.state_dict(), path)", where=str(path))
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_state(model: nn.Module, path: Path, spec: MemberSpec, num_classes: int | None = None) -> None:
    state = _read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected:
        raise MemberError(f"{path} does not fit {spec.source}: {len(missing)} missing keys (e.g. "
                          f"{missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}); give the state "
                          "dict saved from this architecture, or the architecture it was saved from")
    if shapes:
        k = shapes[0]
        raise MemberError(f"{path} does not fit {spec.source}: {k} is {tuple(state[k].shape)} in the file, "
                          f"{tuple(own[k].shape)} in the model: the file was trained with another class count "
                          f"or width{f' (the data set has {num_classes} classes)' if num_classes else ''}; evaluate "
                          "it on data with its classes, or give the architecture it was saved from")
    model.load_state_dict(state)


def _num_classes_kw(lib: str, num_classes: int | None) -> dict[str, int]:
    return {"num_classes": num_classes} if num_classes is not None and lib in ("timm", "torchvision") else {}


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
        if lib == "timm":
            import timm

            model = timm.create_model(name, pretrained=False, **_num_classes_kw(lib, num_classes))
        elif lib == "torchvision":
            import torchvision

            model = torchvision.models.get_model(name, weights=None, **_num_classes_kw(lib, num_classes))
        elif lib == "pytorchcv":
            from pytorchcv.model_provider import get_model

            model = get_model(name, pretrained=False)
        else:
            raise MemberError(f"{spec.source}: robustbench members load their own weights; remove weights")
        _load_state(model, Path(spec.weights), spec, num_classes)
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
            model.load_state_dict(weights.get_state_dict(progress=False, model_dir=str(_cache_dir(lib, weights_dir))))
            return model
        if lib == "pytorchcv":
            from pytorchcv.model_provider import get_model

            return get_model(name, pretrained=True, root=str(_cache_dir(lib, weights_dir)))
        from robustbench.utils import load_model

        dataset, threat, model_name = name.split("/")
        return load_model(model_name=model_name, model_dir=str(_cache_dir(lib, weights_dir)), dataset=dataset,
                          threat_model=threat)
    except (SerobustError, KeyboardInterrupt):
        raise
    except Exception as e:  # offline, a proxy, a truncated download: the library's own error, then the fix
        raise WeightsNotFoundError(f"{spec.source}: the pretrained weights could not be loaded ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0][:160] if str(e) else ''}); put them at {where}") from None


def check_se_member(spec: MemberSpec, key: str = "se") -> int:
    """The SE member's architecture has SE modules the probe knows: built without weights on the meta device
    (no memory, no download), so ``serobust check`` can refuse a baseline given as ``se``. Returns the count."""
    from .excitation.adapters import NoSEModuleError, find_se_modules

    lib, name = spec.library, spec.name
    if lib not in ("timm", "torchvision", "pytorchcv"):
        return -1  # robustbench and TorchScript: known only once loaded (load_member checks them)
    with torch.device("meta"):
        if lib == "timm":
            import timm

            net = timm.create_model(name, pretrained=False)
        elif lib == "torchvision":
            import torchvision

            net = torchvision.models.get_model(name, weights=None)
        else:
            from pytorchcv.model_provider import get_model

            net = get_model(name, pretrained=False)
    try:
        return len(find_se_modules(net))
    except NoSEModuleError:
        raise MemberError(f"{key} = {spec.source} has no SE module the probe knows: give an SE model (e.g. "
                          "timm:seresnet50) as se, or register its SE class with "
                          "serobust.register_se_adapter(<class>, gate=<name>)") from None


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
        from .excitation.adapters import NoSEModuleError, find_se_modules

        try:
            find_se_modules(model)
        except NoSEModuleError:
            raise MemberError(f"the SE member {spec.source} has no SE module the probe knows: give an SE model "
                              "(e.g. timm:seresnet50) as se, or register its SE class with "
                              "serobust.register_se_adapter(<class>, gate=<name>)") from None
    out = _output_width(net, model, prep)
    if num_classes is not None and out is not None and out != num_classes:
        raise MemberError(f"{spec.source} outputs {out} classes but the data set has {num_classes}: evaluate it on "
                          f"data with its {out} classes (ImageNet-1k for ImageNet models), or give a checkpoint "
                          f"trained on these {num_classes}")
    return model


def _output_width(net: nn.Module, model: nn.Module, prep: Preprocess) -> int | None:
    """The model's class count: from its classifier attribute when it has one, else one forward pass."""
    for attr in ("num_classes",):
        n = getattr(net, attr, None)
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


#: the public name of :func:`preprocess` (``serobust.member_preprocess(serobust.parse_member("timm:..."))``)
member_preprocess = preprocess
