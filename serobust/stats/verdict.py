"""The verdict on the study's hypothesis H1: declared criteria, one decision rule, Holm, power, a headline.

H1 (see :data:`H1`) is a conjunction: the SE twin keeps more robust accuracy than its baseline (the
robustness criterion), and the mechanism the conjecture names is visible in the excitation shifts beyond
what L2-matched Gaussian noise does (the mechanism criteria). A gradient-masking guard can void a
robustness claim; the excitation detector is reported beside H1 (a use of the excitations, not part of
the conjecture: ``counts=False``).

Every criterion is a :class:`Criterion` labelled by one rule (:func:`serobust.stats.decisions.decide`): "supported"
when its interval lies wholly beyond the margin of practical size on the expected side, "opposite" when it
lies wholly beyond it on the wrong side, "not supported" when it rules out an effect of practical size in
the expected direction, else "inconclusive". Margins: ``min_effect`` (1 point) for robustness,
``mechanism_margin`` (5%) for the ratios, ``max_s_change`` for the excitation's change.

The robustness interval respects both sources of variation, training seeds and test images
(:func:`serobust.stats.intervals.crossed_mean_ci` on per-image correctness); without per-image data it falls back
to the seed-only t interval and says so. Budgets are chosen on the PAIR's mean accuracy
(:func:`serobust.stats.robust_accuracy.informative_mask`), which cannot favour either twin.

The overall outcome (:func:`decide_overall`): "supported" needs every counted criterion supported (an
intersection-union test, Berger 1982: level alpha without correction), with Holm's correction across
twins when a study has several; "not supported" and "opposite" need a criterion refuted after Holm's
correction across every counted criterion (of every twin), since those claims rest on ANY one criterion.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ..names import ADVERSARIAL, BASELINE, GAUSSIAN
from .checks import check_fraction, check_no_nan, require_columns
from .criteria import apply_guard, masking_guard, mechanism_criteria, robustness_criterion
from .criterion import Criterion, format_interval
from .decisions import OUTCOMES, holm
from .power import POWER
from .robust_accuracy import CEILING_GAP, FLOOR, eps_label, pick_se_model

__all__ = ["H1", "OUTCOMES", "MECHANISM_MARGIN", "Criterion", "Verdict", "verdict", "decide_overall"]

logger = logging.getLogger(__name__)

H1 = (
    "SE twins lose less accuracy under attack than their baselines AND the mechanism is visible beyond "
    "L2-matched Gaussian noise: z moves less relative to u, the gate damps more, and the excitation's own "
    "change absorbs the feature change (|d(s*u)| < |s du|), while s changes little; a robustness gain that "
    "fails a gradient-masking check on any seed does not count as support."
)

MECHANISM_MARGIN = 0.05
"""Practical margin of the mechanism ratios: a ratio counts as below 1 only when its interval is below 0.95."""

_PHRASE = {"opposite": "contradicted"}  # "H1 is contradicted", not "H1 is opposite"
_NAN = math.nan


# ----------------------------------------------------------------------------------------------------
# the typed verdict


@dataclass
class Verdict:
    """The verdict on H1 for one SE twin: declared criteria, the overall outcome and its reason, power."""

    hypothesis: str
    se_model: str
    baseline: str
    attack: str
    criteria: list[Criterion]
    settings: dict[str, Any]
    outcome: str = "inconclusive"
    reason: str = ""
    per_255: bool = False

    def criterion(self, cid: str) -> Criterion:
        """The criterion with id ``cid`` (KeyError naming the ids present)."""
        for c in self.criteria:
            if c.id == cid:
                return c
        raise KeyError(f"no criterion {cid!r}; criteria: {[c.id for c in self.criteria]}")

    @property
    def n_seeds(self) -> int:
        return self.criterion("robustness").n_seeds

    @property
    def power(self) -> dict[str, Any]:
        return self.criterion("robustness").extra.get("power", {})

    @property
    def headline(self) -> str:
        return _headline(self)

    @property
    def summary(self) -> str:
        conf = self.settings["confidence"]
        return f"H1 is {_PHRASE.get(self.outcome, self.outcome)} at the {conf:.0%} level ({self.reason}). " + \
            _criteria_text(self)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form results.json holds (``criteria`` as dicts)."""
        return {"hypothesis": self.hypothesis, "outcome": self.outcome, "headline": self.headline,
                "summary": self.summary, "criteria": [c.to_dict() for c in self.criteria],
                "n_seeds": self.n_seeds, "power": self.power, "settings": dict(self.settings)}


# ----------------------------------------------------------------------------------------------------
# the overall outcome


def decide_overall(verdicts: Sequence[Verdict], *, alpha: float) -> None:
    """Set every verdict's overall outcome and reason, and every counted criterion's ``p_holm``, in place.

    * "supported": every counted criterion of the twin is supported (intersection-union test: each at
      level alpha; Berger 1982), and, with several twins, the twin's IUT p value (the largest of its
      criteria's ``p_supported``) survives Holm's correction across twins;
    * "not supported": some counted criterion's "not supported" claim survives Holm's correction across
      every counted criterion of every twin (``p_holm < alpha``);
    * "opposite": as "not supported", with the robustness criterion's "opposite" claim surviving Holm in
      the same family (its ``p_opposite`` in place of its ``p_not_supported``);
    * else "inconclusive".
    """
    counted = [(v, c) for v in verdicts for c in v.criteria if c.counts]
    adj = holm([c.p_not_supported for _, c in counted]) if counted else np.empty(0)
    for (_, c), p in zip(counted, adj):
        c.p_holm = float(p)
    twin_p = [max((c.p_supported for c in v.criteria if c.counts), default=1.0) for v in verdicts]
    twin_adj = holm(twin_p)
    for i, v in enumerate(verdicts):
        mine = [c for c in v.criteria if c.counts]
        refuted = [c for c in mine if c.p_holm < alpha]
        rob = next((c for c in mine if c.id == "robustness"), None)
        opposite = False
        if rob is not None and rob in refuted:
            swapped = [c.p_opposite if c is rob else c.p_not_supported for _, c in counted]
            opposite = bool(holm(swapped)[[c is rob for _, c in counted].index(True)] < alpha)
        several = f" and across {len(verdicts)} twins" if len(verdicts) > 1 else ""
        if mine and all(c.outcome == "supported" for c in mine) and twin_adj[i] < alpha:
            v.outcome, v.reason = "supported", f"every criterion is supported{several}"
        elif opposite:
            v.outcome, v.reason = "opposite", ("opposite: robustness, the SE twin is less robust by more than the "
                                               f"margin (Holm-adjusted across {len(counted)} criteria)")
        elif refuted:
            v.outcome = "not supported"
            v.reason = "not supported: " + ", ".join(f"{c.id} ({c.outcome}, Holm p={c.p_holm:.2g})" for c in refuted)
        else:
            v.outcome = "inconclusive"
            open_ = [c.id for c in mine if c.outcome != "supported"]
            held = [f"{c.id} (p={c.p_not_supported:.2g}, Holm p={c.p_holm:.2g})"
                    for c in mine if c.outcome in ("not supported", "opposite")]
            v.reason = "inconclusive: " + ", ".join(open_)
            if all(c.outcome == "supported" for c in mine) and mine:
                v.reason = f"inconclusive: every criterion is supported, but not after Holm's correction{several}"
            if held:
                v.reason += "; not refuted after Holm's correction: " + ", ".join(held)


# ----------------------------------------------------------------------------------------------------
# texts


def _criteria_text(v: Verdict) -> str:
    """The summary paragraph after its first sentence: each criterion's outcome and numbers."""
    rob = v.criterion("robustness")
    mech = [c for c in v.criteria if c.role == "mechanism"]
    parts = [f"Robustness ({rob.outcome}): {rob.detail}"]
    if mech:
        parts.append(f"Mechanism, from {v.se_model}'s excitation shifts: " + "; ".join(
            f"{c.id} {format_interval(c.effect, c.ci_low, c.ci_high)} ({c.outcome})" for c in mech) + ".")
    for c in v.criteria:
        if c.role == "guard":
            parts.append(f"Gradient masking ({c.outcome}): {c.detail}.")
        elif c.role not in ("robustness", "mechanism"):
            parts.append(f"{c.id} ({c.outcome}; reported beside H1, not part of it): {c.detail}")
    return " ".join(parts)


def _headline(v: Verdict) -> str:
    """One plain sentence: where, the direction, the effect in points, its interval and n, and the power."""
    rob = v.criterion("robustness")
    tested = rob.extra.get("budgets_tested", [])
    label = lambda eps: eps_label(eps, per_255=v.per_255)  # noqa: E731
    n = rob.n_seeds
    seeds = f"{n} seed" + ("" if n == 1 else "s")
    power = rob.extra.get("power", {})
    if power.get("n_images"):
        seeds += f" x {power['n_images']} images"
    if not tested:
        return (f"No budget under {v.attack} was informative (the pair sits at the floor or at its clean accuracy "
                f"at every eps), so {'these' if n != 1 else 'this'} {seeds} cannot tell whether {v.se_model} is more or less robust than "
                f"{v.baseline}.")
    where = f"At the informative budget{'s' if len(tested) > 1 else ''} (eps {', '.join(label(e) for e in tested)})"
    effect, low, high = rob.effect, rob.ci_low, rob.ci_high
    points = f"{100 * abs(effect):.1f} percentage points"
    if effect > 0:
        claim = f"{v.se_model} is {points} more robust than {v.baseline}"
    elif effect < 0:
        claim = f"{v.se_model} is {points} less robust than {v.baseline}"
    else:
        claim = f"{v.se_model} is exactly as robust as {v.baseline}"
    if math.isnan(low) or math.isnan(high):
        interval = f"{seeds}, no interval"
    else:
        interval = f"{v.settings['confidence']:.0%} CI {100 * low:.1f} to {100 * high:.1f}, {seeds}"
        if low <= 0 <= high and effect != 0:
            interval += "; the interval includes 0"
    text = f"{where}, {claim} under {v.attack} ({interval})"
    mde = power.get("mde_planned", _NAN)
    mde = mde if mde == mde else power.get("mde", _NAN)
    if v.outcome != "supported" and mde == mde:
        text += f"; the study could have detected a gain of {100 * mde:.1f} points or more with {POWER:.0%} power"
    text += "."
    refuted = [c.id for c in v.criteria if c.counts and c.role == "mechanism" and c.p_holm == c.p_holm
               and c.p_holm < v.settings["alpha"] and c.outcome in ("not supported", "opposite")]
    if v.outcome in ("not supported", "opposite") and rob.outcome != v.outcome and refuted:
        # the badge says "not supported" while the sentence above is about robustness: say what decided it
        text += (f" H1 as a whole is {v.outcome}: its mechanism criteria {', '.join(refuted)} are refuted after "
                 "Holm's correction.")
    return text


# ----------------------------------------------------------------------------------------------------
# the verdict


def verdict(
    robust_table: pd.DataFrame,
    shift_table: pd.DataFrame | None,
    diagnostics: pd.DataFrame | None,
    *,
    per_example: pd.DataFrame | None = None,
    alpha: float = 0.05,
    min_effect: float = 0.01,
    baseline: str = BASELINE,
    se_model: str | None = None,
    attack: str = "pgd",
    adversarial_kind: str = ADVERSARIAL,
    noise_kind: str = GAUSSIAN,
    mechanism_margin: float = MECHANISM_MARGIN,
    max_s_change: float | None = 0.1,
    floor: float | None = FLOOR,
    ceiling_gap: float | None = CEILING_GAP,
    per_255: bool = False,
) -> Verdict:
    """Structured verdict on H1 (:data:`H1`) for one SE twin; ``.to_dict()`` is what results.json holds.

    Inputs:
        * ``robust_table``: per-seed long frame, columns ``seed``, ``model`` (``baseline`` and ``se_model``),
          ``attack``, ``eps`` (0 = clean), ``robust_acc`` (fraction); one row per (seed, model, attack, eps).
        * ``per_example``: per-image correctness (``evaluate(per_example=True)``: ``seed, model, attack, eps,
          index, robust_correct``), the same images in every seed. With it the robustness interval covers
          seeds AND test images (:func:`serobust.stats.intervals.crossed_mean_ci`); without it, or when it does not
          cover every tested cell, the seed-only t interval is used and the detail says so.
        * ``shift_table``: the SE model's excitation shifts, columns ``seed``, ``kind``, ``eps``, ``block``,
          ``z_over_u``, ``damping_ratio``, ``s_rel_change`` and (optional) ``absorb_ratio``; optional
          ``model`` (filtered to ``se_model``); rows at eps = 0 are ignored. None: mechanism inconclusive.
        * ``diagnostics``: gradient-masking checks, columns ``model``, ``check``, ``passed`` and optional
          ``seed`` (then every seed of the study must be checked); None: none run.

    Criteria (declared list, in this order; ``counts``: part of H1 and of the Holm family):
        * ``robustness``: SE minus baseline robust accuracy under ``attack``, averaged over the informative
          budgets (the pair's mean accuracy neither at the floor nor at the ceiling), expected above
          ``min_effect``; ``per_eps`` labels every budget by the same rule (descriptive); ``power`` holds
          the minimum detectable effect at 80% power and the variance components.
        * mechanism (each expected below a threshold by ``mechanism_margin``, from the per-seed values):
          ``global_state_stable`` (z_over_u attack / gaussian), ``gate_damps`` (damping ratio attack /
          gaussian), ``gate_absorbs`` (absorb_ratio under attack), ``gate_absorbs_beyond_noise``
          (absorb_ratio attack / gaussian), ``excitation_stable`` (s_rel_change < ``max_s_change``; it
          cannot be "opposite").
        * ``gradient_masking`` (guard, not counted): voids a robustness gain when any check of either model
          fails on any seed (or did not run); a failed baseline check voids a loss.

    Overall: :func:`decide_overall` (intersection-union for "supported", Holm for the negative claims).

    Args:
        alpha: 1 - confidence of every interval, and the family-wise level of the overall outcome.
        min_effect: margin of practical size for robustness (fraction, 0.01 = 1 point).
        baseline, se_model: ``model`` values; ``se_model=None`` picks the only non-baseline model.
        attack: the main attack's ``attack`` value.
        adversarial_kind, noise_kind: ``kind`` values of the attack's and of the noise control's rows
            (the L2-matched Gaussian control by default).
        mechanism_margin: practical margin of the mechanism ratios (0.05: below 0.95 to count).
        max_s_change: threshold of ``excitation_stable``; None leaves that criterion out.
        floor, ceiling_gap: the informative-budget rules (None switches one off).
        per_255: write budgets as ``k/255`` in the texts where they are (CIFAR-style budgets).

    Raises:
        ValueError: missing columns (listed), empty frames, NaN in used columns, unknown attack/kind/model,
            bad alpha, min_effect, mechanism_margin, max_s_change, floor or ceiling_gap.
    """
    _check_options(alpha=alpha, min_effect=min_effect, max_s_change=max_s_change, floor=floor, gap=ceiling_gap,
                   margin=mechanism_margin)
    confidence = 1.0 - float(alpha)
    label = lambda eps: eps_label(eps, per_255=per_255)  # noqa: E731
    require_columns(robust_table, ["seed", "model", "attack", "eps", "robust_acc"], "robust_table", check_nan=False)
    check_no_nan(robust_table, ["seed", "model", "attack", "eps"], "robust_table")
    se_model = pick_se_model(list(map(str, pd.unique(robust_table["model"]))), baseline, se_model)
    rob = robustness_criterion(robust_table, per_example, baseline=baseline, se_model=se_model, attack=attack,
                      min_effect=float(min_effect), floor=floor, ceiling_gap=ceiling_gap, confidence=confidence,
                      label=label)
    seeds = sorted(set(robust_table.loc[robust_table["model"] == se_model, "seed"]))
    guard, failed_base = masking_guard(diagnostics, baseline=baseline, se_model=se_model, seeds=seeds)
    apply_guard(rob, guard, failed_base, label)
    mechanism = mechanism_criteria(shift_table, se_model=se_model, adversarial_kind=adversarial_kind, noise_kind=noise_kind,
                           margin=float(mechanism_margin), max_s_change=max_s_change, confidence=confidence)
    settings = {
        "alpha": float(alpha), "confidence": confidence, "min_effect": float(min_effect), "baseline": baseline,
        "se_model": se_model, "attack": attack, "adversarial_kind": adversarial_kind, "noise_kind": noise_kind,
        "mechanism_margin": float(mechanism_margin), "power": POWER,
        "max_s_change": None if max_s_change is None else float(max_s_change),
        "floor": None if floor is None else float(floor),
        "ceiling_gap": None if ceiling_gap is None else float(ceiling_gap),
        "interval": rob.extra["method"],
    }
    v = Verdict(H1, se_model, baseline, attack, [rob, *mechanism, guard], settings, per_255=per_255)
    decide_overall([v], alpha=float(alpha))
    logger.info("verdict on H1 for %s: %s", se_model, v.outcome)
    return v


def _check_options(*, alpha: Any, min_effect: Any, max_s_change: Any, floor: Any, gap: Any, margin: Any) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise InputError(f"alpha must be in (0, 1), e.g. 0.05, got {alpha!r}")
    check_fraction("min_effect", min_effect, example="0.01")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 1:
        raise InputError(f"mechanism_margin must be a fraction in [0, 1) (e.g. 0.05), got {margin!r}")
    if max_s_change is not None and (
        isinstance(max_s_change, bool) or not isinstance(max_s_change, (int, float)) or not max_s_change > 0
    ):
        raise InputError(
            f"max_s_change must be a positive relative change (e.g. 0.1) or None, got {max_s_change!r}"
        )
    check_fraction("floor", floor, optional=True)
    check_fraction("ceiling_gap", gap, optional=True)
