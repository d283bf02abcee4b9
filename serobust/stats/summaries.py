"""The summary tables of a study, written once: means across seeds with the verdict's intervals.

Every summary table (and every error bar and band in the report) is :func:`summarize`: a value averaged
within each seed, then its mean and interval across seeds per group (:func:`serobust.stats.intervals.mean_ci_by`
with ``unit="seed"``: the seed is the unit of replication, each seed trains a new pair), so a table, a
figure and the verdict show the same interval (``ci_low``/``ci_high``: the t interval below
:data:`serobust.stats.intervals.SMALL_N_T_CI` seeds) and state its ``n``. Seaborn's own bootstrap over rows
is never used: it would treat blocks and budgets of one seed as independent draws.

:data:`SUMMARIES` is the one table of the study's named summaries (which source table, which groups,
which value); the results (:func:`serobust.study.results.statistics`) make them with :func:`summary_table`,
and the report fills any that a run lacks (reports of older runs) with :func:`with_summaries`, the same
call. Figure-only summaries (per-block shifts, training curves) call :func:`summarize` directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from ..errors import InputError
from .intervals import mean_ci_by

__all__ = ["SHIFT_QUANTITIES", "SummarySpec", "SUMMARIES", "summarize", "summary_table", "with_summaries",
           "interval_note"]

SHIFT_QUANTITIES = ("damping_ratio", "z_over_u", "s_rel_change", "z_rel_change", "u_rel_change", "absorb_ratio")
"""The excitation-shift columns summarized across seeds in ``shift_stats`` (per model, kind, eps)."""


@dataclass(frozen=True)
class SummarySpec:
    """A summary table: ``value`` of table ``source`` averaged within seed, then across seeds per ``by`` group.

    ``value``: one column, or several (then one block of rows per value, named in a leading ``quantity``
    column). ``drop_missing``: rows without a value are left out first (a detection run with no successful
    adversarial image has no AUROC to score); without it a NaN value is an error, as in ``mean_ci_by``.
    A missing group key (a ``block`` of NaN for whole-model rows) becomes ``"none"`` (:func:`summarize`).
    """

    source: str
    by: tuple[str, ...]
    value: str | tuple[str, ...]
    drop_missing: bool = False

    @property
    def values(self) -> tuple[str, ...]:
        """The value column(s) as a tuple."""
        return (self.value,) if isinstance(self.value, str) else tuple(self.value)


#: The summary tables of a study (as the pipeline names them) and how each is made.
SUMMARIES: Mapping[str, SummarySpec] = {
    "robust_summary": SummarySpec("robust", ("model", "attack", "eps"), "robust_acc"),
    "shift_stats": SummarySpec("shift", ("model", "kind", "eps"), SHIFT_QUANTITIES),
    "interventions_summary": SummarySpec("interventions", ("model", "condition", "block"), "accuracy"),
    "sensitivity_summary": SummarySpec("sensitivity", ("member", "eps", "layer"), "rel_change"),
    "autoattack_summary": SummarySpec("autoattack", ("model", "eps", "step", "component"), "robust_acc"),
    "detection_summary": SummarySpec("detection", ("model", "features", "perturbation", "eps"), "auroc",
                                     drop_missing=True),
}


def summarize(frame: pd.DataFrame, *, by: Sequence[str], value: str | Sequence[str], confidence: float = 0.95,
              n_resamples: int = 10_000) -> pd.DataFrame:
    """Mean and interval of ``value`` per ``by`` group across seeds (several values: a leading ``quantity`` column).

    Missing group keys (a ``block`` of NaN for whole-model rows) become ``"none"`` rather than dropping
    rows; a ``by`` column the frame lacks is left out of the grouping (:func:`summary_table` checks them). Returns the
    :func:`~serobust.stats.intervals.mean_ci_by` columns (``n, mean, ci_low, ci_high, ci_method``...), one
    block of rows per value in the order given.
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
        if len(values) > 1:
            part.insert(0, "quantity", v)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def summary_table(name: str, tables: Mapping[str, pd.DataFrame], *, confidence: float = 0.95,
                  n_resamples: int = 10_000, all_keys: bool = True) -> pd.DataFrame | None:
    """The :data:`SUMMARIES` table ``name`` made from ``tables``; None when its source table is absent or empty.

    ``all_keys``: the source must hold every group column (a study's own tables); False groups by the
    ones it holds (:func:`with_summaries`, for tables of older runs).

    Raises:
        KeyError: ``name`` is not a summary (naming the ones there are).
        InputError: the source lacks a group (with ``all_keys``) or value column, or holds NaN where the spec
            allows none.
    """
    if name not in SUMMARIES:
        raise KeyError(f"no summary table {name!r}; summaries: {sorted(SUMMARIES)}")
    spec = SUMMARIES[name]
    source = tables.get(spec.source)
    if source is None or source.empty:
        return None
    missing = [k for k in spec.by if k not in source.columns]
    if all_keys and missing:
        raise InputError(f"table {spec.source!r} lacks the group column(s) {missing} of {name!r}; it needs "
                         f"{list(spec.by)}, got {list(map(str, source.columns))}")
    if spec.drop_missing:
        source = source.dropna(subset=[v for v in spec.values if v in source.columns])
        if source.empty:
            return None
    value = spec.value if isinstance(spec.value, str) else list(spec.value)
    return summarize(source, by=spec.by, value=value, confidence=confidence, n_resamples=n_resamples)


def with_summaries(tables: Mapping[str, pd.DataFrame], *, confidence: float = 0.95,
                   n_resamples: int = 10_000) -> dict[str, pd.DataFrame]:
    """``tables`` plus every :data:`SUMMARIES` table that is missing and whose source table has its columns."""
    out = dict(tables)
    for name, spec in SUMMARIES.items():
        source = out.get(spec.source)
        if name in out or source is None or not set(spec.values) <= set(source.columns):
            continue
        made = summary_table(name, out, confidence=confidence, n_resamples=n_resamples, all_keys=False)
        if made is not None:
            out[name] = made
    return out


def interval_note(summary: pd.DataFrame, *, confidence: float) -> str:
    """``95% t intervals across n = 3 seeds`` for a caption, from the summary's own ``n`` and method."""
    n = sorted({int(v) for v in summary["n"].dropna()}) if "n" in summary.columns else []
    methods = sorted({str(m) for m in summary["ci_method"].dropna()}) if "ci_method" in summary.columns else []
    method = " / ".join(m.replace("-", " ") for m in methods) or "t"
    seeds = f"n = {n[0]}" if len(n) == 1 else f"n = {n[0]} to {n[-1]}" if n else "n unknown"
    return f"{int(round(confidence * 100))}% {method} intervals across {seeds} seeds"
