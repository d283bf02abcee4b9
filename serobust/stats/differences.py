"""Paired comparisons across seeds: SE minus baseline, per seed, with the verdict's interval and tests.

A training seed gives one baseline and one SE twin trained with it, so the two models' seed-level values
are *paired*: :func:`paired_difference` compares them through their per-seed differences (t and bootstrap
intervals, the paired t test, Wilcoxon, Cohen's d_z), and :func:`robust_accuracy_table` does it for every
SE model against the baseline at every (attack, eps), with the crossed seeds x images interval where
per-image correctness is given (:func:`serobust.stats.intervals.crossed_mean_ci`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..errors import InputError
from ..names import BASELINE
from .checks import as_1d_finite, reject_duplicates, require_columns
from .intervals import crossed_mean_ci, mean_ci
from .per_image import per_image_arrays

__all__ = ["MIN_N_WILCOXON", "paired_difference", "robust_accuracy_table"]

MIN_N_WILCOXON = 6
"""Fewest non-zero differences for which a Wilcoxon p value is reported.

With n non-zero differences the smallest two-sided exact signed-rank p value is 2 / 2**n: 0.25 at n = 3,
0.125 at n = 4, 0.0625 at n = 5, so below 6 the test cannot reject at 0.05 whatever the data, and a
p value would read as evidence of no effect when it is only a lack of seeds."""


def paired_difference(
    a: Any,
    b: Any,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int | None = 0,
    method: str = "percentile",
) -> dict[str, Any]:
    """Paired comparison of two models across seeds: differences ``b - a`` (SE minus baseline).

    ``a[i]`` and ``b[i]`` must come from the same seed (the baseline and the SE twin trained with it).

    Which interval the verdict uses: ``ci_low``/``ci_high`` are the t interval of the mean difference when
    fewer than :data:`~serobust.stats.intervals.SMALL_N_T_CI` seeds are paired (bootstrap percentile
    intervals from 3 to 5 points are far too narrow, see :mod:`serobust.stats.intervals`), and the
    bootstrap interval (``method``) from there on.

    Args:
        a: baseline values, one per seed.
        b: SE values, same seeds in the same order.
        confidence: coverage of both intervals.
        n_resamples, seed, method: bootstrap settings, as in :func:`serobust.stats.intervals.bootstrap_ci`.

    Returns:
        dict with ``n``; ``mean_a``, ``mean_b``; ``mean_diff`` and ``sd_diff`` of ``b - a``; ``t_ci_low``,
        ``t_ci_high`` (``mean ± t_{n-1} · sd / sqrt(n)``); ``boot_ci_low``, ``boot_ci_high``; ``ci_low``,
        ``ci_high``, ``ci_method`` (the verdict's interval); ``t_stat``, ``t_p`` (``scipy.stats.ttest_rel``,
        two-sided); ``wilcoxon_p`` (two-sided signed-rank test, NaN with fewer than :data:`MIN_N_WILCOXON`
        non-zero differences, because it could not reach 0.05 there; 1.0 when every difference is 0);
        ``d_z`` (Cohen's d_z: mean / sd of the differences). With zero spread the t test is degenerate:
        ``t_p`` is 0 (``t_stat`` ±inf, ``d_z`` ±inf) for a non-zero constant difference and NaN for an
        all-zero one, as scipy's limit gives.

    Raises:
        ValueError: different lengths, empty, NaN or infinite values.
    """
    x = as_1d_finite(a, "a (baseline)")
    y = as_1d_finite(b, "b (SE)")
    if x.size != y.size:
        raise InputError(
            f"a and b must hold one value per seed for the same seeds, got lengths {x.size} and {y.size}"
        )
    d = y - x  # (n,) SE minus baseline
    n = int(d.size)
    summary = mean_ci(d, confidence=confidence, n_resamples=n_resamples, seed=seed, method=method)
    mean = summary["mean"]
    sd = summary["sd"]
    if n < 2:
        t_stat, t_p, d_z = math.nan, math.nan, math.nan
    elif sd == 0 or np.ptp(d) <= 1e-12 * max(1.0, abs(mean)):  # constant difference: scipy's limit
        sign = float(np.sign(mean)) if abs(mean) > 1e-12 else 0.0
        t_stat = sign * math.inf if sign else math.nan
        t_p = 0.0 if sign else math.nan
        d_z = t_stat
    else:
        test = sps.ttest_rel(y, x)
        t_stat, t_p = float(test.statistic), float(test.pvalue)
        d_z = mean / sd
    nonzero = int(np.count_nonzero(d))
    if nonzero == 0:
        wilcoxon_p = 1.0
    elif nonzero < MIN_N_WILCOXON:
        wilcoxon_p = math.nan
    else:
        wilcoxon_p = float(sps.wilcoxon(d, zero_method="wilcox").pvalue)
    return {
        "n": n,
        "mean_a": float(x.mean()),
        "mean_b": float(y.mean()),
        "mean_diff": mean,
        "sd_diff": sd,
        "t_ci_low": summary["t_ci_low"],
        "t_ci_high": summary["t_ci_high"],
        "boot_ci_low": summary["boot_ci_low"],
        "boot_ci_high": summary["boot_ci_high"],
        "ci_low": summary["ci_low"],
        "ci_high": summary["ci_high"],
        "ci_method": summary["ci_method"],
        "t_stat": t_stat,
        "t_p": t_p,
        "wilcoxon_p": wilcoxon_p,
        "d_z": d_z,
    }


def robust_accuracy_table(
    per_seed: pd.DataFrame,
    *,
    baseline: str = BASELINE,
    group_by: Sequence[str] = ("attack", "eps"),
    value: str = "robust_acc",
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int | None = 0,
    method: str = "percentile",
    per_example: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Each SE model against the baseline, per (attack, eps), paired by seed.

    Args:
        per_seed: long frame with columns ``seed``, ``model`` (``baseline`` and one or more SE variants
            such as ``"se"`` or ``"se_r4"``), the ``group_by`` columns (default ``attack``, ``eps``) and
            ``value`` (default ``robust_acc``, a fraction in [0, 1]); one row per (seed, model, group).
        baseline: the ``model`` value of the baseline.
        group_by: columns that define one comparison (add e.g. ``"arch"`` to compare several at once).
        value: the accuracy column.
        confidence, n_resamples, seed, method: as in :func:`paired_difference`.
        per_example: per-image correctness (``seed, model, attack, eps, index, robust_correct``); where it
            covers a (model, attack, eps) cell in every seed on the same images, ``ci_low``/``ci_high`` are the
            verdict's interval over seeds and images (:func:`~serobust.stats.intervals.crossed_mean_ci`,
            ``ci_method`` "crossed seeds x images", ``n_images`` set); elsewhere the seed-level interval.

    Returns:
        One row per (SE model, group): ``model``, the group columns, ``n_seeds``, ``mean_baseline``,
        ``mean_model``, then :func:`paired_difference`'s fields (``mean_diff`` = model minus baseline, the
        t and bootstrap intervals, ``ci_low``/``ci_high``/``ci_method``, ``t_p``, ``wilcoxon_p``, ``d_z``).
        Seeds present for only one of the two models are left out with a warning.

    Raises:
        ValueError: missing columns (listed), empty frame, NaN, duplicated (seed, model, group) rows, or no
            baseline rows.
    """
    keys = list(group_by)
    require_columns(per_seed, ["seed", "model", *keys, value], "per_seed")
    reject_duplicates(per_seed, ["seed", "model", *keys], "per_seed")
    models = list(pd.unique(per_seed["model"]))
    if baseline not in models:
        raise InputError(f"per_seed has no rows with model == {baseline!r}; models present: {models}")
    others = [m for m in models if m != baseline]
    if not others:
        raise InputError(f"per_seed holds only the baseline {baseline!r}; add the SE model's rows to compare")
    wide = per_seed.pivot(index=[*keys, "seed"], columns="model", values=value)  # (groups x seeds, models)
    by_cell = {}  # per-image rows per (attack, eps), split once
    if per_example is not None and set(keys) == {"attack", "eps"} and {"attack", "eps"} <= set(per_example.columns):
        by_cell = {k: g for k, g in per_example.groupby(["attack", "eps"], sort=False)}
    rows = []
    for model in others:
        pair = wide[[baseline, model]]
        for key, sub in pair.groupby(level=keys, sort=True, observed=True):
            key = key if isinstance(key, tuple) else (key,)
            complete = sub.dropna()
            if len(complete) < len(sub):
                warnings.warn(
                    f"{dict(zip(keys, key))}: {len(sub) - len(complete)} seed(s) have {model!r} or {baseline!r} "
                    "missing and are left out of the paired comparison",
                    stacklevel=2,
                )
            if complete.empty:
                continue
            res = paired_difference(
                complete[baseline].to_numpy(),
                complete[model].to_numpy(),
                confidence=confidence,
                n_resamples=n_resamples,
                seed=seed,
                method=method,
            )
            group = dict(zip(keys, key))
            res["n_images"] = 0
            cell = by_cell.get((group["attack"], group["eps"]))
            if cell is not None:
                base, se, _ = per_image_arrays(cell, attack=group["attack"], baseline=baseline,
                                               se_model=model, seeds=list(complete.index.get_level_values("seed")),
                                               eps=[group["eps"]])
                if base.size:
                    crossed = crossed_mean_ci(se[..., 0] - base[..., 0], confidence=confidence)
                    res.update(ci_low=float(crossed["ci_low"]), ci_high=float(crossed["ci_high"]),
                               ci_method="crossed seeds x images", n_images=int(crossed["n_images"]))
            rows.append(
                {
                    "model": model,
                    **group,
                    "n_seeds": res.pop("n"),
                    "mean_baseline": res.pop("mean_a"),
                    "mean_model": res.pop("mean_b"),
                    **res,
                }
            )
    return pd.DataFrame(rows)
