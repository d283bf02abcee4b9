"""The interval tables the figures draw: means across seeds with the verdict's intervals.

Every error bar and band in the report is a row of a table made by :func:`serobust.stats.intervals.mean_ci_by` with
``unit="seed"`` (the seed is the unit of replication: each seed trains a new pair), so a figure shows the
same interval as the verdict and the tables (``ci_low``/``ci_high``: the t interval below
:data:`serobust.stats.intervals.SMALL_N_T_CI` seeds) and states its ``n``. Seaborn's own bootstrap over rows is never
used: it would treat blocks and budgets of one seed as independent draws.

The pipeline writes ``robust_summary``, ``interventions_summary`` and ``sensitivity_summary``;
:func:`with_summaries` makes any that are missing (reports of older runs) with the same call. The per-block
shift and the training-curve summaries exist only for figures and are made here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from ..stats.intervals import mean_ci_by

__all__ = ["SummarySpec", "SUMMARIES", "summarize", "with_summaries", "interval_note"]


@dataclass(frozen=True)
class SummarySpec:
    """A summary table: ``value`` of table ``source`` averaged within seed, then across seeds ``by`` group."""

    source: str
    by: tuple[str, ...]
    value: str


#: The summary tables of a study (as the pipeline names them) and how each is made.
SUMMARIES: Mapping[str, SummarySpec] = {
    "robust_summary": SummarySpec("robust", ("model", "attack", "eps"), "robust_acc"),
    "interventions_summary": SummarySpec("interventions", ("model", "condition", "block"), "accuracy"),
    "sensitivity_summary": SummarySpec("sensitivity", ("member", "eps", "layer"), "rel_change"),
}


def summarize(frame: pd.DataFrame, *, by: Sequence[str], value: str | Sequence[str], confidence: float = 0.95,
              n_resamples: int = 10_000) -> pd.DataFrame:
    """Mean and interval of ``value`` per ``by`` group across seeds (several values: a ``quantity`` column).

    Missing group keys (a ``block`` of NaN for whole-model rows) become ``"none"`` rather than dropping
    rows. Returns the :func:`~serobust.stats.intervals.mean_ci_by` columns (``n, mean, ci_low, ci_high, ci_method``...).
    """
    keys = [b for b in by if b in frame.columns]
    data = frame.copy()
    for key in keys:
        if data[key].isna().any():
            data[key] = data[key].astype(object).where(data[key].notna(), "none")
    values = [value] if isinstance(value, str) else list(value)
    parts = []
    for v in values:
        part = mean_ci_by(data, by=keys, value=v, unit="seed", confidence=confidence, n_resamples=n_resamples)
        parts.append(part.assign(quantity=v) if len(values) > 1 else part)
    return pd.concat(parts, ignore_index=True)


def with_summaries(tables: Mapping[str, pd.DataFrame], *, confidence: float = 0.95,
                   n_resamples: int = 10_000) -> dict[str, pd.DataFrame]:
    """``tables`` plus every :data:`SUMMARIES` table that is missing and whose source table is there."""
    out = dict(tables)
    for name, spec in SUMMARIES.items():
        source = out.get(spec.source)
        if name not in out and source is not None and not source.empty and spec.value in source.columns:
            out[name] = summarize(source, by=spec.by, value=spec.value, confidence=confidence,
                                  n_resamples=n_resamples)
    return out


def interval_note(summary: pd.DataFrame, *, confidence: float) -> str:
    """``95% t intervals across n = 3 seeds`` for a caption, from the summary's own ``n`` and method."""
    n = sorted({int(v) for v in summary["n"].dropna()}) if "n" in summary.columns else []
    methods = sorted({str(m) for m in summary["ci_method"].dropna()}) if "ci_method" in summary.columns else []
    method = " / ".join(m.replace("-", " ") for m in methods) or "t"
    seeds = f"n = {n[0]}" if len(n) == 1 else f"n = {n[0]} to {n[-1]}" if n else "n unknown"
    return f"{int(round(confidence * 100))}% {method} intervals across {seeds} seeds"
