"""What every figure shares: the style (member colours, budget labels, confidence), saving, legends, bars.

Each figure draws means with seaborn (``errorbar=None``) and its intervals from a summary table with
:func:`interval_bars` or :func:`interval_band`, so the drawn interval is the one the tables and the verdict
state (see :mod:`serobust.stats.summaries`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ...io import atomic_path
from ..labels import EpsLabeler, kind_label
from ..palette import NEUTRAL, kind_style, member_palette

__all__ = ["FigureStyle", "save", "interval_bars", "interval_band", "member_handles", "kind_handles",
           "legend_below", "subplots", "ordered", "eps_positions", "eps_axis", "percent_axis"]

DPI = 110


@dataclass(frozen=True)
class FigureStyle:
    """The choices one report makes once and every figure follows.

    Args:
        palette: member name -> colour (:func:`serobust.report.palette.member_palette` over the study's
            members); a member missing from it is drawn in a neutral dark grey.
        eps_label: writes a budget as the config wrote it (``8/255``).
        confidence: the interval's coverage, for labels (the intervals themselves come from the tables).
        attack: the main attack's display name, for the ``adversarial`` kind's legend entry.
    """

    palette: Mapping[str, str] = field(default_factory=dict)
    eps_label: EpsLabeler = field(default_factory=EpsLabeler)
    confidence: float = 0.95
    attack: str | None = None

    def color(self, member: str) -> str:
        return self.palette.get(str(member), NEUTRAL)

    @classmethod
    def for_members(cls, members: Iterable[str], **kwargs) -> FigureStyle:
        """A style whose palette covers ``members`` (for figures drawn outside a report)."""
        return cls(palette=member_palette(members), **kwargs)

    @property
    def level(self) -> str:
        return f"{int(round(self.confidence * 100))}%"


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight", format="png")
    return Path(path)


def _bounds(mean: Sequence[float], low: Sequence[float], high: Sequence[float]) -> np.ndarray:
    m, lo, hi = (np.asarray(v, dtype=float) for v in (mean, low, high))
    return np.vstack([np.clip(m - lo, 0, None), np.clip(hi - m, 0, None)])  # NaN stays NaN: no bar drawn


def interval_bars(ax: Axes, x: Sequence[float], summary: pd.DataFrame, *, color: str, scale: float = 1.0,
                  **kwargs) -> None:
    """Vertical error bars ``[ci_low, ci_high]`` of a summary table's rows at positions ``x``."""
    m, lo, hi = (summary[c].to_numpy(dtype=float) * scale for c in ("mean", "ci_low", "ci_high"))
    ax.errorbar(x, m, yerr=_bounds(m, lo, hi), fmt="none", ecolor=color, elinewidth=1.4, capsize=3, **kwargs)


def interval_band(ax: Axes, x: Sequence[float], summary: pd.DataFrame, *, color: str,
                  scale: float = 1.0) -> None:
    """A shaded band ``[ci_low, ci_high]`` of a summary table's rows along ``x``."""
    lo, hi = (summary[c].to_numpy(dtype=float) * scale for c in ("ci_low", "ci_high"))
    ax.fill_between(np.asarray(x, dtype=float), lo, hi, color=color, alpha=0.18, linewidth=0)


def member_handles(members: Iterable[str], style: FigureStyle, *, marker: str = "o") -> list[Line2D]:
    """Legend entries, one per member, in the member's colour."""
    return [Line2D([], [], color=style.color(m), marker=marker, lw=2, label=str(m)) for m in members]


def kind_handles(kinds: Iterable[str], style: FigureStyle) -> list[Line2D]:
    """Legend entries, one per perturbation kind, in its line style and marker (neutral colour)."""
    out = []
    for k in kinds:
        ks = kind_style(k)
        out.append(Line2D([], [], color=NEUTRAL, ls=ks.linestyle, marker=ks.marker, lw=1.6,
                          label=kind_label(k, attack=style.attack)))
    return out


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], **kwargs) -> tuple[Figure, np.ndarray]:
    """A figure with a 2-d array of axes and constrained layout (room for outside legends and titles).

    The figure is made without pyplot: no global figure registry to leak into, and the caller's matplotlib
    backend (a notebook's inline one) is left alone.
    """
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kwargs)


def legend_below(fig: Figure, handles: list, *, title: str | None = None) -> None:
    """One legend for the whole figure, centred under the panels (never over the data or tick labels)."""
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), frameon=False,
                   title=title)


def ordered(frame: pd.DataFrame, column: str) -> list[str]:
    """The distinct values of ``column`` in network order (by ``depth`` where the frame has it)."""
    if "depth" in frame.columns:
        first = frame.groupby(column, sort=False)["depth"].min().sort_values(kind="stable")
        return [str(v) for v in first.index]
    return [str(v) for v in dict.fromkeys(frame[column])]


def eps_positions(values: Iterable[float]) -> dict[float, int]:
    """Budget -> x position: the study's budgets equally spaced, in order.

    Sweeps mix small and large budgets (0, 2/255, 4/255, ..., 0.3); on a linear axis the small ones
    collide and their labels overlap, so budgets are drawn as ordered categories.
    """
    return {v: i for i, v in enumerate(sorted({float(v) for v in values}))}


def eps_axis(ax: Axes, positions: Mapping[float, int], style: FigureStyle, *, label: str = "eps") -> None:
    """Budget ticks at :func:`eps_positions`, written as the config wrote them (``8/255``)."""
    ax.set_xticks(list(positions.values()))
    ax.set_xticklabels([style.eps_label(e) for e in positions], rotation=45 if len(positions) > 7 else 0)
    ax.set_xlim(-0.3, len(positions) - 0.7)
    ax.set_xlabel(label)


def percent_axis(ax: Axes, *, label: str, top: float = 100.0) -> None:
    ax.set_ylim(-2, top + 2)
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
