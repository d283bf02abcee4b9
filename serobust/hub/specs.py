"""What names a given member or pair (:class:`MemberSpec`, :class:`PairSpec`), the sources a member can come
from (:data:`SOURCES`), and the two errors of given pairs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import SerobustError

__all__ = ["SOURCES", "INTERPOLATIONS", "MEMBER_KEYS", "MemberError", "WeightsNotFoundError", "MemberSpec", "PairSpec"]

SOURCES = ("timm", "torchvision", "pytorchcv", "robustbench", "torchscript")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
MEMBER_KEYS = ("source", "weights", "mean", "std", "input_size", "crop_pct", "interpolation")


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
