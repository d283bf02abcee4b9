"""Budgets: eps values read in each attack's norm.

Linf eps are in [0, 1] pixel units (strings like ``"8/255"`` work). L2 eps (``pgd_l2``, ``cw``, and
``apgd_ce``/``square``/``autoattack`` with ``norm="L2"``) are radii in the same pixel units; they may
exceed 1 but not the diameter of the image cube, ``sqrt(C * H * W)``, beyond which the ball holds the
whole cube and the budget is surely a mistake.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..eps import parse_eps
from .base import AttackSpec

__all__ = ["parse_eps_for", "eps_values", "resolve_eps", "check_l2_radius"]


def parse_eps_for(spec: AttackSpec, raw: Any, *, name: str) -> float:
    """One eps for ``spec``: in [0, 1] for Linf attacks, any radius >= 0 for L2 attacks."""
    if isinstance(raw, torch.Tensor):
        raw = raw.item()
    if spec.norm == "Linf":
        return parse_eps(raw, name=name)
    return parse_eps(raw, name=name, upper=None)


def eps_values(eps: Any) -> list[Any]:
    """One eps or many, as a non-empty list (values not parsed yet)."""
    if isinstance(eps, (str, numbers.Real)) or (isinstance(eps, torch.Tensor) and eps.ndim == 0):
        return [eps.item() if isinstance(eps, torch.Tensor) else eps]
    try:
        values = list(eps)
    except TypeError:
        raise TypeError(f"eps must be a number, a string like '8/255' or a list of them, got {eps!r}") from None
    if not values:
        raise ValueError("eps is empty; give at least one budget, e.g. eps=[0, 8/255]")
    return [v.item() if isinstance(v, torch.Tensor) else v for v in values]


def resolve_eps(specs: Sequence[AttackSpec], eps: Any) -> tuple[list[float], dict[str, list[float]]]:
    """Parse every eps for every spec (in its norm); returns the first spec's list and the list per label."""
    raw = eps_values(eps)
    per_label: dict[str, list[float]] = {}
    for spec in specs:
        values = [parse_eps_for(spec, v, name=f"eps[{i}] for {spec.label} ({spec.norm})") for i, v in enumerate(raw)]
        if len(set(values)) != len(values):
            raise ValueError(f"eps contains duplicates: {values}; give each budget once")
        per_label[spec.label] = values
    first = next(iter(per_label.values()))
    return first, per_label


def check_l2_radius(specs: Sequence[AttackSpec], eps_by_label: Mapping[str, list[float]], dim: int) -> None:
    """Raise ValueError for an L2 radius beyond the diameter of the image cube, ``sqrt(dim)``."""
    limit = math.sqrt(dim)
    for spec in specs:
        if spec.norm == "L2":
            for e in eps_by_label[spec.label]:
                if e > limit:
                    raise ValueError(f"L2 eps {e:g} for {spec.label} exceeds the diameter of the image cube "
                                     f"sqrt(C*H*W) = {limit:.4g}; an L2 radius is in [0, 1] pixel units")
