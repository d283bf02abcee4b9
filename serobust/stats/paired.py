"""Per-example paired tests: McNemar's test of two models scored on the same examples, per cell and pooled.

Within one seed, the baseline and its SE twin are scored on the *same* test examples, so their
per-example correctness flags form a paired 2x2 table. Only the discordant examples (one model right,
the other wrong) carry information about a difference (McNemar 1947). This is a finer view than the
seed-level comparison of :mod:`serobust.stats.differences`: it says whether one trained pair differs, not whether
SE twins differ from baselines in general (that is the verdict's question, answered across seeds and
images by :func:`serobust.stats.intervals.crossed_mean_ci`).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.special import ndtri

from ..errors import InputError
from ..names import BASELINE
from .checks import check_confidence, check_flags, reject_duplicates, require_columns

__all__ = ["EXACT_MCNEMAR_BELOW", "mcnemar", "pooled_mcnemar"]

EXACT_MCNEMAR_BELOW = 25
"""McNemar uses the exact binomial test when fewer discordant pairs than this (the usual rule of thumb)."""

_PAIRED_CI_METHODS = ("newcombe", "wald")
_CELL = ["attack", "eps", "seed"]  # one paired test per cell: same seed, same examples


def _as_1d_bool(values: Any, name: str) -> np.ndarray:
    """Return per-example correctness as a bool vector; accepts bools or 0/1 numbers."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InputError(f"{name} must be one-dimensional (one flag per example), got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{name} is empty; give one correctness flag per example")
    if arr.dtype == np.bool_:
        return arr
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{name} must hold booleans or 0/1 numbers, got dtype {arr.dtype}")
    if np.isnan(arr.astype(np.float64)).any():
        raise InputError(f"{name} contains NaN; every example needs a correct/incorrect flag")
    if not np.isin(arr, (0, 1)).all():
        raise InputError(f"{name} must hold booleans or 0/1 numbers, found other values")
    return arr.astype(bool)


def _wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of one proportion."""
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


def _newcombe_paired(n11: int, n01: int, n10: int, n00: int, z: float) -> tuple[float, float]:
    """Newcombe (1998, Stat. Med. 17:2635, method 10) interval of p_b - p_a for paired proportions.

    ``n01``: a wrong, b right; ``n10``: a right, b wrong. Square-and-add of the two Wilson intervals, with
    the correlation phi of the paired table (continuity-corrected when positive, as in the paper).
    """
    n = n11 + n01 + n10 + n00
    p1, p2 = (n11 + n01) / n, (n11 + n10) / n  # b's and a's accuracy
    l1, u1 = _wilson(n11 + n01, n, z)
    l2, u2 = _wilson(n11 + n10, n, z)
    margins = (n11 + n01) * (n10 + n00) * (n11 + n10) * (n01 + n00)
    phi = 0.0
    if margins > 0:
        cross = n11 * n00 - n01 * n10
        if cross > n / 2:
            phi = (cross - n / 2) / math.sqrt(margins)
        elif cross < 0:
            phi = cross / math.sqrt(margins)
    diff = p1 - p2
    low = diff - math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    high = diff + math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    return max(low, -1.0), min(high, 1.0)


def _mcnemar_counts(
    n11: int, n01: int, n10: int, n00: int, *, exact: bool | None, confidence: float, ci_method: str
) -> dict[str, Any]:
    """McNemar test and accuracy difference from the counts of a paired 2x2 table."""
    n11, n01, n10, n00 = int(n11), int(n01), int(n10), int(n00)
    n = n11 + n01 + n10 + n00
    discordant = n01 + n10
    use_exact = discordant < EXACT_MCNEMAR_BELOW if exact is None else bool(exact)
    if use_exact:
        test = "exact binomial"
        statistic = float(min(n01, n10))
        p_value = float(sps.binomtest(n01, discordant, 0.5).pvalue) if discordant else 1.0
    else:
        test = "chi2 (continuity-corrected)"
        statistic = (abs(n01 - n10) - 1) ** 2 / discordant if discordant else 0.0
        p_value = float(sps.chi2.sf(statistic, 1)) if discordant else 1.0
    acc_a, acc_b = (n11 + n10) / n, (n11 + n01) / n
    diff = acc_b - acc_a
    z = float(ndtri(0.5 + confidence / 2.0))
    if ci_method == "newcombe":
        low, high = _newcombe_paired(n11, n01, n10, n00, z)
    else:  # Wald with the paired variance (Agresti 2002, 10.1.1)
        se = math.sqrt(max(discordant - (n01 - n10) ** 2 / n, 0.0)) / n
        low, high = max(diff - z * se, -1.0), min(diff + z * se, 1.0)
    return {
        "n": n,
        "n11": n11,
        "b01": n01,
        "b10": n10,
        "n00": n00,
        "acc_a": acc_a,
        "acc_b": acc_b,
        "diff": diff,
        "diff_ci_low": low,
        "diff_ci_high": high,
        "ci_method": ci_method,
        "test": test,
        "statistic": statistic,
        "p_value": p_value,
    }


def _check_mcnemar_options(exact: bool | None, confidence: float, ci_method: str) -> float:
    if exact is not None and not isinstance(exact, (bool, np.bool_)):
        raise InputError(f"exact must be True, False or None (automatic), got {exact!r}")
    if ci_method not in _PAIRED_CI_METHODS:
        raise InputError(f"ci_method must be one of {list(_PAIRED_CI_METHODS)}, got {ci_method!r}")
    return check_confidence(confidence)


def mcnemar(
    a_correct: Any,
    b_correct: Any,
    *,
    exact: bool | None = None,
    confidence: float = 0.95,
    ci_method: str = "newcombe",
) -> dict[str, Any]:
    """McNemar's test of two models scored on the SAME examples (``a``: baseline, ``b``: SE).

    Only the discordant examples carry information: ``b01`` (a wrong, b right) and ``b10`` (a right,
    b wrong). With ``exact=None`` the exact two-sided binomial test (``scipy.stats.binomtest`` of b01 out
    of b01 + b10 at 1/2) runs when ``b01 + b10 <`` :data:`EXACT_MCNEMAR_BELOW`, otherwise the chi-square
    test with Edwards' continuity correction ``(|b01 - b10| - 1)^2 / (b01 + b10)`` on 1 degree of freedom
    (the same formulas as statsmodels' ``mcnemar``). ``exact=True``/``False`` forces one.

    The accuracy difference ``acc_b - acc_a = (b01 - b10) / n`` comes with Newcombe's hybrid score
    interval for paired proportions (method 10 of Newcombe 1998, default: it stays inside [-1, 1] and
    keeps its coverage when discordant counts are small) or the Wald interval with the paired variance
    ``sqrt(b01 + b10 - (b01 - b10)^2 / n) / n`` (``ci_method="wald"``; poor with few discordant pairs).

    Args:
        a_correct: per-example correctness of model a (bools or 0/1), shape (n,).
        b_correct: the same examples for model b, shape (n,).
        exact: None (automatic), True (binomial) or False (chi-square).
        confidence: coverage of the difference's interval.
        ci_method: ``"newcombe"`` or ``"wald"``.

    Returns:
        dict with ``n``, ``n11`` (both right), ``b01``, ``b10``, ``n00`` (both wrong), ``acc_a``, ``acc_b``,
        ``diff``, ``diff_ci_low``, ``diff_ci_high``, ``ci_method``, ``test`` (which test ran),
        ``statistic`` (min(b01, b10) for the exact test, the chi-square value otherwise) and ``p_value``
        (1.0 when no example is discordant).

    Raises:
        ValueError: different lengths, empty, NaN or non-0/1 values, bad options.
    """
    confidence = _check_mcnemar_options(exact, confidence, ci_method)
    a = _as_1d_bool(a_correct, "a_correct")
    b = _as_1d_bool(b_correct, "b_correct")
    if a.size != b.size:
        raise InputError(
            f"a_correct and b_correct must score the same examples, got lengths {a.size} and {b.size}"
        )
    n11 = int(np.count_nonzero(a & b))
    n01 = int(np.count_nonzero(~a & b))
    n10 = int(np.count_nonzero(a & ~b))
    n00 = int(a.size - n11 - n01 - n10)
    return _mcnemar_counts(n11, n01, n10, n00, exact=exact, confidence=confidence, ci_method=ci_method)


def pooled_mcnemar(
    per_example: pd.DataFrame,
    *,
    baseline: str = BASELINE,
    example: str = "index",
    correct: str = "robust_correct",
    exact: bool | None = None,
    confidence: float = 0.95,
    ci_method: str = "newcombe",
) -> pd.DataFrame:
    """McNemar per (SE model, attack, eps, seed) against the baseline, plus Fisher's combination over seeds.

    Within one seed both models are scored on the same test examples, so each per-seed test is a valid
    paired test. Across seeds the models differ (each seed trains a new pair) while the examples stay the
    same: the per-seed tests are about different models on the same examples, and Fisher's method
    (``scipy.stats.combine_pvalues(method="fisher")``) asks whether *any* seed's pair differs. It treats
    the seeds' p values as independent, which holds for the models' training randomness but not for the
    shared test set, so read the combined p as a screening number. The verdict's interval treats seeds and
    the shared images as crossed random effects instead (:func:`serobust.stats.intervals.crossed_mean_ci`).

    Args:
        per_example: long frame with columns ``seed``, ``model``, ``attack``, ``eps``, ``example`` (an
            example id, default ``index`` as in ``serobust.evaluate(per_example=True)``) and ``correct``
            (bools or 0/1, default ``robust_correct``); one row per (seed, model, attack, eps, example).
        baseline: the ``model`` value of the baseline.
        example, correct: the column names of the example id and of the correctness flag.
        exact, confidence, ci_method: as in :func:`mcnemar`.

    Returns:
        One row per (model, attack, eps, seed) with :func:`mcnemar`'s fields (``a`` = baseline, ``b`` =
        model) plus ``n_seeds``, ``fisher_stat`` and ``fisher_p``, which repeat within a (model, attack,
        eps) group (``drop_duplicates(["model", "attack", "eps"])`` keeps one per group). (attack, eps,
        seed) cells evaluated for only one of the two models are left out with a warning.

    Raises:
        ValueError: missing columns (listed), empty frame, NaN, non-0/1 flags, duplicated rows, no baseline,
            or a cell whose two models were scored on different examples.
    """
    confidence = _check_mcnemar_options(exact, confidence, ci_method)
    require_columns(per_example, ["seed", "model", "attack", "eps", example, correct], "per_example")
    reject_duplicates(per_example, ["seed", "model", "attack", "eps", example], "per_example")
    flags = check_flags(per_example, correct, "per_example")
    frame = per_example[["seed", "model", "attack", "eps", example]].assign(_correct=flags.to_numpy())
    models = list(pd.unique(frame["model"]))
    if baseline not in models:
        raise InputError(f"per_example has no rows with model == {baseline!r}; models present: {models}")
    base = frame[frame["model"] == baseline].drop(columns="model")
    rows = []
    for model in (m for m in models if m != baseline):
        other = frame[frame["model"] == model].drop(columns="model")
        counts = _cell_counts(base, other, example=example, names=(baseline, model))
        for key, c in counts.iterrows():
            res = _mcnemar_counts(
                c["n11"],
                c["n01"],
                c["n10"],
                c["n00"],
                exact=exact,
                confidence=confidence,
                ci_method=ci_method,
            )
            rows.append({"model": model, **dict(zip(_CELL, key)), **res})
    return _add_fisher(pd.DataFrame(rows))


def _cell_counts(
    base: pd.DataFrame, other: pd.DataFrame, *, example: str, names: tuple[str, str]
) -> pd.DataFrame:
    """Paired 2x2 counts per (attack, eps, seed) cell scored for both models; one-sided cells warn.

    ``base`` and ``other`` hold ``attack, eps, seed, <example>, _correct`` for the baseline and one model.
    Returns a frame indexed by the cell with columns ``n11, n01, n10, n00`` (empty when no cell is shared).
    """
    baseline, model = names
    cells_base = base[_CELL].drop_duplicates()
    cells_other = other[_CELL].drop_duplicates()
    shared = cells_base.merge(cells_other, on=_CELL)
    n_skipped = len(cells_base) + len(cells_other) - 2 * len(shared)
    if n_skipped:
        warnings.warn(
            f"{n_skipped} (attack, eps, seed) cell(s) were evaluated for only one of {baseline!r} and "
            f"{model!r} and are left out",
            stacklevel=3,
        )
    merged = base.merge(shared, on=_CELL).merge(
        other.merge(shared, on=_CELL), on=[*_CELL, example], how="outer", suffixes=("_a", "_b")
    )
    unmatched = merged["_correct_a"].isna() | merged["_correct_b"].isna()
    if unmatched.any():
        bad = merged.loc[unmatched, _CELL].drop_duplicates().head(3).to_dict("records")
        raise InputError(
            f"{baseline!r} and {model!r} were scored on different examples in {int(unmatched.sum())} "
            f"row(s) (e.g. cells {bad}); McNemar needs both models evaluated on the same examples"
        )
    a = merged["_correct_a"].astype(bool)
    b = merged["_correct_b"].astype(bool)
    return (
        merged[_CELL]
        .assign(n11=a & b, n01=~a & b, n10=a & ~b, n00=~a & ~b)
        .groupby(_CELL, sort=True, observed=True)[["n11", "n01", "n10", "n00"]]
        .sum()
    )  # (cells, 4) counts of the paired 2x2 table


def _add_fisher(out: pd.DataFrame) -> pd.DataFrame:
    """Add ``n_seeds, fisher_stat, fisher_p`` per (model, attack, eps) group of per-seed McNemar rows."""
    if out.empty:
        return out
    group = ["model", "attack", "eps"]
    combined = {}
    for key, sub in out.groupby(group, sort=False, observed=True):
        p = np.clip(sub["p_value"].to_numpy(dtype=np.float64), np.finfo(np.float64).tiny, 1.0)  # log(0) guard
        fisher = sps.combine_pvalues(p, method="fisher")
        combined[key] = (len(sub), float(fisher.statistic), float(fisher.pvalue))
    keys = list(zip(*(out[g] for g in group)))
    out["n_seeds"] = [combined[k][0] for k in keys]
    out["fisher_stat"] = [combined[k][1] for k in keys]
    out["fisher_p"] = [combined[k][2] for k in keys]
    return out
