"""The RobustBench-style headline table: one row per member, the numbers a reader compares first.

Columns: parameters, seeds, clean accuracy, robust accuracy at the named budgets under the main attack,
and for each SE twin the seed-paired difference to the baseline with its interval (the verdict's). The
pipeline writes it as ``tables["headline"]`` (``model, n_seeds, params, clean_acc, robust_acc@<eps label>...,
diff, diff_ci_low, diff_ci_high``); for results written before that table existed, :func:`headline_frame`
rebuilds the same columns from the per-seed robust table and the verdict's robustness criterion.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..names import BASELINE
from .figures import FigureStyle
from .labels import number, percent, points
from .verdict_view import robustness_criterion, tested_budgets

__all__ = ["ROBUST_PREFIX", "attacked_images", "headline_frame", "headline_view"]

#: Column prefix of the robust-accuracy columns, followed by the budget's label (``robust_acc@8/255``).
ROBUST_PREFIX = "robust_acc@"


def _budgets(results: Mapping[str, Any], robust: pd.DataFrame, main: str) -> list[float]:
    """The verdict's tested budgets, else every eps > 0 of the main attack."""
    for v in results.get("verdict", {}).values():
        tested = tested_budgets(robustness_criterion(v))
        if tested:
            return tested
    return sorted({float(e) for e in robust.loc[robust["attack"] == main, "eps"] if float(e) > 0})


def _fallback(results: Mapping[str, Any], robust: pd.DataFrame, style: FigureStyle) -> pd.DataFrame | None:
    """The headline columns from per-seed ``robust`` rows and the verdict (reports of older runs)."""
    main = str(results.get("meta", {}).get("main_attack", ""))
    rows = robust[robust["attack"] == main]
    if rows.empty:
        return None
    budgets = _budgets(results, robust, main)
    params = results.get("meta", {}).get("params") or {}
    out = []
    for model in [m for m in style.palette if m in set(rows["model"])]:
        mine = rows[rows["model"] == model]
        clean = mine[mine["eps"] == 0].groupby("seed")["clean_acc"].mean() if (mine["eps"] == 0).any() \
            else mine.groupby("seed")["clean_acc"].mean()
        row: dict[str, Any] = {"model": model, "n_seeds": int(mine["seed"].nunique()),
                               "params": params.get(model, np.nan), "clean_acc": float(clean.mean())}
        for eps in budgets:
            at = mine[np.isclose(mine["eps"].astype(float), eps)]
            row[ROBUST_PREFIX + style.eps_label(eps)] = float(at["robust_acc"].mean()) if len(at) else np.nan
        crit = robustness_criterion(results.get("verdict", {}).get(model, {}))
        row.update(diff=crit.get("effect", np.nan), diff_ci_low=crit.get("ci_low", np.nan),
                   diff_ci_high=crit.get("ci_high", np.nan))
        out.append(row)
    return pd.DataFrame(out)


def headline_frame(results: Mapping[str, Any], tables: Mapping[str, pd.DataFrame],
                   style: FigureStyle) -> pd.DataFrame | None:
    """``tables["headline"]``, or the same columns rebuilt from ``robust`` and the verdict; None if neither."""
    frame = tables.get("headline")
    if frame is not None and not frame.empty:
        return frame
    robust = tables.get("robust")
    return None if robust is None or robust.empty else _fallback(results, robust, style)


def _ci(low: Any, high: Any) -> str:
    lo, hi = points(low, unit=False), points(high, unit=False)
    return f"[{lo}, {hi}]" if lo and hi else ""


def headline_view(frame: pd.DataFrame, *, results: Mapping[str, Any], style: FigureStyle) -> dict[str, Any]:
    """Header texts and per-row cells of the headline table for the template.

    Returns:
        ``{"columns": [str], "rows": [{"model", "color", "baseline", "cells": [str]}], "attack": str}``;
        accuracies in percent, the difference in signed percentage points with its interval.
    """
    robust_cols = [c for c in frame.columns if str(c).startswith(ROBUST_PREFIX)]
    params = results.get("meta", {}).get("params") or {}
    columns = ["params", "seeds", "clean"] + [f"eps {c[len(ROBUST_PREFIX):]}" for c in robust_cols]
    columns.append(f"SE \u2212 baseline, {style.level} CI")
    rows = []
    for rec in frame.to_dict("records"):
        model = str(rec["model"])
        count = rec.get("params")
        count = params.get(model) if count is None or (isinstance(count, float) and np.isnan(count)) else count
        cells = [f"{int(count):,}" if count is not None and not pd.isna(count) else "",
                 number(rec.get("n_seeds"), digits=4), percent(rec.get("clean_acc"))]
        cells += [percent(rec.get(c)) for c in robust_cols]
        baseline = model == BASELINE
        cells.append("reference" if baseline else
                     f"{points(rec.get('diff'))} {_ci(rec.get('diff_ci_low'), rec.get('diff_ci_high'))}".strip())
        rows.append({"model": model, "color": style.color(model), "baseline": baseline, "cells": cells})
    keep = [j for j in range(len(columns)) if any(r["cells"][j] for r in rows)]  # e.g. no params recorded
    for r in rows:
        r["cells"] = [r["cells"][j] for j in keep]
    return {"columns": [columns[j] for j in keep], "rows": rows}


def attacked_images(tables: Mapping[str, pd.DataFrame], attack: str) -> str:
    """How many test images per seed the main attack ran on ("200", or "100-200" if members differ); "" if
    the robust table does not say. The headline's clean accuracy is measured on those same images, so a
    small AutoAttack subset can show a clean accuracy apart from the one on the full evaluation set."""
    robust = tables.get("robust")
    if robust is None or "n" not in robust.columns or "attack" not in robust.columns:
        return ""
    n = pd.to_numeric(robust.loc[robust["attack"] == attack, "n"], errors="coerce").dropna()
    if n.empty:
        return ""
    lo, hi = int(n.min()), int(n.max())
    return f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"
