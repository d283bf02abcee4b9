"""Option rules: one validator per attack option, the checks every family's options share.

A rule is ``rule(option_key, value) -> value``: it returns the checked (and normalized) value, or raises
TypeError (wrong type) or ValueError (out of range) with a message that names the option and what it
accepts. An :class:`~serobust.attacks.base.Attack` declares one rule per option in ``rules``;
:func:`~serobust.attacks.base.register_attack` checks every default (and every ``cheap`` option) with it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..eps import parse_eps

__all__ = ["Rule", "int_rule", "bool_rule", "float_rule", "finite_rule", "alpha_rule", "unit_rule", "choice_rule",
           "optional"]

#: ``rule(option_key, value) -> value``: the checked (and normalized) value, or TypeError/ValueError.
Rule = Callable[[str, Any], Any]


def int_rule(minimum: int) -> Rule:
    """An int (not a bool) >= ``minimum``."""

    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"option {key!r} must be an int >= {minimum}, got {value!r}")
        if value < minimum:
            raise ValueError(f"option {key!r} must be >= {minimum}, got {value}")
        return int(value)

    return check


def bool_rule(key: str, value: Any) -> bool:
    """True or False (numpy bools too)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"option {key!r} must be True or False, got {value!r}")
    return bool(value)


def float_rule(minimum: float = 0.0, *, strict: bool = True) -> Rule:
    """A finite real number > ``minimum`` (``strict``) or >= ``minimum``; ints are converted to float."""
    relation = ">" if strict else ">="

    def check(key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"option {key!r} must be a number {relation} {minimum:g}, got {value!r}")
        value = float(value)
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise ValueError(f"option {key!r} must be a finite number {relation} {minimum:g}, got {value}")
        return value

    return check


def finite_rule(key: str, value: Any) -> float:
    """Any finite real number (a loss weight whose sign means something); ints are converted to float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"option {key!r} must be a finite number, got {value!r}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"option {key!r} must be a finite number, got {value}")
    return value


_positive = float_rule(0.0, strict=True)


def alpha_rule(key: str, value: Any) -> float | None:
    """A step size in pixel units (``"2/255"`` accepted), > 0; None means the family's default."""
    if value is None:
        return None
    if isinstance(value, str):
        return _positive(key, parse_eps(value, name=f"option {key!r}"))
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"option {key!r} must be a positive float (pixel units) or None for the default, got {value!r}")
    return _positive(key, value)


def unit_rule(key: str, value: Any) -> float:
    """A float in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"option {key!r} must be a float in (0, 1], got {value!r}")
    if not 0 < float(value) <= 1:
        raise ValueError(f"option {key!r} must be in (0, 1], got {value}")
    return float(value)


def choice_rule(choices: Iterable[str]) -> Rule:
    """One of ``choices``."""
    choices = tuple(choices)

    def check(key: str, value: Any) -> str:
        if value not in choices:
            raise ValueError(f"option {key!r} must be one of {list(choices)}, got {value!r}")
        return str(value)

    return check


def optional(rule: Rule) -> Rule:
    """``rule``, or None."""
    return lambda key, value: None if value is None else rule(key, value)
