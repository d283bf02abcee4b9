"""Perturbation budgets: parsing and validation of eps in [0, 1] pixel units."""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction

__all__ = ["parse_eps", "parse_eps_list"]


def parse_eps(value: float | int | str, *, name: str = "eps", upper: float | None = 1.0) -> float:
    """Parse one budget in [0, 1] pixel units; strings such as ``"8/255"`` or ``"0.03"`` are accepted.

    Args:
        upper: the largest allowed value; 1 for Linf budgets (images live in [0, 1]), ``None`` for L2
            radii, which may exceed 1 but must be finite.

    Raises:
        ValueError: not a number, NaN, negative, infinite or above ``upper`` (an Linf eps of 8 almost
            certainly meant 8/255).
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number in [0, 1] or a fraction string like '8/255', got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            if "/" in text:
                num, den = text.split("/", 1)
                out = float(Fraction(num.strip())) / float(Fraction(den.strip()))
            else:
                out = float(text)
        except (ValueError, ZeroDivisionError):
            raise ValueError(
                f"{name} {value!r} is not a number; write a float in [0, 1] or a fraction like '8/255'"
            ) from None
    else:
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number in [0, 1] or a string like '8/255', got {value!r}") from None
    if math.isnan(out):
        raise ValueError(f"{name} is NaN; give a number in [0, 1] pixel units")
    if out < 0:
        raise ValueError(f"{name} must be >= 0, got {out}")
    if upper is not None and out > upper:
        raise ValueError(f"{name} must be <= {upper:g} in [0, 1] pixel units, got {out} (did you mean {value}/255?)")
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out}")
    return out


def parse_eps_list(values: float | str | Iterable[float | str], *, name: str = "eps") -> list[float]:
    """Parse one budget or a sequence of budgets; returns a list of floats in the given order."""
    if isinstance(values, (int, float, str)):
        return [parse_eps(values, name=name)]
    out = [parse_eps(v, name=f"{name}[{i}]") for i, v in enumerate(values)]
    if not out:
        raise ValueError(f"{name} is empty; give at least one budget")
    return out
