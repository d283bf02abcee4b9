"""Mechanism figures: how u, z, s and s*u move per SE block under attack vs random noise of the same size.

The SE block (Hu et al. 2018, arXiv 1709.01507) squeezes the feature map u to z (global average per
channel) and rescales u by s = sigmoid(W2 relu(W1 z)). The conjecture under test: an adversarial
perturbation barely moves z, so s holds steady and the gate damps the change. Member colours come from the
report's palette; perturbation kinds are told apart by line style and marker (:mod:`..palette`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from ...names import KINDS
from ..labels import block_label
from ..palette import NEUTRAL, kind_style
from ._common import (
    FigureStyle,
    interval_band,
    interval_bars,
    kind_handles,
    legend_below,
    member_handles,
    save,
    subplots,
)

__all__ = ["SHIFT_PANELS", "RATIO_PANELS", "NOISE_PANELS", "excitation_shift", "damping", "noise_ratios",
           "noise_relative", "channel_heatmap", "sensitivity"]

#: quantity -> panel title of the excitation-shift figure
SHIFT_PANELS = {"u_rel_change": "u (features entering the gate)", "z_rel_change": "z (squeeze: channel means)",
                "s_rel_change": "s (excitation)"}
#: quantity -> panel title of the damping figure
RATIO_PANELS = {"damping_ratio": "damping ratio: rel. change of s*u / of u",
                "z_over_u": "z/u: rel. change of z / of u",
                "absorb_ratio": "absorb ratio: |change of s*u| / |s * change of u|"}
#: quantity -> panel title of the attack-relative-to-noise figure
NOISE_PANELS = {"u_rel_change": "u", "z_rel_change": "z", "s_rel_change": "s", "g_rel_change": "s*u",
                "damping_ratio": "damping ratio", "z_over_u": "z/u", "absorb_ratio": "absorb ratio"}


def _kinds(frame: pd.DataFrame) -> list[str]:
    present = [str(k) for k in dict.fromkeys(frame["kind"])]
    return [k for k in KINDS if k in present] + [k for k in present if k not in KINDS]


def _twins(frame: pd.DataFrame, style: FigureStyle) -> list[str]:
    present = {str(m) for m in frame["model"]}
    return [m for m in style.palette if m in present] + sorted(present - set(style.palette))


def _block_lines(ax: Axes, rows: pd.DataFrame, *, blocks: Sequence[str], style: FigureStyle) -> None:
    """One line per (member, kind) across blocks, dodged, with the summary's intervals as bars."""
    members, kinds = _twins(rows, style), _kinds(rows)
    series = [(m, k) for m in members for k in kinds]
    step = 0.6 / max(len(series), 1)
    pos = {b: i for i, b in enumerate(blocks)}
    for j, (m, k) in enumerate(series):
        sub = rows[(rows["model"] == m) & (rows["kind"] == k) & rows["block"].isin(list(pos))]
        sub = sub.assign(_x=sub["block"].map(pos)).sort_values("_x")
        x = sub["_x"].to_numpy(dtype=float) + (j - (len(series) - 1) / 2) * step
        ks = kind_style(k)
        ax.plot(x, sub["mean"], color=style.color(m), ls=ks.linestyle, marker=ks.marker, ms=5, lw=1.5)
        interval_bars(ax, x, sub, color=style.color(m), alpha=0.8)
    ax.set_xticks(range(len(blocks)))
    ax.set_xticklabels([block_label(b) for b in blocks], rotation=30, ha="right", fontsize=8)
    ax.set_xlim(-0.5, len(blocks) - 0.5)
    ax.grid(alpha=0.3, axis="y")


def excitation_shift(summary: pd.DataFrame, path: Path, *, style: FigureStyle, blocks: Sequence[str]) -> Path:
    """Relative change of u, z and s per SE block (columns) at each budget (rows), attack vs noise.

    Args:
        summary: per (model, kind, eps, block, quantity) means and intervals across seeds, quantity in
            :data:`SHIFT_PANELS`.
        blocks: the SE blocks in network order.
    """
    quantities = [q for q in SHIFT_PANELS if q in set(summary["quantity"])]
    budgets = sorted({float(e) for e in summary["eps"]})
    fig, axes = subplots(len(budgets), len(quantities), figsize=(4.2 * len(quantities), 2.9 * len(budgets)))
    for i, eps in enumerate(budgets):
        for j, q in enumerate(quantities):
            ax = axes[i][j]
            rows = summary[(summary["quantity"] == q) & np.isclose(summary["eps"].astype(float), eps)]
            _block_lines(ax, rows, blocks=blocks, style=style)
            ax.set_title(f"{SHIFT_PANELS[q]}, eps = {style.eps_label(eps)}", fontsize=9)
            ax.set_ylabel("relative change" if j == 0 else "")
    legend_below(fig, member_handles(_twins(summary, style), style) + kind_handles(_kinds(summary), style))
    fig.suptitle(f"Relative change per SE block under the attack and under random noise of the same size "
                 f"(mean over seeds, {style.level} intervals)", fontsize=10)
    return save(fig, path)


def damping(summary: pd.DataFrame, path: Path, *, style: FigureStyle, blocks: Sequence[str]) -> Path:
    """Damping ratio and z/u per SE block, averaged over budgets within seed; 1 (dashed) is neutral.

    Args:
        summary: per (model, kind, block, quantity) means and intervals across seeds, quantity in
            :data:`RATIO_PANELS`.
        blocks: the SE blocks in network order.
    """
    quantities = [q for q in RATIO_PANELS if q in set(summary["quantity"])]
    fig, axes = subplots(1, len(quantities), figsize=(4.6 * len(quantities), 3.6))
    for ax, q in zip(axes[0], quantities):
        _block_lines(ax, summary[summary["quantity"] == q], blocks=blocks, style=style)
        ax.axhline(1.0, color=NEUTRAL, lw=0.9, ls="--")
        ax.set_title(RATIO_PANELS[q], fontsize=9)
        ax.set_ylabel("ratio (below 1: damped)")
    legend_below(fig, member_handles(_twins(summary, style), style) + kind_handles(_kinds(summary), style))
    fig.suptitle(f"Below 1 the gate damps the change / the squeeze moves less than u / the excitation's own "
                 f"change opposes the feature change (absorb ratio; 1 for a frozen gate); {style.level} intervals",
                 fontsize=10)
    return save(fig, path)


def noise_ratios(shift: pd.DataFrame, quantities: Sequence[str], *, noise: str = "gaussian",
                 adversarial: str = "adversarial") -> pd.DataFrame:
    """Each quantity under attack divided by its value under ``noise`` on the same (seed, model, eps, block).

    The Gaussian control has the attack's L2 norm image by image (:mod:`serobust.excitation.controls`), so the ratio is
    the attack's effect relative to chance of the same size: 1 means the attack moves the quantity as much as
    random noise does. Ratios are then averaged over budgets within (seed, model, block), as the verdict
    averages within seed.

    Returns:
        Long rows ``seed, model, block, quantity, ratio``.
    """
    cells = ["seed", "model", "eps", "block"]
    present = [q for q in quantities if q in shift.columns]
    adv = shift[shift["kind"] == adversarial].groupby(cells)[present].mean()
    ref = shift[shift["kind"] == noise].groupby(cells)[present].mean()
    ratio = (adv / ref).dropna(how="all")  # inner on the matched cells
    ratio = ratio.groupby(["seed", "model", "block"]).mean().reset_index()
    return ratio.melt(id_vars=["seed", "model", "block"], var_name="quantity", value_name="ratio")


def noise_relative(summary: pd.DataFrame, path: Path, *, style: FigureStyle, blocks: Sequence[str]) -> Path:
    """Each mechanism quantity under attack relative to L2-matched Gaussian noise, per SE block; 1 = as noise.

    Args:
        summary: per (model, block, quantity) means and intervals across seeds of :func:`noise_ratios`'
            ``ratio``, quantity in :data:`NOISE_PANELS`.
        blocks: the SE blocks in network order.
    """
    quantities = [q for q in NOISE_PANELS if q in set(summary["quantity"])]
    cols = min(4, len(quantities))
    rows = -(-len(quantities) // cols)
    fig, axes = subplots(rows, cols, figsize=(3.9 * cols, 3.0 * rows))
    flat = [ax for row in axes for ax in row]
    for ax, q in zip(flat, quantities):
        _block_lines(ax, summary[summary["quantity"] == q].assign(kind="adversarial"), blocks=blocks, style=style)
        ax.axhline(1.0, color=NEUTRAL, lw=0.9, ls="--")
        ax.set_title(f"{NOISE_PANELS[q]}: attack / Gaussian noise", fontsize=9)
        ax.set_ylabel("ratio (1: as noise)")
    for ax in flat[len(quantities):]:
        ax.set_visible(False)
    legend_below(fig, member_handles(_twins(summary, style), style))
    fig.suptitle(f"Each quantity under the attack relative to Gaussian noise of the same L2 norm (matched seed, "
                 f"budget and block; averaged over budgets within seed; {style.level} intervals)", fontsize=10)
    return save(fig, path)


def channel_heatmap(channels: pd.DataFrame, path: Path, *, value: str, style: FigureStyle,
                    blocks: Sequence[str]) -> Path:
    """Block x channel map of the mean excitation change under attack, one panel per SE twin.

    Args:
        channels: ``shift_channels`` rows (model, eps, block, channel, ``value``), averaged over seeds here
            (a descriptive map: no interval is drawn).
        value: the column shown (``s_abs_change``: mean |s(x_adv) - s(x)| per channel).
        blocks: the SE blocks in network order (rows of the map).
    """
    twins = _twins(channels, style)
    width = int(channels["channel"].max()) + 1
    height = (1.0 + 0.42 * len(blocks)) * len(twins)
    fig, axes = subplots(len(twins), 1, figsize=(min(14.0, 3 + 0.11 * width), height))
    for ax, twin in zip(axes[:, 0], twins):
        sub = channels[channels["model"] == twin]
        grid = sub.pivot_table(index="block", columns="channel", values=value, aggfunc="mean")
        grid = grid.reindex([b for b in blocks if b in grid.index])
        sns.heatmap(grid, cmap="viridis", ax=ax, cbar_kws={"label": f"mean |change of s| ({value})"},
                    xticklabels=8, yticklabels=[block_label(b) for b in grid.index])
        ax.tick_params(axis="x", rotation=0)
        ax.tick_params(axis="y", rotation=0)
        eps = ", ".join(style.eps_label(e) for e in sorted(sub["eps"].unique()))
        ax.set_title(f"{twin}: per-channel change of s under attack at eps = {eps} (mean over seeds)",
                     fontsize=9, color=style.color(twin))
        ax.set_xlabel("channel")
        ax.set_ylabel("SE block")
    return save(fig, path)


def sensitivity(summary: pd.DataFrame, path: Path, *, style: FigureStyle, layers: Sequence[str]) -> Path:
    """Relative change of matched block outputs through depth, baseline vs SE twins, one panel per budget.

    Args:
        summary: ``sensitivity_summary`` (member, eps, layer, n, mean, ci_low, ci_high).
        layers: the matched layers in network order.
    """
    budgets = sorted({float(e) for e in summary["eps"]})
    present = {str(m) for m in summary["member"]}
    members = [m for m in style.palette if m in present] + sorted(present - set(style.palette))
    pos = {layer: i for i, layer in enumerate(layers)}
    fig, axes = subplots(1, len(budgets), figsize=(4.0 * len(budgets), 3.3))
    for ax, eps in zip(axes[0], budgets):
        rows = summary[np.isclose(summary["eps"].astype(float), eps) & summary["layer"].isin(list(pos))]
        rows = rows.assign(_x=rows["layer"].map(pos)).sort_values("_x")
        sns.lineplot(data=rows, x="_x", y="mean", hue="member", hue_order=members, palette=style.palette,
                     marker="o", errorbar=None, legend=False, ax=ax)
        for m in members:
            mine = rows[rows["member"] == m]
            interval_band(ax, mine["_x"], mine, color=style.color(m))
        ax.set_xticks(range(len(layers)))
        ax.set_xticklabels([block_label(v) for v in layers], rotation=30, ha="right", fontsize=8)
        ax.set_title(f"eps = {style.eps_label(eps)}", fontsize=9)
        ax.set_xlabel("block")
        ax.set_ylabel("relative change of block output")
        ax.grid(alpha=0.3)
    legend_below(fig, member_handles(members, style))
    fig.suptitle(f"Feature sensitivity through depth under each model's own attack ({style.level} bands)",
                 fontsize=10)
    return save(fig, path)
