"""Seaborn/matplotlib figures of a study. Each function takes tidy frames and writes one PNG, returning its path.

Every function takes ``style=`` (:class:`FigureStyle`: the report's member palette, budget labels and
confidence), so a member has one colour in every figure. Means and intervals come from the summary tables
(:mod:`serobust.stats.summaries`), never from seaborn's own bootstrap. A figure whose table is absent
(its stage was switched off) is skipped by the caller (:mod:`serobust.report.plan`), not here.
"""

from ._common import FigureStyle, ordered
from .accuracy import interventions, paired_differences, robust_accuracy, training_curves
from .examples import amplification, examples_grid
from .excitation import (
    NOISE_PANELS,
    RATIO_PANELS,
    SHIFT_PANELS,
    channel_heatmap,
    damping,
    excitation_shift,
    noise_ratios,
    noise_relative,
    sensitivity,
)

__all__ = ["FigureStyle", "robust_accuracy", "paired_differences", "interventions", "training_curves",
           "excitation_shift", "damping", "channel_heatmap", "sensitivity", "examples_grid", "amplification", "ordered", "SHIFT_PANELS", "RATIO_PANELS",
           "NOISE_PANELS", "noise_ratios", "noise_relative"]
