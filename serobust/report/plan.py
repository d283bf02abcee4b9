"""Which figures a report has, in reading order, with title, caption, alt text, glossary terms and a drawer.

The page tells one story: the robustness result (robust accuracy, the seed-paired difference the verdict
tests, what the attack does to an image), then the mechanism (how u, z and s move under attack vs noise,
damping, channels, sensitivity through depth, interventions), then training. Each builder returns a
:class:`FigureSpec`, or None when its table is absent (the stage was switched off), so a study without a
probe still gets a page. Captions state the interval and its n from the summary table drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..names import BASELINE
from ..stats.summaries import interval_note, summarize
from . import figures
from .figures import FigureStyle
from .labels import attack_name
from .palette import color_name
from .verdict_view import informative_budgets

__all__ = ["FigureSpec", "PlanInput", "BUILDERS", "plan_figures"]


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the page: ``figures/<name>.png`` drawn by ``draw`` (None: only an existing PNG is shown)."""

    name: str
    title: str
    caption: str
    alt: str
    terms: tuple[str, ...]
    draw: Callable[[Path], Path] | None


@dataclass(frozen=True)
class PlanInput:
    """What the builders read: the results dict, the tables (summaries included), examples, the style."""

    results: Mapping[str, Any]
    tables: Mapping[str, pd.DataFrame]
    examples: Mapping[str, Any] | None
    style: FigureStyle
    n_resamples: int

    @property
    def main(self) -> str:
        return str(self.results.get("meta", {}).get("main_attack", ""))

    def table(self, name: str) -> pd.DataFrame | None:
        frame = self.tables.get(name)
        return None if frame is None or frame.empty else frame

    def summarize(self, frame: pd.DataFrame, by: list[str], value: str | list[str]) -> pd.DataFrame:
        return summarize(frame, by=by, value=value, confidence=self.style.confidence, n_resamples=self.n_resamples)

    def colours(self, members: list[str]) -> str:
        return ", ".join(f"{m} {color_name(self.style.color(m))}" for m in members)


def _robust(p: PlanInput) -> FigureSpec | None:
    summary = p.table("robust_summary")
    if summary is None:
        return None
    members = [m for m in p.style.palette if m in set(summary["model"])]
    attacks = ", ".join(attack_name(a) for a in dict.fromkeys(summary["attack"]))
    return FigureSpec(
        "robust_accuracy", "Robust accuracy vs budget",
        f"Each white-box attack at every budget; lines are means over seeds, bands their "
        f"{interval_note(summary, confidence=p.style.confidence)}. The worst case counts an image as robust only "
        f"if every attack failed on it.",
        f"Line charts, one panel per attack ({attacks}): robust accuracy in percent against eps, one line per "
        f"model ({p.colours(members)}) with a shaded interval band.",
        ("eps", "robust_acc", "clean_acc", "seed", "interval"),
        lambda path: figures.robust_accuracy(summary, path, style=p.style))


def _paired(p: PlanInput) -> FigureSpec | None:
    robust, stats = p.table("robust"), p.table("robust_stats")
    if robust is None or stats is None or p.main not in set(robust["attack"]):
        return None
    informative = informative_budgets(p.results)
    n = sorted(set(stats[stats["attack"] == p.main]["n_seeds"].astype(int))) if "n_seeds" in stats else []
    shaded = " Shaded budgets were not tested by the verdict (not informative: see the verdict)." \
        if informative and not all(informative.values()) else ""
    twins = [m for m in p.style.palette if m != BASELINE and m in set(stats["model"])]
    crossed = "ci_method" in stats and (stats["ci_method"] == "crossed seeds x images").any()
    interval = "over seeds and the test images, the verdict's, with" if crossed else "t interval across"
    return FigureSpec(
        "paired_differences", "The paired difference the verdict tests",
        f"SE twin minus baseline robust accuracy under {attack_name(p.main)} ({p.main}), in percentage points: "
        f"one dot per seed, diamonds the mean with its {int(round(p.style.confidence * 100))}% interval "
        f"({interval} n = {', '.join(map(str, n)) or '?'} seeds; the robust-accuracy table's interval). Above 0: the "
        f"SE twin keeps more accuracy.{shaded}",
        f"Dot plot: the per-seed difference in robust accuracy between each SE twin ({p.colours(twins)}) and the "
        f"baseline at each eps, with the mean and its interval as a diamond with error bars; a line at 0.",
        ("diff", "pp", "informative"),
        lambda path: figures.paired_differences(robust, stats, path, attack=p.main, style=p.style,
                                                informative=informative))


def _example_info(p: PlanInput) -> dict:
    """The example grid's budget and attack: from the examples, else as results.json recorded them."""
    return p.examples or p.results.get("meta", {}).get("examples") or {}


def _examples_attack(p: PlanInput) -> str:
    """The examples' attack label; a bare name (``pgd``) that names the main attack gets its full label."""
    given = str(_example_info(p).get("attack", ""))
    return p.main if not given or p.main.split("(")[0] == given else given


def _examples(p: PlanInput) -> FigureSpec:
    eps = _example_info(p).get("eps", 0)
    k = figures.amplification(float(eps or 0))
    label = _examples_attack(p)
    attack = attack_name(label)
    return FigureSpec(
        "examples", "What the attack does to an image",
        f"First test images of the first seed: clean (top), then for each model its {attack} adversarial image "
        f"at eps = {p.style.eps_label(eps or 0)} (title: clean \u2192 adversarial prediction, red when wrong) and "
        f"the perturbation x_adv \u2212 x amplified \u00d7{k:g} around mid-grey (\u00b1eps spans black to white).",
        f"Image grid: clean digits, each model's adversarial version at eps {p.style.eps_label(eps or 0)} and the "
        f"perturbation amplified {k:g} times.",
        ("eps",),
        (lambda path: figures.examples_grid(dict(p.examples), path, style=p.style, attack=label)) if p.examples
        else None)


def _shift(p: PlanInput) -> FigureSpec | None:
    shift = p.table("shift")
    quantities = [q for q in figures.SHIFT_PANELS if shift is not None and q in shift.columns]
    if shift is None or not quantities or "kind" not in shift.columns:
        return None
    summary = p.summarize(shift, ["model", "kind", "eps", "block"], quantities)
    blocks = figures.ordered(shift, "block")
    return FigureSpec(
        "excitation_shift", "How u, z and s move per SE block: attack vs random noise",
        f"Relative change of u, z and s per SE block (columns) at each probed budget (rows), under the attack "
        f"(solid) and random sign and Gaussian noise of the same size (dashed, dotted); means over seeds with "
        f"{interval_note(summary, confidence=p.style.confidence)}. The conjecture needs z to move less than u "
        f"and s to move little, more so under the attack than under noise.",
        "Line charts per budget and quantity: relative change against SE block, one line per twin and "
        "perturbation kind, with error bars.",
        ("u", "z", "s", "g", "rel_change", "kinds"),
        lambda path: figures.excitation_shift(summary, path, style=p.style, blocks=blocks))


def _damping(p: PlanInput) -> FigureSpec | None:
    shift = p.table("shift")
    quantities = [q for q in figures.RATIO_PANELS if shift is not None and q in shift.columns]
    if shift is None or not quantities or "kind" not in shift.columns:
        return None
    summary = p.summarize(shift, ["model", "kind", "block"], quantities)
    blocks = figures.ordered(shift, "block")
    return FigureSpec(
        "damping", "Does the gate damp the change?",
        f"Damping ratio, z/u and absorb ratio per SE block, averaged over the probed budgets within each seed (as "
        f"the verdict does), then across seeds with {interval_note(summary, confidence=p.style.confidence)}. The "
        f"dashed line at 1 is neutral: below it the gate damps, the squeeze moves less than u, or the excitation's "
        f"own change opposes the feature change (the absorb ratio is exactly 1 for a frozen gate).",
        "Line charts: damping ratio, z/u and absorb ratio against SE block for each perturbation kind, with error "
        "bars and a dashed reference line at 1.",
        ("damping", "z_over_u", "absorb", "beyond_noise"),
        lambda path: figures.damping(summary, path, style=p.style, blocks=blocks))


def _noise_relative(p: PlanInput) -> FigureSpec | None:
    shift = p.table("shift")
    if shift is None or "kind" not in shift.columns or "gaussian" not in set(shift["kind"]):
        return None
    ratios = figures.noise_ratios(shift, list(figures.NOISE_PANELS))
    if ratios.empty:
        return None
    summary = p.summarize(ratios, ["model", "block", "quantity"], "ratio")
    blocks = figures.ordered(shift, "block")
    return FigureSpec(
        "noise_relative", "Under attack, relative to noise of the same size",
        f"Each mechanism quantity under the attack divided by its value under Gaussian noise with the attack's L2 "
        f"norm (image by image, after clipping), on the same seed, budget and block; averaged over budgets within "
        f"seed, then across seeds with {interval_note(summary, confidence=p.style.confidence)}. At 1 the attack "
        f"does what chance of its size does; the conjecture needs z and s to move less than under noise relative "
        f"to u, and the absorb ratio below its noise value.",
        "Line charts, one panel per quantity (relative changes of u, z, s and s*u; damping ratio, z/u, absorb "
        "ratio): the attack-to-noise ratio against SE block, one line per twin, with error bars and a dashed line "
        "at 1.",
        ("noise_relative", "absorb", "kinds"),
        lambda path: figures.noise_relative(summary, path, style=p.style, blocks=blocks))


def _channels(p: PlanInput) -> FigureSpec | None:
    channels = p.table("shift_channels")
    if channels is None or "channel" not in channels.columns or "s_abs_change" not in channels.columns:
        return None
    blocks = figures.ordered(channels, "block")
    return FigureSpec(
        "channel_heatmap", "Which channels' excitations move",
        "Mean absolute change of each channel's excitation s under the attack, per SE block (rows) and channel "
        "(columns), averaged over images and seeds (descriptive: no interval). Blank cells: the block has fewer "
        "channels.",
        "Heat map of the per-channel change of s under attack, SE blocks as rows and channels as columns.",
        ("abs_change",),
        lambda path: figures.channel_heatmap(channels, path, value="s_abs_change", style=p.style, blocks=blocks))


def _sensitivity(p: PlanInput) -> FigureSpec | None:
    summary, raw = p.table("sensitivity_summary"), p.table("sensitivity")
    if summary is None:
        return None
    layers = figures.ordered(raw if raw is not None else summary, "layer")
    return FigureSpec(
        "sensitivity", "Where in depth the perturbation grows",
        f"Relative change of matched block outputs, baseline vs SE twin, each under its own attack; means over "
        f"seeds with {interval_note(summary, confidence=p.style.confidence)}.",
        "Line charts per budget: relative change of each block's output against depth, one line per model.",
        ("sensitivity",),
        lambda path: figures.sensitivity(summary, path, style=p.style, layers=layers))


def _interventions(p: PlanInput) -> FigureSpec | None:
    summary, raw = p.table("interventions_summary"), p.table("interventions")
    if summary is None:
        return None
    blocks = [b for b in dict.fromkeys(raw["block"].dropna().astype(str))] if raw is not None else None
    return FigureSpec(
        "interventions", "Interventions on the excitations",
        f"Accuracy on adversarial images when the excitations are replaced, with means over seeds and "
        f"{interval_note(summary, confidence=p.style.confidence)}. Reference lines per twin: clean accuracy "
        f"(dashed) and accuracy under attack without intervention (dotted). A bar well above the dotted line "
        f"means the attack works through the excitations.",
        "Bar charts: accuracy under each intervention (all blocks; one block at a time) with error bars, and "
        "horizontal reference lines for clean and unintervened adversarial accuracy.",
        ("interventions",),
        lambda path: figures.interventions(summary, path, style=p.style, blocks=blocks))


def _training(p: PlanInput) -> FigureSpec | None:
    history = p.table("history")
    if history is None or not {"train_loss", "test_acc", "epoch"} <= set(history.columns):
        return None
    summary = p.summarize(history, ["model", "epoch"], ["train_loss", "test_acc"])
    return FigureSpec(
        "training", "Training",
        f"Training loss and clean test accuracy per epoch, means over seeds with "
        f"{interval_note(summary, confidence=p.style.confidence)}.",
        "Line charts: training loss and clean test accuracy against epoch, one line per model.",
        (),
        lambda path: figures.training_curves(summary, path, style=p.style))


#: The page's figures in reading order.
BUILDERS: tuple[Callable[[PlanInput], FigureSpec | None], ...] = (
    _robust, _paired, _examples, _shift, _damping, _noise_relative, _channels, _sensitivity, _interventions,
    _training)


def plan_figures(p: PlanInput) -> list[FigureSpec]:
    """Every figure the tables allow, in reading order (the examples spec has ``draw=None`` without examples)."""
    return [spec for spec in (build(p) for build in BUILDERS) if spec is not None]
