"""Robust accuracy across seeds at chosen budgets: which budgets are informative, and the headline table.

Robust accuracy carries information about a difference between a baseline and its SE twin only where
the baseline is neither at the floor (about 0%: both models broken, a difference of 0 by construction)
nor at its clean accuracy (the attack does nothing). :func:`informative_budgets` names those budgets
from the *baseline's* mean across seeds (choosing on the SE twin's numbers would select on the
outcome); the verdict (:mod:`serobust.verdicts`) tests robustness on them only. On CIFAR-10,
standard-trained models reach 0% from 4/255 on, so most of a sweep's budgets carry no information.

:func:`headline_table` is the RobustBench-style summary of a study (clean accuracy and robust accuracy
at two or three named budgets per member) with the seed-paired difference the verdict uses.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from .eps import parse_eps
from .errors import InputError
from .names import BASELINE
from .stats import _check_confidence, _check_no_nan, _reject_duplicates, _require_columns, paired_difference

__all__ = ["FLOOR", "CEILING_GAP", "eps_label", "informative_budgets", "headline_table"]

FLOOR = 0.02
"""A budget where the baseline's mean robust accuracy is at most this (2%) is at the floor: not tested."""

CEILING_GAP = 0.02
"""A budget where the baseline keeps its clean accuracy to within this (2 points) is at the ceiling."""


def eps_label(eps: float, *, per_255: bool = False) -> str:
    """A budget as text: ``k/255`` when ``per_255`` and eps·255 is within 1e-9 of an integer, else ``%g``."""
    value = float(eps)
    k = round(value * 255)
    if per_255 and value != 0 and abs(value * 255 - k) <= 1e-9:
        return f"{k}/255"
    return f"{value:g}"


def _check_fraction(name: str, value: Any, *, optional: bool = False, example: str = "0.02") -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        extra = " or None" if optional else ""
        raise InputError(
            f"{name} must be a fraction of accuracy in [0, 1){extra}, e.g. {example}, got {value!r}"
        )


# ----------------------------------------------------------------------------------------------------
# robust-accuracy inputs (shared with serobust.verdicts)


def _attack_rows(table: pd.DataFrame, attack: str, name: str) -> pd.DataFrame:
    """The rows of one attack, checked: no NaN, one row per (seed, model, eps)."""
    _require_columns(table, ["seed", "model", "attack", "eps", "robust_acc"], name, check_nan=False)
    _check_no_nan(table, ["seed", "model", "attack", "eps"], name)
    rows = table[table["attack"] == attack]
    if rows.empty:
        attacks = sorted(map(str, pd.unique(table["attack"])))
        raise InputError(f"{name} has no rows for attack {attack!r}; attacks present: {attacks}")
    _check_no_nan(rows, ["robust_acc"], name)
    _reject_duplicates(rows, ["seed", "model", "eps"], name)
    return rows


def _clean_by_seed(rows: pd.DataFrame, model: str) -> pd.Series | None:
    """Clean accuracy per seed: robust accuracy at eps = 0, else the ``clean_acc`` column; None if neither."""
    mine = rows[rows["model"] == model]
    at_zero = mine[mine["eps"] == 0]
    if not at_zero.empty:
        return at_zero.groupby("seed")["robust_acc"].mean()
    if "clean_acc" in mine.columns and mine["clean_acc"].notna().any():
        return mine.groupby("seed")["clean_acc"].mean()
    return None


def _paired_cells(rows: pd.DataFrame, baseline: str, model: str, *, attack: str) -> pd.DataFrame:
    """(seed, eps > 0) cells scored for both models, columns ``[baseline, model]``; lone cells warn."""
    wide = rows[rows["eps"] > 0].pivot(index=["seed", "eps"], columns="model", values="robust_acc")
    for m in (baseline, model):
        if m not in wide.columns:
            raise InputError(f"robust_table has no {attack!r} rows at eps > 0 for model {m!r}")
    pair = wide[[baseline, model]]
    complete = pair.dropna()
    if len(complete) < len(pair):
        warnings.warn(
            f"{len(pair) - len(complete)} (seed, eps) cell(s) lack {baseline!r} or {model!r} and are left out",
            stacklevel=4,
        )
    return complete


def _budget_difference(
    cells: pd.DataFrame, baseline: str, model: str, budgets: Iterable[float], **ci: Any
) -> dict[str, Any]:
    """:func:`paired_difference` of the per-seed mean over ``budgets`` (model minus baseline)."""
    chosen = cells[cells.index.get_level_values("eps").isin(list(budgets))]
    per_seed = chosen.groupby(level="seed").mean()  # average over eps within seed first
    return paired_difference(per_seed[baseline].to_numpy(), per_seed[model].to_numpy(), **ci)


def informative_budgets(
    robust_table: pd.DataFrame,
    *,
    attack: str,
    baseline: str = BASELINE,
    floor: float | None = FLOOR,
    ceiling_gap: float | None = CEILING_GAP,
) -> pd.DataFrame:
    """Which budgets can show a robustness difference, decided on the baseline's numbers only.

    A budget eps > 0 is informative unless the baseline's mean robust accuracy across seeds under
    ``attack`` is at the floor (``<= floor``) or at its clean accuracy (``>= clean - ceiling_gap``, the
    clean accuracy from the eps = 0 rows, else a ``clean_acc`` column; without either the ceiling is
    not applied). ``None`` switches a rule off.

    Returns:
        One row per eps > 0 (ascending): ``eps``, ``baseline_robust_acc``, ``baseline_clean_acc`` (NaN when
        unknown), ``informative`` (bool), ``reason`` (why a budget is dropped; None when informative).

    Raises:
        ValueError: missing columns, NaN, unknown attack, no baseline rows at eps > 0, bad floor/ceiling_gap.
    """
    _check_fraction("floor", floor, optional=True)
    _check_fraction("ceiling_gap", ceiling_gap, optional=True)
    rows = _attack_rows(robust_table, attack, "robust_table")
    base = rows[(rows["model"] == baseline) & (rows["eps"] > 0)]
    if base.empty:
        raise InputError(f"robust_table has no {attack!r} rows at eps > 0 for the baseline {baseline!r}")
    clean_by_seed = _clean_by_seed(rows, baseline)
    clean = math.nan if clean_by_seed is None else float(clean_by_seed.mean())
    out = []
    for eps, acc in base.groupby("eps", sort=True)["robust_acc"].mean().items():
        reason = None
        if floor is not None and acc <= floor:
            reason = f"at the floor: {baseline} keeps {acc:.1%} (<= floor {floor:.1%})"
        elif ceiling_gap is not None and not math.isnan(clean) and acc >= clean - ceiling_gap:
            reason = (
                f"at the ceiling: {baseline} keeps {acc:.1%}, within {ceiling_gap:.1%} of its clean accuracy "
                f"{clean:.1%}"
            )
        out.append({"eps": float(eps), "baseline_robust_acc": float(acc), "reason": reason})
    frame = pd.DataFrame(out).assign(baseline_clean_acc=clean)
    frame["informative"] = [r["reason"] is None for r in out]
    frame["reason"] = pd.Series(
        [r["reason"] for r in out], index=frame.index, dtype=object
    )  # None stays None
    return frame[["eps", "baseline_robust_acc", "baseline_clean_acc", "informative", "reason"]]


# ----------------------------------------------------------------------------------------------------
# the headline table


def _match_budgets(rows: pd.DataFrame, budgets: Any, attack: str) -> list[float]:
    """The table's eps values for the requested budgets (matched within 1e-9; ``"8/255"`` strings allowed)."""
    if isinstance(budgets, (str, int, float)):
        budgets = [budgets]
    present = np.array(sorted(set(rows.loc[rows["eps"] > 0, "eps"].astype(float))))
    out = []
    for i, value in enumerate(budgets):
        eps = parse_eps(value, name=f"budgets[{i}]")
        if eps == 0:
            raise InputError("budgets must be attack budgets > 0; the clean accuracy has its own column")
        hit = np.flatnonzero(np.abs(present - eps) <= 1e-9)
        if hit.size == 0:
            raise InputError(
                f"budgets[{i}] = {value!r} has no {attack!r} rows; budgets present: {[f'{e:g}' for e in present]}"
            )
        out.append(float(present[hit[0]]))
    if not out:
        raise InputError("budgets is empty; name the two or three budgets the table reports")
    if len(set(out)) < len(out):
        raise InputError(f"budgets {list(budgets)} name the same budget twice")
    return out


def headline_table(
    per_seed: pd.DataFrame,
    *,
    attack: str,
    budgets: Any,
    baseline: str = BASELINE,
    confidence: float = 0.95,
    per_255: bool = False,
    n_resamples: int = 10_000,
) -> pd.DataFrame:
    """RobustBench-style summary: one row per member, clean and robust accuracy at a few named budgets.

    Args:
        per_seed: long frame with ``seed``, ``model``, ``attack``, ``eps``, ``robust_acc`` (fractions); the
            clean accuracy comes from the eps = 0 rows, else from a ``clean_acc`` column.
        attack: the attack whose robust accuracy is reported.
        budgets: two or three budgets (floats or strings like ``"8/255"``), each present for ``attack``.
        baseline: the baseline's ``model`` value (first row).
        confidence: coverage of the difference's interval.
        per_255: label budgets ``k/255`` where they are (``robust_acc@8/255``), else ``%g``.
        n_resamples: bootstrap resamples (the interval is the bootstrap one only from 20 seeds on).

    Returns:
        One row per member (baseline first, then the others in order of appearance): ``model``,
        ``n_seeds`` (seeds with every budget and the clean accuracy), ``clean_acc``,
        ``robust_acc@<eps>`` per budget (means over those seeds), and ``diff``, ``diff_ci_low``,
        ``diff_ci_high``: the seed-paired member-minus-baseline difference of robust accuracy averaged over
        ``budgets`` within each seed, with the verdict's interval (NaN on the baseline row). With
        ``budgets`` equal to a verdict's ``budgets_tested``, ``diff`` is that verdict's effect.

    Raises:
        ValueError: missing columns, NaN, unknown attack or budget, no baseline, no clean accuracy.
    """
    confidence = _check_confidence(confidence)
    rows = _attack_rows(per_seed, attack, "per_seed")
    chosen = _match_budgets(rows, budgets, attack)
    models = list(map(str, pd.unique(rows["model"])))
    if baseline not in models:
        raise InputError(
            f"per_seed has no {attack!r} rows with model == {baseline!r}; models present: {models}"
        )
    wide = rows[rows["eps"] > 0].pivot(index=["seed", "eps"], columns="model", values="robust_acc")
    wide = wide.reindex(columns=models)  # a member with no row at eps > 0 gets NaN, hence n_seeds = 0
    out = []
    for model in [baseline, *(m for m in models if m != baseline)]:
        clean = _clean_by_seed(rows, model)
        if clean is None:
            raise InputError(
                f"per_seed has no clean accuracy for {model!r}: add its eps = 0 rows or a clean_acc column"
            )
        acc = wide[model].unstack("eps").reindex(columns=chosen)  # (seeds, budgets)
        complete = acc.join(clean.rename("clean_acc")).dropna()  # seeds with every budget and clean accuracy
        row = {"model": model, "n_seeds": len(complete), "clean_acc": complete["clean_acc"].mean()}
        row.update({f"robust_acc@{eps_label(e, per_255=per_255)}": complete[e].mean() for e in chosen})
        diff = {"mean_diff": math.nan, "ci_low": math.nan, "ci_high": math.nan}
        if model != baseline:
            cells = wide[[baseline, model]].dropna()
            cells = cells[cells.index.get_level_values("eps").isin(chosen)]
            if not cells.empty:
                diff = _budget_difference(
                    cells, baseline, model, chosen, confidence=confidence, n_resamples=n_resamples
                )
        row.update(diff=diff["mean_diff"], diff_ci_low=diff["ci_low"], diff_ci_high=diff["ci_high"])
        out.append(row)
    return pd.DataFrame(out)
