"""Statistics across seeds: t and bootstrap intervals, paired differences, and the rule that labels them.

Everything here is a pure function of numpy arrays or pandas frames (no torch), so a notebook can
recompute any number in a report from the tidy CSVs the pipeline writes. Per-example paired tests
(McNemar) live in :mod:`serobust.paired_tests`, the verdict on H1 in :mod:`serobust.verdicts`; both build
on the intervals and the input checks here. :func:`judge` turns an estimate and its interval into one of
:data:`OUTCOMES`; the verdict labels every criterion and every budget with it.

Units of replication. A training seed is one unit of replication: each seed gives one baseline and one
SE twin trained with the same seed, so seed-level results are *paired*. The test images are the other:
every seed's pair is scored on the same images (seeds and images are crossed), so the verdict's
robustness interval (:func:`crossed_mean_ci`) covers both, from per-image correctness. Quantities without
per-image values (shift ratios over blocks and eps) are averaged within a seed first, and their intervals
are taken across seeds. :func:`decide` is the verdict's rule on arrays, :func:`holm` its multiplicity
correction, :func:`minimum_detectable_effect` and :func:`planned_mde` its power statements.

Which interval decides. With the 3 to 5 seeds a study can afford, a bootstrap percentile interval is
too narrow: it can never be wider than the range of the data and its coverage is far below nominal
(with 3 points, resampled means take only 10 distinct values). The verdict therefore uses the
t interval ``mean ± t_{n-1} · sd / sqrt(n)`` whenever fewer than :data:`SMALL_N_T_CI` units are
available, and the bootstrap interval (``method`` as given) from there on. Both are always reported.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.special import ndtr, ndtri

from .errors import InputError
from .names import BASELINE
from .runtime import check_int

__all__ = [
    "SMALL_N_T_CI",
    "MIN_N_WILCOXON",
    "bootstrap_ci",
    "t_ci",
    "mean_ci",
    "mean_ci_by",
    "paired_difference",
    "robust_accuracy_table",
    "OUTCOMES",
    "judge",
    "decide",
    "crossed_mean_ci",
    "claim_p_values",
    "holm",
    "minimum_detectable_effect",
    "planned_mde",
    "POWER",
]

logger = logging.getLogger(__name__)

SMALL_N_T_CI = 20
"""Below this many units (seeds) the verdict interval is the t interval, not the bootstrap one."""

MIN_N_WILCOXON = 6
"""Fewest non-zero differences for which a Wilcoxon p value is reported.

With n non-zero differences the smallest two-sided exact signed-rank p value is 2 / 2**n: 0.25 at n = 3,
0.125 at n = 4, 0.0625 at n = 5, so below 6 the test cannot reject at 0.05 whatever the data, and a
p value would read as evidence of no effect when it is only a lack of seeds."""

OUTCOMES = ("supported", "not supported", "opposite", "inconclusive")
"""The labels :func:`judge` gives an estimate and its interval (the verdict's vocabulary)."""

_MAX_CHUNK_ELEMENTS = 1 << 22  # resample matrices are built in chunks of at most this many entries (32 MiB)
_BOOTSTRAP_METHODS = ("percentile", "bca")


# ----------------------------------------------------------------------------------------------------
# input validation (shared with serobust.paired_tests and serobust.verdicts)


def _as_1d_finite(values: Any, name: str) -> np.ndarray:
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


def _check_confidence(confidence: float) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise InputError(
            f"confidence must be a number strictly between 0 and 1 (e.g. 0.95), got {confidence!r}"
        )
    return float(confidence)


def _check_n_resamples(n_resamples: int) -> int:
    n_resamples = check_int(n_resamples, name="n_resamples", hint=" (e.g. 10_000)")
    if n_resamples < 1000:
        warnings.warn(
            f"n_resamples={n_resamples} gives noisy interval endpoints; use at least 1000 (10_000 is the default)",
            stacklevel=3,
        )
    return int(n_resamples)


def _check_method(method: str) -> str:
    if method not in _BOOTSTRAP_METHODS:
        raise InputError(f"method must be one of {list(_BOOTSTRAP_METHODS)}, got {method!r}")
    return method


def _require_columns(frame: Any, columns: Iterable[str], name: str, *, check_nan: bool = True) -> None:
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
        _check_no_nan(frame, columns, name)


def _check_no_nan(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    for column in columns:
        n_nan = int(frame[column].isna().sum())
        if n_nan:
            raise InputError(
                f"{name} column {column!r} has {n_nan} NaN value(s); drop those rows or fill them before "
                "computing statistics"
            )


def _check_flags(frame: pd.DataFrame, column: str, name: str) -> pd.Series:
    """A bool Series from a column of booleans or 0/1 numbers."""
    col = frame[column]
    if col.dtype == bool:
        return col
    if not col.isin([0, 1]).all():
        raise InputError(f"{name} column {column!r} must hold booleans or 0/1, found other values")
    return col.astype(bool)


def _reject_duplicates(frame: pd.DataFrame, keys: list[str], name: str) -> None:
    dup = frame.duplicated(keys, keep=False)
    if dup.any():
        example = frame.loc[dup, keys].head(3).to_dict("records")
        raise InputError(
            f"{name} has {int(dup.sum())} rows that share the same {keys} (e.g. {example}); each combination "
            "must appear once (aggregate or drop duplicates first)"
        )


# ----------------------------------------------------------------------------------------------------
# intervals


def _bootstrap_distribution(
    x: np.ndarray, statistic: Callable[..., Any], n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Statistic of ``n_resamples`` resamples with replacement, vectorized within memory-bounded chunks."""
    n = x.size
    chunk = max(1, _MAX_CHUNK_ELEMENTS // n)
    out = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, chunk):  # a few chunks, never one iteration per resample
        m = min(chunk, n_resamples - start)
        idx = rng.integers(0, n, size=(m, n))  # (m, n) resample indices
        theta = np.asarray(statistic(x[idx], axis=-1), dtype=np.float64)  # (m, n) -> (m,)
        if theta.shape != (m,):
            raise InputError(
                f"statistic must reduce along axis=-1 like np.mean (an (m, n) array to shape (m,)), got shape "
                f"{theta.shape}"
            )
        out[start : start + m] = theta
    return out


def _jackknife(x: np.ndarray, statistic: Callable[..., Any]) -> np.ndarray:
    """Leave-one-out values of the statistic, shape (n,), vectorized within memory-bounded chunks."""
    n = x.size
    chunk = max(1, _MAX_CHUNK_ELEMENTS // n)
    out = np.empty(n, dtype=np.float64)
    grid = np.arange(n)
    for start in range(0, n, chunk):
        rows = np.arange(start, min(n, start + chunk))
        idx = np.broadcast_to(grid, (rows.size, n))  # (r, n)
        keep = idx != rows[:, None]  # drop index i from row i
        loo = idx[keep].reshape(rows.size, n - 1)  # (r, n - 1)
        out[rows] = np.asarray(statistic(x[loo], axis=-1), dtype=np.float64)
    return out


def bootstrap_ci(
    values: Any,
    *,
    statistic: Callable[..., Any] = np.mean,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int | None = 0,
    method: str = "percentile",
) -> tuple[float, float, float]:
    """Two-sided bootstrap confidence interval of a statistic of one sample.

    All resamples are drawn as one index matrix (in chunks of at most 4M entries when the sample is large)
    and reduced with one call of ``statistic(..., axis=-1)``; there is no Python loop over resamples.
    ``"bca"`` is the bias-corrected and accelerated interval of Efron & Tibshirani (1993, 14.3), with the
    bias correction counting ties half (as ``scipy.stats.bootstrap`` does) and the acceleration from the
    jackknife. When the jackknife values are all equal the acceleration is undefined; it is then taken as
    0 (the bias-corrected percentile interval).

    Args:
        values: the sample, one-dimensional, finite.
        statistic: a reduction that accepts ``axis=`` like ``np.mean`` or ``np.median``.
        confidence: coverage of the two-sided interval, in (0, 1).
        n_resamples: number of bootstrap resamples.
        seed: seed of the ``numpy.random.default_rng`` that draws the resamples (None: fresh entropy).
        method: ``"percentile"`` or ``"bca"``.

    Returns:
        ``(estimate, low, high)`` where ``estimate = statistic(values)``. With a single value the interval is
        ``(nan, nan)``: every resample equals that value, so a bootstrap would report a zero-width interval,
        claiming a certainty that one observation cannot give.

    Raises:
        ValueError: empty, non-1-D, NaN or infinite values; a bad confidence, n_resamples or method.
    """
    x = _as_1d_finite(values, "values")
    confidence = _check_confidence(confidence)
    n_resamples = _check_n_resamples(n_resamples)
    method = _check_method(method)
    estimate = float(np.asarray(statistic(x[None, :], axis=-1)).reshape(-1)[0])
    if x.size == 1:
        logger.debug("bootstrap_ci: one value, no interval")
        return estimate, math.nan, math.nan
    rng = np.random.default_rng(seed)
    theta_b = _bootstrap_distribution(x, statistic, n_resamples, rng)  # (n_resamples,)
    alpha = (1.0 - confidence) / 2.0
    if method == "percentile":
        levels = np.array([alpha, 1.0 - alpha])
    else:
        # bias correction: where the estimate falls in the bootstrap distribution (ties count half)
        share = (np.count_nonzero(theta_b < estimate) + np.count_nonzero(theta_b <= estimate)) / (
            2 * n_resamples
        )
        z0 = ndtri(share)
        # acceleration: skewness of the jackknife values
        dev = _jackknife(x, statistic)
        dev = dev.mean() - dev
        den = 6.0 * np.sum(dev**2) ** 1.5
        accel = float(np.sum(dev**3) / den) if den > 0 else 0.0
        z = ndtri(np.array([alpha, 1.0 - alpha]))
        with np.errstate(invalid="ignore", divide="ignore"):
            levels = ndtr(z0 + (z0 + z) / (1.0 - accel * (z0 + z)))
        if not np.isfinite(levels).all():
            warnings.warn(
                "the BCa interval is undefined for this sample (the estimate lies outside every bootstrap "
                "value); returning NaN bounds, use method='percentile'",
                stacklevel=2,
            )
            return estimate, math.nan, math.nan
    low, high = np.quantile(theta_b, levels)
    return estimate, float(low), float(high)


def t_ci(values: Any, *, confidence: float = 0.95) -> tuple[float, float, float]:
    """Student t interval of the mean: ``mean ± t_{n-1, (1+confidence)/2} · sd / sqrt(n)``.

    Returns:
        ``(mean, low, high)``; with one value the bounds are NaN (no spread to estimate). With zero spread
        the interval collapses to the mean.
    """
    x = _as_1d_finite(values, "values")
    confidence = _check_confidence(confidence)
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    half = float(sps.t.ppf(0.5 + confidence / 2.0, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def mean_ci(
    values: Any,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int | None = 0,
    method: str = "percentile",
) -> dict[str, Any]:
    """Mean of one sample with both its t interval and its bootstrap interval.

    ``ci_low``/``ci_high`` repeat the interval the verdict uses: the t interval below
    :data:`SMALL_N_T_CI` values, the bootstrap interval from there on (``ci_method`` says which).

    Returns:
        dict with ``n, mean, sd, t_ci_low, t_ci_high, boot_ci_low, boot_ci_high, ci_low, ci_high, ci_method``.
    """
    x = _as_1d_finite(values, "values")
    mean, t_low, t_high = t_ci(x, confidence=confidence)
    _, b_low, b_high = bootstrap_ci(
        x, confidence=confidence, n_resamples=n_resamples, seed=seed, method=method
    )
    use_t = x.size < SMALL_N_T_CI
    return {
        "n": int(x.size),
        "mean": mean,
        "sd": float(x.std(ddof=1)) if x.size > 1 else math.nan,
        "t_ci_low": t_low,
        "t_ci_high": t_high,
        "boot_ci_low": b_low,
        "boot_ci_high": b_high,
        "ci_low": t_low if use_t else b_low,
        "ci_high": t_high if use_t else b_high,
        "ci_method": "t" if use_t else f"bootstrap-{method}",
    }


def mean_ci_by(
    frame: pd.DataFrame,
    by: str | Sequence[str],
    value: str,
    *,
    unit: str | None = None,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int | None = 0,
    method: str = "percentile",
) -> pd.DataFrame:
    """Group-wise mean of ``value`` with t and bootstrap intervals (damping ratios, shifts across seeds).

    Args:
        frame: long frame holding the columns in ``by``, ``value`` and ``unit``.
        by: grouping column(s); one output row per group.
        value: the numeric column to summarise.
        unit: the unit of replication (usually ``"seed"``). When given, ``value`` is first averaged within
            each (group, unit), so rows for several blocks or eps values of one seed count once and ``n`` is
            the number of units; when None, every row is one observation.
        confidence, n_resamples, seed, method: as in :func:`bootstrap_ci`.

    Returns:
        One row per group: the ``by`` columns, then the :func:`mean_ci` fields.

    Raises:
        ValueError: missing columns (listed), an empty frame, NaN in a used column.
    """
    keys = [by] if isinstance(by, str) else list(by)
    if not keys:
        raise InputError("by must name at least one grouping column")
    used = keys + [value] + ([unit] if unit is not None else [])
    _require_columns(frame, used, "frame")
    data = frame[used]
    if unit is not None:
        data = data.groupby(keys + [unit], sort=True, observed=True)[value].mean().reset_index()
    rows = []
    for key, group in data.groupby(keys, sort=True, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        stats = mean_ci(
            group[value].to_numpy(), confidence=confidence, n_resamples=n_resamples, seed=seed, method=method
        )
        rows.append({**dict(zip(keys, key)), **stats})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------
# paired comparison across seeds


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
    fewer than :data:`SMALL_N_T_CI` seeds are paired (bootstrap percentile intervals from 3 to 5 points
    are far too narrow, see the module docstring), and the bootstrap interval (``method``) from there on.

    Args:
        a: baseline values, one per seed.
        b: SE values, same seeds in the same order.
        confidence: coverage of both intervals.
        n_resamples, seed, method: bootstrap settings, as in :func:`bootstrap_ci`.

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
    x = _as_1d_finite(a, "a (baseline)")
    y = _as_1d_finite(b, "b (SE)")
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
            verdict's interval over seeds and images (:func:`crossed_mean_ci`, ``ci_method`` "crossed seeds
            x images", ``n_images`` set); elsewhere the seed-level interval, as without it.

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
    _require_columns(per_seed, ["seed", "model", *keys, value], "per_seed")
    _reject_duplicates(per_seed, ["seed", "model", *keys], "per_seed")
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
                from .robust_accuracy import per_image_arrays  # robust_accuracy imports this module

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


# ----------------------------------------------------------------------------------------------------
# the decision rule


def judge(
    effect: float,
    low: float,
    high: float,
    *,
    expect: str = "above",
    threshold: float = 0.0,
    min_effect: float = 0.0,
) -> tuple[str, str]:
    """Outcome of one estimate and its interval by :func:`decide`, with a clause saying why.

    For a quantity H1 expects above (or below) ``threshold`` by more than ``min_effect`` (the margin of
    practical size): "supported" when the interval lies wholly beyond ``threshold ± min_effect`` on the
    expected side, "opposite" when it lies wholly beyond it on the wrong side, "not supported" when it
    rules out an effect of practical size in the expected direction without being "opposite", else
    "inconclusive" (also without an interval: fewer than 2 seeds). ``effect`` only enters the text.

    Returns:
        ``(outcome, why)``, ``why`` a clause for the criterion's detail.
    """
    if expect not in ("above", "below"):
        raise InputError(f"expect must be 'above' or 'below', got {expect!r}")
    if not min_effect >= 0:
        raise InputError(f"min_effect must be >= 0 (a distance from the threshold), got {min_effect!r}")
    outcome = str(decide(low, high, expect=expect, threshold=threshold, margin=min_effect)[()])
    sign = 1.0 if expect == "above" else -1.0
    wrong = "below" if expect == "above" else "above"
    good, bad = threshold + sign * min_effect, threshold - sign * min_effect
    if math.isnan(low) or math.isnan(high):
        return outcome, "no interval (fewer than 2 seeds, or no spread to estimate one from)"
    why = {
        "supported": f"the interval lies wholly {expect} {good:g}",
        "opposite": f"the interval lies wholly {wrong} {bad:g}",
        "not supported": f"the interval lies {wrong} {good:g}: no effect of practical size "
                         f"(margin {min_effect:g})",
        "inconclusive": f"the interval reaches {expect} {good:g} but not wholly",
    }[outcome]
    return outcome, why


# ----------------------------------------------------------------------------------------------------
# seeds x images: the crossed interval, the decision rule on arrays, Holm, power


POWER = 0.8
"""The power at which the minimum detectable effect is stated."""


def _pseudo_floor(d: np.ndarray) -> np.ndarray:
    """Per-observation variance with Agresti & Min's (2005) pseudo-counts, shape ``d.shape[:-2]``.

    Adding 0.5 to each cell of the paired 2x2 table is two pseudo-observations of the difference: one at 0
    and half a pair at +1 and -1. With every difference 0 it gives ``1 / (N + 2)``, never 0, so an
    interval from a sample without a single discordant image still has a width.
    """
    n = d.shape[-1] * d.shape[-2]
    total = d.sum(axis=(-2, -1))
    squares = (d * d).sum(axis=(-2, -1))
    return (squares + 1.0) / (n + 2.0) - (total / (n + 2.0)) ** 2


def crossed_mean_ci(d: Any, *, confidence: float = 0.95) -> dict[str, np.ndarray]:
    """Mean of per-(seed, image) differences with an interval for both seeds and images; vectorised.

    ``d[..., i, j]``: SE minus baseline for seed ``i`` and test image ``j`` (correctness, 0/1 differences,
    or their mean over budgets). Seeds and images are *crossed* (every seed is scored on the same images),
    so the mean has the variance of a two-way random-effects model (seed effects, image effects,
    residual; Bouthillier et al. 2021 name the same two sources)::

        Var(mean) = s2_seed / n + s2_image / m + s2_res / (n m)

    estimated by the usual mean squares: ``MS_seed = m Var_i(row means)``, ``MS_image = n Var_j(column
    means)``, ``MS_res`` the two-way residual. The seed part ``s2_seed / n + s2_res / (n m)`` is the classic
    paired t variance ``Var_i(row means) / n``, floored at ``s2_res / (n m)``: the image sample alone sets
    a lower bound, so seeds that happen to agree cannot give a zero-width interval. ``s2_res`` itself is
    floored by Agresti & Min's (2005) pseudo-counts (:func:`_pseudo_floor`), so even a sample without a
    single discordant image keeps a width. The image part ``max(0, MS_image - MS_res) / (n m)`` is the
    variation the shared test images add (zero when the twins' per-image differences are exchangeable,
    positive when one twin is better on some images and worse on others). The interval is
    ``mean ± t_df · sqrt(Var)`` with Welch-Satterthwaite degrees of freedom (``n - 1`` for the seed part,
    the residual's ``(n - 1)(m - 1)`` where the floor binds). ``benchmarks/verdict_calibration.py``
    checks its error rate by simulation.

    Args:
        d: array of shape ``(..., n_seeds, n_images)``, finite.
        confidence: two-sided coverage.

    Returns:
        dict of arrays of shape ``d.shape[:-2]``: ``mean``, ``se``, ``df``, ``ci_low``, ``ci_high``, and the
        variance components ``var_seed``, ``var_image``, ``var_residual`` (per seed, image and single
        observation), ``n_seeds``, ``n_images``. With one seed the interval is NaN (the seed part cannot be
        estimated).
    """
    confidence = _check_confidence(confidence)
    d = np.asarray(d, dtype=np.float64)
    if d.ndim < 2 or d.shape[-1] < 1 or d.shape[-2] < 1:
        raise InputError(f"d must have shape (..., n_seeds, n_images), got {d.shape}")
    if not np.isfinite(d).all():
        raise InputError("d contains NaN or infinite values; every (seed, image) cell needs a difference")
    n, m = d.shape[-2], d.shape[-1]
    mean = d.mean(axis=(-2, -1))
    rows = d.mean(axis=-1)  # (..., n) per-seed differences
    cols = d.mean(axis=-2)  # (..., m) per-image differences, averaged over seeds
    nan = np.full(mean.shape, np.nan)
    if n < 2:
        return {"mean": mean, "se": nan, "df": nan, "ci_low": nan, "ci_high": nan, "var_seed": nan,
                "var_image": nan, "var_residual": nan, "n_seeds": n, "n_images": m}
    ms_seed = m * rows.var(axis=-1, ddof=1)
    ms_image = n * cols.var(axis=-1, ddof=1) if m > 1 else np.zeros_like(mean)
    df_res = (n - 1) * max(m - 1, 1)
    resid = d - rows[..., :, None] - cols[..., None, :] + mean[..., None, None]
    ms_res = (resid * resid).sum(axis=(-2, -1)) / df_res if m > 1 else np.zeros_like(mean)
    res = np.maximum(ms_res, _pseudo_floor(d))
    seed_part = ms_seed / (n * m)
    floor_part = res / (n * m)
    use_floor = floor_part > seed_part
    a = np.where(use_floor, floor_part, seed_part)
    df_a = np.where(use_floor, float(df_res), float(n - 1))
    b = np.maximum(ms_image - ms_res, 0.0) / (n * m) if m > 1 else np.zeros_like(mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        df_b_den = (ms_image**2 / max(m - 1, 1) + ms_res**2 / df_res)
        df_b = np.where(b > 0, (n * m * b) ** 2 / np.where(df_b_den > 0, df_b_den, 1.0), np.inf)
        var = a + b
        df = var**2 / (a**2 / df_a + np.where(b > 0, b**2 / df_b, 0.0))
    se = np.sqrt(var)
    half = sps.t.ppf(0.5 + confidence / 2.0, df) * se
    return {
        "mean": mean, "se": se, "df": df, "ci_low": mean - half, "ci_high": mean + half,
        "var_seed": np.maximum(ms_seed - ms_res, 0.0) / m, "var_image": np.maximum(ms_image - ms_res, 0.0) / n,
        "var_residual": res, "n_seeds": n, "n_images": m,
    }


def decide(low: Any, high: Any, *, expect: str = "above", threshold: float = 0.0, margin: float = 0.0) -> np.ndarray:
    """The verdict's rule on arrays of intervals: one of :data:`OUTCOMES` per interval.

    With ``expect="above"`` (a gain, e.g. robust accuracy SE minus baseline) and ``t = threshold``,
    ``m = margin`` (the smallest effect of practical size):

    * "supported": the interval lies wholly above ``t + m``;
    * "opposite": it lies wholly below ``t - m`` (symmetric with "supported": a loss smaller than ``m``
      is never "opposite");
    * "not supported": otherwise, when the interval lies wholly below ``t + m`` (it rules out an effect of
      practical size in the expected direction; this includes equivalence, within ``t ± m``);
    * "inconclusive": otherwise (it reaches into ``(t + m, ...)`` but not wholly), or no interval (NaN).

    ``expect="below"`` mirrors it (a ratio expected under ``t``: supported when the interval lies below
    ``t - m``). With ``m = 0`` "not supported" and "opposite" coincide and "opposite" is given. This is
    Kruschke's (2018) region-of-practical-equivalence rule, with "supported" and "opposite" the two
    sides of the region.
    """
    if expect not in ("above", "below"):
        raise InputError(f"expect must be 'above' or 'below', got {expect!r}")
    if not margin >= 0:
        raise InputError(f"margin (min_effect) must be >= 0 (a distance from the threshold), got {margin!r}")
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    if expect == "below":  # the gain threshold - value, expected above 0
        low, high = threshold - high, threshold - low
    else:
        low, high = low - threshold, high - threshold
    known = ~(np.isnan(low) | np.isnan(high))
    return np.select(
        [~known, low > margin, high < -margin, high < margin],
        ["inconclusive", "supported", "opposite", "not supported"],
        "inconclusive",
    ).astype(object)


def claim_p_values(
    effect: Any, se: Any, df: Any, *, expect: str = "above", threshold: float = 0.0, margin: float = 0.0
) -> dict[str, np.ndarray]:
    """Two-sided-consistent p values of the three claims of :func:`decide`, from a t statistic.

    ``p < alpha`` for a claim exactly when the ``1 - alpha`` interval ``effect ± t_df se`` makes it:
    ``supported`` (H0: effect on the near side of ``t + m``), ``not_supported`` (H0: an effect of
    practical size, ``>= t + m``) and ``opposite`` (H0: ``>= t - m``); each is twice the one-sided p.
    These are what Holm's procedure adjusts (:func:`holm`).
    """
    effect, se, df = (np.asarray(v, dtype=np.float64) for v in (effect, se, df))
    sign = 1.0 if expect == "above" else -1.0
    gain = sign * (effect - threshold)
    with np.errstate(divide="ignore", invalid="ignore"):
        def p_above(bound: float) -> np.ndarray:  # P(gain <= bound) rejected: gain > bound
            return np.minimum(1.0, 2.0 * sps.t.sf((gain - bound) / se, df))

        def p_below(bound: float) -> np.ndarray:
            return np.minimum(1.0, 2.0 * sps.t.cdf((gain - bound) / se, df))

        out = {"supported": p_above(margin), "not_supported": p_below(margin), "opposite": p_below(-margin)}
    return {k: np.where(np.isnan(v), 1.0, v) for k, v in out.items()}


def holm(p_values: Any) -> np.ndarray:
    """Holm's (1979) step-down adjusted p values (family-wise error control), in the input order."""
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    k = p.size
    if k == 0:
        return p
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, np.maximum.accumulate((k - np.arange(k)) * p[order]))
    out = np.empty(k)
    out[order] = stepped
    return out


def minimum_detectable_effect(
    se: Any, df: Any, *, alpha: float = 0.05, power: float = POWER, margin: float = 0.0
) -> np.ndarray:
    """Smallest true gain the rule calls "supported" with probability ``power``: ``m + (t_{1-a/2} + t_{power}) se``.

    "supported" needs the lower end of the ``1 - alpha`` interval above ``margin``: ``est - t_{1-alpha/2} se >
    margin``; with the estimate normal around the true gain ``delta`` (and ``se`` as measured) that
    happens with probability ``power`` when ``delta = margin + (t_{df, 1-alpha/2} + t_{df, power}) se``
    (the usual power formula, with t quantiles for the interval's degrees of freedom).
    """
    se, df = np.asarray(se, dtype=np.float64), np.asarray(df, dtype=np.float64)
    return margin + (sps.t.ppf(1.0 - alpha / 2.0, df) + sps.t.ppf(power, df)) * se


def planned_mde(
    var_seed: float, var_image: float, var_residual: float, n_seeds: int, n_images: int, *,
    alpha: float = 0.05, power: float = POWER, margin: float = 0.0, n_sims: int = 500, seed: int = 0,
) -> float:
    """The minimum detectable effect a study with ``n_seeds`` x ``n_images`` would have, by simulation.

    Simulates ``n_sims`` (500: a Monte Carlo error of a few percent) studies of per-(seed, image) differences ``d = a_i + b_j + e_ij`` with normal
    components of the given variances (those :func:`crossed_mean_ci` reports), runs the verdict's own
    interval on each and returns the smallest true gain called "supported" (lower end above ``margin``) in a
    share ``power`` of them: ``margin + quantile_power(half-width - null estimate)``. Simulating the
    procedure rather than plugging into a formula keeps its regimes (the seed part with ``n - 1`` degrees
    of freedom, or the image floor) as they would happen. For sizing a study: how many seeds or images buy
    how small an effect, given the variance components one study measured.
    """
    n, m = int(n_seeds), int(n_images)
    if n < 2 or m < 1 or not all(math.isfinite(float(v)) for v in (var_seed, var_image, var_residual)):
        return math.nan
    rng = np.random.default_rng(seed)
    sd = [math.sqrt(max(float(v), 0.0)) for v in (var_seed, var_image, var_residual)]
    chunk = max(1, _MAX_CHUNK_ELEMENTS // (n * m))
    gaps = []
    for start in range(0, n_sims, chunk):  # a few chunks, each one vectorised call
        k = min(chunk, n_sims - start)
        d = (sd[0] * rng.standard_normal((k, n, 1)) + sd[1] * rng.standard_normal((k, 1, m))
             + sd[2] * rng.standard_normal((k, n, m), dtype=np.float32))  # float32 draws: half the time
        r = crossed_mean_ci(d, confidence=1.0 - alpha)
        gaps.append((r["ci_high"] - r["ci_low"]) / 2.0 - r["mean"])
    return float(margin + np.quantile(np.concatenate(gaps), power))
