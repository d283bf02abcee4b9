"""The verdict's decision rule: one outcome per interval, the claims' p values, and Holm's correction.

:func:`decide` labels an interval with one of :data:`OUTCOMES` (a region-of-practical-equivalence rule),
:func:`judge` does it for one estimate and says why, :func:`claim_p_values` gives the p value of each
claim the rule can make (``p < alpha`` exactly when the interval makes it) and :func:`holm` adjusts them
for the number of criteria. Every criterion of the verdict (:mod:`serobust.stats.criteria`) and the
detector's (:mod:`serobust.detect.verdict`) is labelled by this one rule.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats as sps

from ..errors import InputError

__all__ = ["OUTCOMES", "judge", "decide", "claim_p_values", "holm"]

OUTCOMES = ("supported", "not supported", "opposite", "inconclusive")
"""The labels :func:`judge` gives an estimate and its interval (the verdict's vocabulary)."""


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
