"""Per-image correctness of a baseline and its SE twin as arrays (seeds, images, eps).

The crossed seeds x images interval (:func:`serobust.stats.intervals.crossed_mean_ci`) needs every seed's
pair scored on the same images; :func:`per_image_arrays` builds those arrays from an
``evaluate(per_example=True)`` table, or says why it cannot (then callers fall back to seed-level intervals).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .checks import check_flags, check_no_nan

__all__ = ["per_image_arrays"]


def per_image_arrays(per_example: pd.DataFrame | None, *, attack: str, baseline: str, se_model: str,
               seeds: list[Any], eps: list[float]) -> tuple[np.ndarray, np.ndarray, str]:
    """``(base, se, why_not)``: correctness arrays ``(seeds, images, eps)`` of the pair, or empty arrays and why.

    From an ``evaluate(per_example=True)`` table (``seed, model, attack, eps, index, robust_correct``); the
    arrays exist only when every (seed, model, eps) cell was scored on the same images.
    """
    if per_example is None:
        return np.empty(0), np.empty(0), "no per-image table was given"
    need = ["seed", "model", "attack", "eps", "index", "robust_correct"]
    missing = [c for c in need if c not in per_example.columns]
    if missing:
        return np.empty(0), np.empty(0), f"the per-image table lacks column(s) {missing}"
    rows = per_example[(per_example["attack"] == attack) & per_example["model"].isin([baseline, se_model])
                       & per_example["eps"].isin(eps) & per_example["seed"].isin(seeds)]
    if rows.empty:
        return np.empty(0), np.empty(0), f"the per-image table has no {attack!r} rows for this pair"
    check_no_nan(rows, ["seed", "model", "eps", "index", "robust_correct"], "per_example")
    flags = check_flags(rows, "robust_correct", "per_example").astype(np.float64)
    wide = rows.assign(_c=flags.to_numpy()).pivot_table(
        index=["seed", "index"], columns=["model", "eps"], values="_c", aggfunc="mean")
    cols = pd.MultiIndex.from_product([[baseline, se_model], eps])
    images = wide.index.get_level_values("index")
    per_seed = {s: set(images[wide.index.get_level_values("seed") == s]) for s in seeds}
    if len({frozenset(v) for v in per_seed.values()}) != 1 or any(not v for v in per_seed.values()):
        return np.empty(0), np.empty(0), "the seeds were not scored on the same images"
    wide = wide.reindex(columns=cols)
    if wide.isna().any().any():
        return np.empty(0), np.empty(0), "some (seed, model, eps) cells have no per-image rows"
    n, m = len(seeds), len(next(iter(per_seed.values())))
    wide = wide.sort_index()
    arr = wide.to_numpy().reshape(n, m, 2, len(eps))  # (seeds, images, model, eps)
    return arr[:, :, 0, :], arr[:, :, 1, :], ""
