"""Power statements of the verdict: the minimum detectable effect, measured and planned.

:func:`minimum_detectable_effect` is the usual power formula on the robustness interval's standard error
and degrees of freedom; :func:`planned_mde` simulates studies of a given number of seeds and images from
measured variance components and runs the verdict's own interval
(:func:`serobust.stats.intervals.crossed_mean_ci`) on each, for sizing a study.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats as sps

from .intervals import MAX_CHUNK_ELEMENTS, crossed_mean_ci

__all__ = ["POWER", "minimum_detectable_effect", "planned_mde"]

POWER = 0.8
"""The power at which the minimum detectable effect is stated."""


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
    chunk = max(1, MAX_CHUNK_ELEMENTS // (n * m))
    gaps = []
    for start in range(0, n_sims, chunk):  # a few chunks, each one vectorised call
        k = min(chunk, n_sims - start)
        d = (sd[0] * rng.standard_normal((k, n, 1)) + sd[1] * rng.standard_normal((k, 1, m))
             + sd[2] * rng.standard_normal((k, n, m), dtype=np.float32))  # float32: the largest array
        r = crossed_mean_ci(d, confidence=1.0 - alpha)
        gaps.append((r["ci_high"] - r["ci_low"]) / 2.0 - r["mean"])
    return float(margin + np.quantile(np.concatenate(gaps), power))
