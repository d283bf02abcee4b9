"""Accuracy figures: robust accuracy vs budget, the seed-paired difference, interventions, training.

Each function takes the study's tidy tables (the summary tables for means and intervals), draws one PNG
with the report's :class:`~serobust.report.figures._common.FigureStyle` and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ...names import BASELINE, WORST_CASE
from ..labels import attack_name, block_label
from ..palette import NEUTRAL
from ._common import (
    FigureStyle,
    eps_axis,
    eps_positions,
    interval_band,
    interval_bars,
    legend_below,
    member_handles,
    percent_axis,
    save,
    subplots,
)

__all__ = ["robust_accuracy", "paired_differences", "interventions", "training_curves"]


def _members(frame: pd.DataFrame, column: str, style: FigureStyle) -> list[str]:
    """Members present in ``frame``, in the palette's order (baseline first)."""
    present = {str(m) for m in frame[column]}
    return [m for m in style.palette if m in present] + sorted(present - set(style.palette))


def robust_accuracy(summary: pd.DataFrame, path: Path, *, style: FigureStyle,
                    attacks: Sequence[str] | None = None) -> Path:
    """Robust accuracy vs eps, one panel per attack, one line per member with its interval band.

    Args:
        summary: ``robust_summary`` (model, attack, eps, n, mean, ci_low, ci_high), fractions.
        attacks: panel order (default: order of appearance, the worst case last).
    """
    names = list(attacks or dict.fromkeys(summary["attack"]))
    names = [a for a in names if a != WORST_CASE] + [a for a in names if a == WORST_CASE]
    members = _members(summary, "model", style)
    cols = min(len(names), 2)  # two panels a row: readable at the page's width
    rows = -(-len(names) // cols)
    fig, axes = subplots(rows, cols, figsize=(5.6 * cols, 3.8 * rows), sharey=True)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    pos = eps_positions(summary["eps"])
    for ax, name in zip(axes.flat, names):
        sub = summary[summary["attack"] == name].sort_values("eps")
        sub = sub.assign(pct=100 * sub["mean"], x=sub["eps"].astype(float).map(pos))
        sns.lineplot(data=sub, x="x", y="pct", hue="model", hue_order=members, palette=style.palette,
                     marker="o", errorbar=None, legend=False, ax=ax)
        for m in members:
            rows = sub[sub["model"] == m]
            interval_band(ax, rows["x"], rows, color=style.color(m), scale=100)
        ax.set_title(attack_name(name))
        eps_axis(ax, pos, style, label="eps (Linf, [0, 1] pixels; budgets equally spaced)")
        percent_axis(ax, label="robust accuracy (%)")
    legend_below(fig, member_handles(members, style))
    fig.suptitle(f"Robust accuracy vs budget: mean over seeds, {style.level} interval band")
    return save(fig, path)


def paired_differences(robust: pd.DataFrame, stats: pd.DataFrame, path: Path, *, attack: str,
                       style: FigureStyle, informative: Mapping[float, bool] | None = None) -> Path:
    """SE twin minus baseline robust accuracy per budget: each seed a dot, the mean with its interval.

    Args:
        robust: per-seed ``robust`` rows (seed, model, attack, eps, robust_acc).
        stats: ``robust_stats`` (model, attack, eps, mean_diff, ci_low, ci_high): the verdict's intervals.
        attack: the attack shown (the study's main attack).
        informative: eps -> whether the verdict tested that budget; untested budgets are shaded.
    """
    sub = robust[robust["attack"] == attack]
    wide = sub.pivot_table(index=["seed", "eps"], columns="model", values="robust_acc").reset_index()
    twins = [m for m in _members(sub, "model", style) if m != BASELINE]
    budgets = sorted({float(e) for e in sub["eps"]})
    pos = {e: i for i, e in enumerate(budgets)}
    width = 0.7 / max(len(twins), 1)
    fig, axes = subplots(figsize=(max(6.0, 0.9 * len(budgets) * max(len(twins), 1) + 2), 3.8))
    ax = axes[0][0]
    for e, ok in (informative or {}).items():
        if not ok and float(e) in pos:
            ax.axvspan(pos[float(e)] - 0.45, pos[float(e)] + 0.45, color="#eeeeee", zorder=0)
            ax.text(pos[float(e)], 1.0, "not tested", transform=ax.get_xaxis_transform(), ha="center",
                    va="bottom", fontsize=7, color="#777777")
    for j, twin in enumerate(twins):
        shift = (j - (len(twins) - 1) / 2) * width
        diff = wide[["seed", "eps"]].assign(d=100 * (wide[twin] - wide[BASELINE]))
        seeds = sorted(diff["seed"].unique())
        jitter = {s: (k - (len(seeds) - 1) / 2) * min(0.05, width / (2 * len(seeds))) for k, s in enumerate(seeds)}
        ax.scatter([pos[float(e)] + shift + jitter[s] for e, s in zip(diff["eps"], diff["seed"])], diff["d"],
                   s=14, color=style.color(twin), alpha=0.5, zorder=3)
        st = stats[(stats["model"] == twin) & (stats["attack"] == attack)].sort_values("eps")
        st = st.rename(columns={"mean_diff": "mean"})
        x = [pos[float(e)] + shift for e in st["eps"]]
        ax.scatter(x, 100 * st["mean"], marker="D", s=40, color=style.color(twin), zorder=4)
        interval_bars(ax, x, st, color=style.color(twin), scale=100, zorder=4)
    ax.axhline(0, color=NEUTRAL, lw=0.8)
    ax.set_xticks(range(len(budgets)))
    ax.set_xticklabels([style.eps_label(e) + (" (clean)" if e == 0 else "") for e in budgets])
    ax.set_xlim(-0.5, len(budgets) - 0.5)
    ax.set_xlabel("eps")
    ax.set_ylabel("SE twin \u2212 baseline (pp)")
    ax.grid(alpha=0.3, axis="y")
    legend_below(fig, member_handles(twins, style, marker="D"))
    fig.suptitle(f"Paired difference in robust accuracy under {attack_name(attack)}: dots = seeds, "
                 f"diamonds = mean with {style.level} interval", fontsize=10)
    return save(fig, path)


_CONDITIONS = {
    "excitation_swap": "clean s swapped in\n(all blocks)",
    "frozen_gate": "gates frozen at\ndataset-mean s",
    "clean_frozen_gate": "frozen gates,\nclean input",
}
_REFERENCES = {"clean": ("--", "clean accuracy (no attack)"),
               "adversarial": (":", "under attack, no intervention")}


def _bars(ax: Axes, rows: pd.DataFrame, *, x: str, order: list[str], members: list[str],
          style: FigureStyle) -> None:
    """Grouped bars of ``mean`` (percent) per ``x`` category and member, with the summary's intervals."""
    rows = rows.assign(pct=100 * rows["mean"])
    sns.barplot(data=rows, x=x, y="pct", hue="model", order=order, hue_order=members, palette=style.palette,
                saturation=1.0, errorbar=None, legend=False, ax=ax)  # saturation 1: the palette's exact colour
    for container, m in zip(ax.containers, members):  # one container per member, bars in ``order``
        mine = rows[rows["model"] == m].set_index(x).reindex(order)
        centres = [bar.get_x() + bar.get_width() / 2 for bar in container]
        interval_bars(ax, centres, mine, color=NEUTRAL, scale=100)


def interventions(summary: pd.DataFrame, path: Path, *, style: FigureStyle,
                  blocks: Sequence[str] | None = None) -> Path:
    """Accuracy under attack with the excitations replaced, against the clean and unintervened lines.

    Args:
        summary: ``interventions_summary`` (model, condition, block, n, mean, ci_low, ci_high).
        blocks: network order of the per-block swaps (default: the summary's order).
    """
    members = [m for m in _members(summary, "model", style) if m != BASELINE]
    refs = summary[summary["condition"].isin(list(_REFERENCES))]
    whole = summary[summary["condition"].isin(list(_CONDITIONS))]
    per_block = summary[summary["condition"] == "block_swap"]
    panels = [p for p in (whole, per_block) if not p.empty]
    fig, axes = subplots(1, max(len(panels), 1), figsize=(5.2 * max(len(panels), 1), 3.8), sharey=True)
    for ax, panel in zip(axes[0], panels):
        if panel is whole:
            order = [c for c in _CONDITIONS if c in set(whole["condition"])]
            _bars(ax, whole, x="condition", order=order, members=members, style=style)
            ax.set_xticks(range(len(order)))
            ax.set_xticklabels([_CONDITIONS[c] for c in order], fontsize=8)
            ax.set_xlabel("")
            ax.set_title("all SE blocks at once")
        else:
            order = [b for b in (blocks or dict.fromkeys(per_block["block"])) if b in set(per_block["block"])]
            _bars(ax, per_block, x="block", order=order, members=members, style=style)
            ax.set_xticks(range(len(order)))
            ax.set_xticklabels([block_label(b) for b in order], rotation=30, ha="right", fontsize=8)
            ax.set_xlabel("clean s swapped in at one block")
            ax.set_title("one block at a time")
        for cond, (ls, _) in _REFERENCES.items():
            for m in members:
                value = refs[(refs["model"] == m) & (refs["condition"] == cond)]["mean"]
                if len(value):
                    ax.axhline(100 * float(value.iloc[0]), color=style.color(m), ls=ls, lw=1.3)
        percent_axis(ax, label="accuracy (%)")
    handles = [Patch(color=style.color(m), label=m) for m in members]
    handles += [Line2D([], [], color=NEUTRAL, ls=ls, label=text) for ls, text in _REFERENCES.values()]
    legend_below(fig, handles)
    fig.suptitle(f"Interventions on the excitations under attack: mean over seeds, {style.level} intervals",
                 fontsize=10)
    return save(fig, path)


def training_curves(summary: pd.DataFrame, path: Path, *, style: FigureStyle) -> Path:
    """Training loss and clean test accuracy per epoch, one line per member with its interval band.

    Args:
        summary: per (model, epoch, quantity) means and intervals, quantity in train_loss / test_acc.
    """
    members = _members(summary, "model", style)
    panels = [("train_loss", "training loss", 1.0), ("test_acc", "clean test accuracy (%)", 100.0)]
    fig, axes = subplots(1, 2, figsize=(9, 3.2))
    for ax, (quantity, label, scale) in zip(axes[0], panels):
        sub = summary[summary["quantity"] == quantity].sort_values("epoch")
        sns.lineplot(data=sub.assign(v=scale * sub["mean"]), x="epoch", y="v", hue="model", hue_order=members,
                     palette=style.palette, marker="o", errorbar=None, legend=False, ax=ax)
        for m in members:
            rows = sub[sub["model"] == m]
            interval_band(ax, rows["epoch"], rows, color=style.color(m), scale=scale)
        if scale == 100.0:
            percent_axis(ax, label=label)  # an interval past 100% is cut at the axis
        else:
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    legend_below(fig, member_handles(members, style))
    return save(fig, path)
