"""How a member's images are made (:class:`Preprocess`): its pretrained configuration's resize, crop and
interpolation, applied when the images are decoded, and its mean and std, applied inside the model."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .specs import MemberError, MemberSpec, PairSpec

__all__ = ["Preprocess", "preprocess", "member_preprocess", "pair_geometry", "resize_crop"]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: pytorchcv (imgclsmob) evaluates its CIFAR-10 models with these statistics
PYTORCHCV_STATS = {"cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))}


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
            mean, std = PYTORCHCV_STATS.get(suffix, (None, None))
            if mean is None and (spec.mean is None or spec.std is None):
                raise MemberError(f"{spec.source}: give mean and std of the images it was trained on "
                                  "(serobust knows pytorchcv's CIFAR-10 statistics only)")
            base = Preprocess(None, None, "bilinear", "pil", mean or (0.0,) * 3, std or (1.0,) * 3)
        else:  # pytorchcv's ImageNet models: resize 256, crop 224
            base = Preprocess(224, 256, "bilinear", "pil", IMAGENET_MEAN, IMAGENET_STD)
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



#: the public name of :func:`preprocess` (``serobust.hub.member_preprocess(serobust.hub.parse_member("timm:..."))``)
member_preprocess = preprocess
