"""One parsed TOML table -> its section dataclass: every key known (a close match suggested), every value of
the annotated type (the small subset of annotations the sections use), then the section's own checks."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from fractions import Fraction
from typing import Any

from .rules import ConfigError

__all__ = ["coerce", "number", "read_section"]


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (the small subset the sections use)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        for arg in args:
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key} = {value!r}: expected {' or '.join(_type_name(a) for a in args)}")
    if origin is tuple:
        (inner, _ellipsis) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} = {value!r}: expected a list of {_type_name(inner)}")
        return tuple(coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} = {value!r}: expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} = {value!r}: expected an integer")
        return value
    if tp is float:
        return number(value, key)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} = {value!r}: expected a string")
        return value
    if tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} = {value!r}: expected a table")
        return dict(value)
    raise ConfigError(f"{key}: unsupported type {tp}")  # a serobust bug


def number(value: Any, key: str) -> float:
    """A finite number; strings such as ``"8/255"`` or ``"0.1"`` are read as numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{key} = {value!r}: expected a number")
    try:
        out = float(Fraction(value.strip())) if isinstance(value, str) and "/" in value else float(value)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{key} = {value!r}: expected a number (fractions like '8/255' allowed)") from None
    if not math.isfinite(out):
        raise ConfigError(f"{key} = {value!r}: expected a finite number")
    return out


def read_section(cls: type, raw: Any, section: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{section}] must be a table, got {raw!r}")
    if section == "train" and "seed" in raw:
        raise ConfigError("train.seed is not read: each seed of study.seeds trains its own pair (its tasks set "
                          "the training seed); remove train.seed and list the seeds in [study] seeds = [0, 1, 2]")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        if key not in fields:
            close = difflib.get_close_matches(key, sorted(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown key {section}.{key}{hint}; allowed keys in [{section}]: {', '.join(sorted(fields))}")
        kwargs[key] = coerce(value, hints[key], f"{section}.{key}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(f"[{section}] {e}") from None
