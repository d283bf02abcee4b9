"""The input checks every statistics module shares: clear errors that name the input and the fix.

Each statistic validates what it is given before computing: a vector of finite numbers, a confidence in
(0, 1), a frame with the columns it needs and no NaN in them, 0/1 flags, one row per key, a fraction. The
checks live here, public, so the intervals, the paired tests, the robust-accuracy tables and the verdict
raise the same :class:`~serobust.errors.InputError` for the same mistake.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError

__all__ = ["as_1d_finite", "check_confidence", "require_columns", "check_no_nan", "check_flags",
           "reject_duplicates", "check_fraction"]


def as_1d_finite(values: Any, name: str) -> np.ndarray:
    """Return ``values`` as a finite float64 vector, or raise an InputError that names ``name``."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a sequence of numbers, got {type(values).__name__}") from None
    if arr.ndim != 1:
        raise InputError(
            f"{name} must be one-dimensional (one value per seed or example), got shape {arr.shape}"
        )
    if arr.size == 0:
        raise InputError(f"{name} is empty; give at least one value")
    n_nan = int(np.isnan(arr).sum())
    if n_nan:
        raise InputError(
            f"{name} contains {n_nan} NaN value(s); drop or fix them before computing statistics"
        )
    if not np.isfinite(arr).all():
        raise InputError(f"{name} contains infinite values; statistics need finite numbers")
    return arr


def check_confidence(confidence: float) -> float:
    """``confidence`` as a float strictly between 0 and 1 (the coverage of a two-sided interval)."""
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise InputError(
            f"confidence must be a number strictly between 0 and 1 (e.g. 0.95), got {confidence!r}"
        )
    return float(confidence)


def require_columns(frame: Any, columns: Iterable[str], name: str, *, check_nan: bool = True) -> None:
    """Raise an InputError listing the missing columns, an empty frame, or NaN in a required column."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    columns = list(columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(
            f"{name} is missing column(s) {missing}; it needs {columns}, got {list(map(str, frame.columns))}"
        )
    if frame.empty:
        raise InputError(f"{name} is empty (no rows); it needs at least one row with columns {columns}")
    if check_nan:
        check_no_nan(frame, columns, name)


def check_no_nan(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    """Raise an InputError naming the first of ``columns`` that holds NaN, and how many."""
    for column in columns:
        n_nan = int(frame[column].isna().sum())
        if n_nan:
            raise InputError(
                f"{name} column {column!r} has {n_nan} NaN value(s); drop those rows or fill them before "
                "computing statistics"
            )


def check_flags(frame: pd.DataFrame, column: str, name: str) -> pd.Series:
    """A bool Series from a column of booleans or 0/1 numbers (per-example correctness, passed checks)."""
    col = frame[column]
    if col.dtype == bool:
        return col
    if not col.isin([0, 1]).all():
        raise InputError(f"{name} column {column!r} must hold booleans or 0/1, found other values")
    return col.astype(bool)


def reject_duplicates(frame: pd.DataFrame, keys: list[str], name: str) -> None:
    """Raise an InputError when rows share the same ``keys`` (a pivot on them would be ambiguous)."""
    dup = frame.duplicated(keys, keep=False)
    if dup.any():
        example = frame.loc[dup, keys].head(3).to_dict("records")
        raise InputError(
            f"{name} has {int(dup.sum())} rows that share the same {keys} (e.g. {example}); each combination "
            "must appear once (aggregate or drop duplicates first)"
        )


def check_fraction(name: str, value: Any, *, optional: bool = False, example: str = "0.02") -> None:
    """Raise an InputError unless ``value`` is a fraction of accuracy in [0, 1) (or None when ``optional``)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        extra = " or None" if optional else ""
        raise InputError(
            f"{name} must be a fraction of accuracy in [0, 1){extra}, e.g. {example}, got {value!r}"
        )
