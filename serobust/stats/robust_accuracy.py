"""Robust accuracy across seeds at chosen budgets: which budgets are informative, and the headline table.

Robust accuracy carries information about a difference between a baseline and its SE twin only where
the baseline is neither at the floor (about 0%: both models broken, a difference of 0 by construction)
nor at its clean accuracy (the attack does nothing). :func:`informative_budgets` names those budgets
from the PAIR's mean across seeds (the mean of the two twins cannot favour either; the baseline alone
would drop exactly the budgets where only the SE twin keeps accuracy); the verdict
(:mod:`serobust.stats.verdict`) tests robustness on them only, by :func:`robustness_test`. On CIFAR-10,
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

from ..eps import parse_eps
from ..errors import InputError
from ..names import BASELINE
from .checks import check_confidence, check_fraction, check_no_nan, reject_duplicates, require_columns
from .decisions import claim_p_values, decide
from .differences import paired_difference
from .intervals import crossed_mean_ci
from .per_image import per_image_arrays
from .power import minimum_detectable_effect

__all__ = ["FLOOR", "CEILING_GAP", "eps_label", "attack_rows", "pick_se_model", "clean_by_seed", "pair_clean",
           "budget_reasons", "paired_cells", "informative_budgets", "informative_mask", "robustness_test", "headline_table"]

FLOOR = 0.02
"""A budget where the pair's mean robust accuracy is at most this (2%) is at the floor: not tested."""

CEILING_GAP = 0.02
"""A budget where the pair keeps its mean clean accuracy to within this (2 points) is at the ceiling."""


def eps_label(eps: float, *, per_255: bool = False) -> str:
    """A budget as text: ``k/255`` when ``per_255`` and eps·255 is within 1e-9 of an integer, else ``%g``."""
    value = float(eps)
    k = round(value * 255)
    if per_255 and value != 0 and abs(value * 255 - k) <= 1e-9:
        return f"{k}/255"
    return f"{value:g}"


# ----------------------------------------------------------------------------------------------------
# robust-accuracy inputs (shared with serobust.stats.criteria)


def attack_rows(table: pd.DataFrame, attack: str, name: str) -> pd.DataFrame:
    """The rows of one attack, checked: no NaN, one row per (seed, model, eps)."""
    require_columns(table, ["seed", "model", "attack", "eps", "robust_acc"], name, check_nan=False)
    check_no_nan(table, ["seed", "model", "attack", "eps"], name)
    rows = table[table["attack"] == attack]
    if rows.empty:
        attacks = sorted(map(str, pd.unique(table["attack"])))
        raise InputError(f"{name} has no rows for attack {attack!r}; attacks present: {attacks}")
    check_no_nan(rows, ["robust_acc"], name)
    reject_duplicates(rows, ["seed", "model", "eps"], name)
    return rows


def pick_se_model(models: list[str], baseline: str, se_model: str | None) -> str:
    """The twin to judge: ``se_model``, or the only non-baseline model; an InputError names the fix."""
    if baseline not in models:
        raise InputError(f"robust_table has no rows with model == {baseline!r}; models present: {models}")
    others = [m for m in models if m != baseline]
    if se_model is None:
        if len(others) != 1:
            raise InputError(
                f"robust_table holds several SE models {others}; pass se_model= to choose the one to judge"
            )
        return others[0]
    if se_model not in others:
        raise InputError(f"robust_table has no rows with model == {se_model!r}; models present: {models}")
    return se_model


def clean_by_seed(rows: pd.DataFrame, model: str) -> pd.Series | None:
    """Clean accuracy per seed: robust accuracy at eps = 0, else the ``clean_acc`` column; None if neither."""
    mine = rows[rows["model"] == model]
    at_zero = mine[mine["eps"] == 0]
    if not at_zero.empty:
        return at_zero.groupby("seed")["robust_acc"].mean()
    if "clean_acc" in mine.columns and mine["clean_acc"].notna().any():
        return mine.groupby("seed")["clean_acc"].mean()
    return None


def pair_clean(rows: pd.DataFrame, baseline: str, se_model: str) -> float:
    """The pair's mean clean accuracy (each twin's mean over seeds, then their mean); NaN when either lacks one."""
    cleans = [clean_by_seed(rows, m) for m in (baseline, se_model)]
    return math.nan if any(c is None for c in cleans) else float((cleans[0].mean() + cleans[1].mean()) / 2)


def budget_reasons(pair: pd.DataFrame, clean: float, mask: np.ndarray, *, baseline: str, se_model: str,
                    floor: float | None, gap: float | None) -> list[str | None]:
    """Per budget (``pair``: mean accuracy per eps, columns ``[baseline, se_model]``): None when ``mask`` keeps it,
    else why not (at the floor or at the ceiling), with the numbers."""
    out: list[str | None] = []
    for (_eps, row), keep in zip(pair.iterrows(), mask):
        if keep:
            out.append(None)
            continue
        acc = (row[baseline] + row[se_model]) / 2
        both = f"{baseline} {row[baseline]:.1%}, {se_model} {row[se_model]:.1%}"
        if floor is not None and acc <= floor:
            out.append(f"at the floor: the pair keeps {acc:.1%} on average ({both}; floor {floor:.1%})")
        else:
            out.append(f"at the ceiling: the pair keeps {acc:.1%} on average ({both}), within {gap:.1%} of its "
                       f"clean accuracy {clean:.1%}")
    return out


def paired_cells(rows: pd.DataFrame, baseline: str, model: str, *, attack: str) -> pd.DataFrame:
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
    se_model: str | None = None,
    floor: float | None = FLOOR,
    ceiling_gap: float | None = CEILING_GAP,
) -> pd.DataFrame:
    """Which budgets can show a robustness difference, decided on the PAIR's mean accuracy.

    A budget eps > 0 is informative unless the mean of the two twins' robust accuracies (each averaged
    across seeds) under ``attack`` is at the floor (``<= floor``) or within ``ceiling_gap`` of the pair's
    mean clean accuracy (from the eps = 0 rows, else a ``clean_acc`` column; without either the ceiling is
    not applied). ``None`` switches a rule off. The pair's mean cannot favour either twin
    (:func:`informative_mask`); a budget where the baseline is at 0% but the SE twin keeps 50% is tested.

    Args:
        se_model: the twin; None picks the only non-baseline model in ``robust_table``.

    Returns:
        One row per eps > 0 (ascending): ``eps``, ``baseline_robust_acc``, ``se_robust_acc``,
        ``pair_robust_acc``, ``pair_clean_acc`` (NaN when unknown), ``informative`` (bool), ``reason`` (why a
        budget is dropped; None when informative).

    Raises:
        ValueError: missing columns, NaN, unknown attack, no rows at eps > 0 for either twin, several SE
            models without ``se_model``, bad floor/ceiling_gap.
    """
    check_fraction("floor", floor, optional=True)
    check_fraction("ceiling_gap", ceiling_gap, optional=True)
    rows = attack_rows(robust_table, attack, "robust_table")
    se_model = pick_se_model(list(map(str, pd.unique(rows["model"]))), baseline, se_model)
    means = []
    for m in (baseline, se_model):
        mine = rows[(rows["model"] == m) & (rows["eps"] > 0)]
        if mine.empty:
            raise InputError(f"robust_table has no {attack!r} rows at eps > 0 for {m!r}")
        means.append(mine.groupby("eps")["robust_acc"].mean())
    pair = pd.concat(means, axis=1, keys=[baseline, se_model], join="inner").sort_index()
    clean = pair_clean(rows, baseline, se_model)
    acc = pair.mean(axis=1).to_numpy()
    keep = informative_mask(acc, None if math.isnan(clean) else clean, floor=floor, ceiling_gap=ceiling_gap)
    reasons = budget_reasons(pair, clean, keep, baseline=baseline, se_model=se_model, floor=floor, gap=ceiling_gap)
    frame = pd.DataFrame({"eps": pair.index.astype(float), "baseline_robust_acc": pair[baseline].to_numpy(),
                          "se_robust_acc": pair[se_model].to_numpy(), "pair_robust_acc": acc, "pair_clean_acc": clean,
                          "informative": keep})
    frame["reason"] = pd.Series(reasons, index=frame.index, dtype=object)  # None stays None
    return frame


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
    per_example: pd.DataFrame | None = None,
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
        per_example: per-image correctness (as :func:`serobust.stats.verdict.verdict` takes it); with it the
            difference's interval covers seeds and test images, as the verdict's does.

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
    confidence = check_confidence(confidence)
    rows = attack_rows(per_seed, attack, "per_seed")
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
        clean = clean_by_seed(rows, model)
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
                seeds = sorted(set(cells.index.get_level_values("seed")))
                base, se, _ = per_image_arrays(per_example, attack=attack, baseline=baseline, se_model=model,
                                               seeds=seeds, eps=chosen)
                if base.size:  # the verdict's interval over seeds and images
                    res = robustness_test(base, se, informative=np.ones(len(chosen), dtype=bool),
                                          confidence=confidence)
                    diff = {"mean_diff": float(res["mean"]), "ci_low": float(res["ci_low"]),
                            "ci_high": float(res["ci_high"])}
        row.update(diff=diff["mean_diff"], diff_ci_low=diff["ci_low"], diff_ci_high=diff["ci_high"])
        out.append(row)
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------------------------------
# the robustness criterion on arrays (the verdict's and the calibration benchmark's code)


def informative_mask(
    pair_acc: Any, pair_clean: Any = None, *, floor: float | None = FLOOR, ceiling_gap: float | None = CEILING_GAP
) -> np.ndarray:
    """Which budgets are informative, from the PAIR's mean robust accuracy; arrays of shape ``(..., n_eps)``.

    A budget is dropped when the mean of the two twins' robust accuracies is at the floor (``<= floor``) or
    within ``ceiling_gap`` of the pair's mean clean accuracy ``pair_clean`` (shape ``(...)``; None or NaN:
    no ceiling). The pair's mean cannot favour either twin: under no effect, the sum and the difference of
    two equally variable accuracies are uncorrelated, so choosing on the sum does not bias the difference
    (choosing on the baseline alone would drop exactly the budgets where only the SE twin keeps accuracy).
    """
    acc = np.asarray(pair_acc, dtype=np.float64)
    keep = np.ones(acc.shape, dtype=bool)
    if floor is not None:
        keep &= acc > floor
    if ceiling_gap is not None and pair_clean is not None:
        clean = np.asarray(pair_clean, dtype=np.float64)[..., None]
        keep &= ~(acc >= clean - ceiling_gap)  # NaN clean: comparison False, budget kept
    return keep


def robustness_test(
    base: Any,
    se: Any,
    *,
    pair_clean: Any = None,
    informative: Any = None,
    floor: float | None = FLOOR,
    ceiling_gap: float | None = CEILING_GAP,
    min_effect: float = 0.01,
    confidence: float = 0.95,
    power: float = 0.8,
) -> dict[str, np.ndarray]:
    """The robustness criterion from per-image correctness: budgets, interval, outcome, power; vectorised.

    Args:
        base, se: correctness (0/1) of the baseline and its SE twin, shape ``(..., n_seeds, n_images,
            n_eps)``, the same images in the same order for both and for every seed.
        pair_clean: the pair's mean clean accuracy, shape ``(...)`` (None: no ceiling rule).
        informative: a bool mask ``(..., n_eps)`` to use instead of :func:`informative_mask`.
        floor, ceiling_gap: the informative-budget rules.
        min_effect: the margin of practical size (fraction); "supported" needs the interval above it.
        confidence, power: interval coverage and the power of the stated minimum detectable effect.

    Returns:
        dict of arrays over the leading dims: ``informative`` ``(..., n_eps)``, ``n_budgets``, ``outcome``
        (:func:`serobust.stats.decisions.decide`; "inconclusive" without an informative budget), and the
        :func:`serobust.stats.intervals.crossed_mean_ci` fields of the per-image difference averaged over the
        informative budgets (``mean``, ``se``, ``df``, ``ci_low``, ``ci_high``, variance components), plus
        ``mde`` (:func:`serobust.stats.power.minimum_detectable_effect`) and the claim p values ``p_supported``,
        ``p_not_supported``, ``p_opposite`` (:func:`serobust.stats.decisions.claim_p_values`).
    """
    base = np.asarray(base, dtype=np.float64)
    se = np.asarray(se, dtype=np.float64)
    if base.shape != se.shape or base.ndim < 3:
        raise InputError(
            f"base and se must have the same shape (..., n_seeds, n_images, n_eps), got {base.shape} and {se.shape}"
        )
    if informative is None:
        pair_acc = (base.mean(axis=(-3, -2)) + se.mean(axis=(-3, -2))) / 2.0  # (..., n_eps)
        informative = informative_mask(pair_acc, pair_clean, floor=floor, ceiling_gap=ceiling_gap)
    informative = np.broadcast_to(np.asarray(informative, dtype=bool), base.shape[:-3] + base.shape[-1:])
    k = informative.sum(axis=-1)  # (...)
    weights = informative / np.maximum(k, 1)[..., None]  # (..., n_eps), 0 where not informative
    d = ((se - base) * weights[..., None, None, :]).sum(axis=-1)  # (..., n_seeds, n_images)
    ci = crossed_mean_ci(d, confidence=confidence)
    none = k == 0
    for key in ("mean", "se", "df", "ci_low", "ci_high"):
        ci[key] = np.where(none, np.nan, ci[key])
    outcome = decide(ci["ci_low"], ci["ci_high"], margin=min_effect)
    alpha = 1.0 - confidence
    mde = minimum_detectable_effect(ci["se"], ci["df"], alpha=alpha, power=power, margin=min_effect)
    p = claim_p_values(ci["mean"], ci["se"], ci["df"], margin=min_effect)
    return {**ci, "informative": informative, "n_budgets": k, "outcome": outcome, "mde": mde,
            "p_supported": p["supported"], "p_not_supported": p["not_supported"], "p_opposite": p["opposite"]}
