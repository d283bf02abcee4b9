"""The verdict on the study's hypothesis H1: declared criteria, one decision rule, Holm, power, a headline.

H1 (see :data:`H1`) is a conjunction: the SE twin keeps more robust accuracy than its baseline (the
robustness criterion), and the mechanism the conjecture names is visible in the excitation shifts beyond
what L2-matched Gaussian noise does (the mechanism criteria). A gradient-masking guard can void a
robustness claim; the excitation detector is reported beside H1 (a use of the excitations, not part of
the conjecture: ``counts=False``).

Every criterion is a :class:`Criterion` labelled by one rule (:func:`serobust.stats.decide`): "supported"
when its interval lies wholly beyond the margin of practical size on the expected side, "opposite" when it
lies wholly beyond it on the wrong side, "not supported" when it rules out an effect of practical size in
the expected direction, else "inconclusive". Margins: ``min_effect`` (1 point) for robustness,
``mechanism_margin`` (5%) for the ratios, ``max_s_change`` for the excitation's change.

The robustness interval respects both sources of variation, training seeds and test images
(:func:`serobust.stats.crossed_mean_ci` on per-image correctness); without per-image data it falls back
to the seed-only t interval and says so. Budgets are chosen on the PAIR's mean accuracy
(:func:`serobust.robust_accuracy.informative_mask`), which cannot favour either twin.

The overall outcome (:func:`decide_overall`): "supported" needs every counted criterion supported (an
intersection-union test, Berger 1982: level alpha without correction), with Holm's correction across
twins when a study has several; "not supported" and "opposite" need a criterion refuted after Holm's
correction across every counted criterion (of every twin), since those claims rest on ANY one criterion.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from .errors import InputError
from .names import ADVERSARIAL, BASELINE, GAUSSIAN
from .robust_accuracy import (
    CEILING_GAP,
    FLOOR,
    _attack_rows,
    _check_fraction,
    _clean_by_seed,
    _paired_cells,
    eps_label,
    informative_mask,
    per_image_arrays,
    robustness_test,
)
from .stats import (
    OUTCOMES,
    POWER,
    _check_flags,
    _check_no_nan,
    _require_columns,
    claim_p_values,
    decide,
    holm,
    judge,
    minimum_detectable_effect,
    planned_mde,
)

__all__ = ["H1", "OUTCOMES", "MECHANISM_MARGIN", "Criterion", "Verdict", "judge", "verdict", "decide_overall"]

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
# the typed criterion and verdict


@dataclass
class Criterion:
    """One declared criterion of the verdict, with its estimate, interval, outcome and claim p values.

    ``counts``: part of H1's conjunction (and of the Holm family); False for the guard and the detector.
    ``p_supported``, ``p_not_supported``, ``p_opposite``: p values of the three claims of
    :func:`serobust.stats.decide` (``p < alpha`` exactly when the interval makes that claim);
    ``p_holm``: the Holm-adjusted p of its "not supported" claim across the study's counted criteria
    (set by :func:`decide_overall`). ``extra``: criterion-specific fields (robustness: ``per_eps``,
    ``budgets_tested``, ``budgets_dropped``, ``power``, ``method``).
    """

    id: str
    role: str
    statement: str
    outcome: str = "inconclusive"
    effect: float = _NAN
    ci_low: float = _NAN
    ci_high: float = _NAN
    n_seeds: int = 0
    detail: str = ""
    counts: bool = True
    p_supported: float = 1.0
    p_not_supported: float = 1.0
    p_opposite: float = 1.0
    p_holm: float = _NAN
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise InputError(f"criterion {self.id!r}: outcome must be one of {list(OUTCOMES)}, got {self.outcome!r}")
        for key in ("effect", "ci_low", "ci_high", "p_supported", "p_not_supported", "p_opposite", "p_holm"):
            setattr(self, key, float(getattr(self, key)))
        self.n_seeds = int(self.n_seeds)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (results.json): the fields, then ``extra``'s keys at the top level."""
        out = {k: getattr(self, k) for k in ("id", "role", "statement", "outcome", "effect", "ci_low", "ci_high",
                                             "n_seeds", "detail", "counts", "p_supported", "p_not_supported",
                                             "p_opposite", "p_holm")}
        return {**out, **self.extra}


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
# small helpers


def _fmt(effect: float, low: float, high: float) -> str:
    return f"{effect:.3g} [{low:.3g}, {high:.3g}]"


def _pp(value: float) -> str:
    return f"{100 * value:+.1f}"


def _resolve_se_model(models: list[str], baseline: str, se_model: str | None) -> str:
    if baseline not in models:
        raise InputError(f"robust_table has no rows with model == {baseline!r}; models present: {models}")
    others = [m for m in models if m != baseline]
    if se_model is None:
        if len(others) != 1:
            raise InputError(
                f"robust_table holds several SE models {others}; pass se_model= to choose the one to judge"
            )
        return others[0]
    if se_model not in others:
        raise InputError(f"robust_table has no rows with model == {se_model!r}; models present: {models}")
    return se_model


@dataclass(frozen=True)
class _Estimate:
    """An estimate with its interval, standard error and degrees of freedom (for p values and power)."""

    effect: float
    low: float
    high: float
    se: float
    df: float
    n_seeds: int
    n_images: int
    method: str
    components: dict[str, float] = field(default_factory=dict)


def _seed_only(d: np.ndarray, confidence: float) -> _Estimate:
    """t interval across seeds of per-seed values; zero spread gives no interval (never zero width)."""
    n = int(d.size)
    mean = float(d.mean()) if n else _NAN
    sd = float(d.std(ddof=1)) if n > 1 else _NAN
    if n < 2 or not sd > 0:
        return _Estimate(mean, _NAN, _NAN, _NAN, _NAN, n, 0, "t across seeds")
    se = sd / math.sqrt(n)
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * se
    return _Estimate(mean, mean - half, mean + half, se, float(n - 1), n, 0, "t across seeds")


def _from_test(res: dict[str, np.ndarray]) -> _Estimate:
    comp = {"var_seed": float(res["var_seed"]), "var_image": float(res["var_image"]),
            "var_residual": float(res["var_residual"])}
    return _Estimate(float(res["mean"]), float(res["ci_low"]), float(res["ci_high"]), float(res["se"]),
                     float(res["df"]), int(res["n_seeds"]), int(res["n_images"]), "crossed seeds x images", comp)


def _p_zero(e: _Estimate) -> float:
    """Two-sided p of 'no difference' (descriptive)."""
    if not e.se > 0:
        return _NAN
    return float(2 * sps.t.sf(abs(e.effect) / e.se, e.df))


def _claims(e: _Estimate, *, expect: str = "above", threshold: float = 0.0, margin: float = 0.0) -> dict[str, float]:
    p = claim_p_values(e.effect, e.se, e.df, expect=expect, threshold=threshold, margin=margin)
    return {f"p_{k}": float(v) for k, v in p.items()}


# ----------------------------------------------------------------------------------------------------
# robustness


def _budget_reasons(pair: pd.DataFrame, clean: float, mask: np.ndarray, *, baseline: str, se_model: str,
                    floor: float | None, gap: float | None) -> list[str | None]:
    out: list[str | None] = []
    for (_eps, row), keep in zip(pair.iterrows(), mask):
        if keep:
            out.append(None)
            continue
        acc = (row[baseline] + row[se_model]) / 2
        both = f"{baseline} {row[baseline]:.1%}, {se_model} {row[se_model]:.1%}"
        if floor is not None and acc <= floor:
            out.append(f"at the floor: the pair keeps {acc:.1%} on average ({both}; floor {floor:.1%})")
        else:
            out.append(f"at the ceiling: the pair keeps {acc:.1%} on average ({both}), within {gap:.1%} of its "
                       f"clean accuracy {clean:.1%}")
    return out


def _robustness(
    robust_table: pd.DataFrame, per_example: pd.DataFrame | None, *, baseline: str, se_model: str, attack: str,
    min_effect: float, floor: float | None, ceiling_gap: float | None, confidence: float,
    label: Callable[[float], str],
) -> Criterion:
    """The robustness criterion on the informative budgets, per-budget labels (descriptive) and power."""
    rows = _attack_rows(robust_table[robust_table["model"].isin([baseline, se_model])], attack, "robust_table")
    if not (rows["eps"] > 0).any():
        raise InputError(f"robust_table has no {attack!r} rows with eps > 0; robustness is judged at eps > 0")
    cells = _paired_cells(rows, baseline, se_model, attack=attack)  # (seed, eps) x [baseline, se]
    seeds = sorted(set(cells.index.get_level_values("seed")))
    cells = cells[cells.index.get_level_values("seed").isin(seeds)]
    eps_all = sorted(float(e) for e in set(cells.index.get_level_values("eps")))
    complete = cells.groupby(level="eps").size()
    eps_all = [e for e in eps_all if complete.get(e, 0) == len(seeds)]  # budgets scored in every seed
    cells = cells[cells.index.get_level_values("eps").isin(eps_all)]
    pair = cells.groupby(level="eps").mean()  # (eps, 2) means over seeds
    cleans = [_clean_by_seed(rows, m) for m in (baseline, se_model)]
    clean = _NAN if any(c is None for c in cleans) else float((cleans[0].mean() + cleans[1].mean()) / 2)
    pair_acc = pair.mean(axis=1).to_numpy()
    mask = informative_mask(pair_acc, None if math.isnan(clean) else clean, floor=floor, ceiling_gap=ceiling_gap)
    reasons = _budget_reasons(pair, clean, mask, baseline=baseline, se_model=se_model, floor=floor, gap=ceiling_gap)
    tested = [e for e, k in zip(eps_all, mask) if k]
    dropped = [{"eps": e, "reason": r} for e, r in zip(eps_all, reasons) if r is not None]
    base, se, why_not = per_image_arrays(per_example, attack=attack, baseline=baseline, se_model=se_model, seeds=seeds,
                                   eps=eps_all)
    per_seed = cells.unstack("eps")  # (seeds, [model x eps])

    def estimate(which: list[float]) -> _Estimate:
        if base.size:
            keep = np.isin(eps_all, which)
            return _from_test(robustness_test(base, se, informative=keep, min_effect=min_effect,
                                              confidence=confidence))
        d = np.mean([per_seed[(se_model, e)].to_numpy() - per_seed[(baseline, e)].to_numpy() for e in which], axis=0)
        return _seed_only(d, confidence)

    statement = (f"Under {attack} at the informative budgets, {se_model} keeps more robust accuracy than {baseline} "
                 f"by more than {100 * min_effect:g} percentage points (the interval lies wholly above {min_effect:g}).")
    per_eps = []
    for e, reason in zip(eps_all, reasons):
        est = estimate([e])
        per_eps.append({"eps": e, "outcome": str(decide(est.low, est.high, margin=min_effect)[()]),
                        "effect": est.effect, "ci_low": est.low, "ci_high": est.high, "n_seeds": est.n_seeds,
                        "n_images": est.n_images, "p_value": _p_zero(est), "informative": reason is None,
                        "reason": reason, "descriptive": True})
    method_note = ("interval over seeds and test images (crossed random effects, per-image correctness)"
                   if base.size else f"seed-only t interval: {why_not}, so test-image variation is not in it")
    extra: dict[str, Any] = {"per_eps": per_eps, "budgets_tested": tested, "budgets_dropped": dropped,
                             "method": "crossed seeds x images" if base.size else "t across seeds"}
    drop_text = "; ".join(f"eps {label(d['eps'])} {d['reason']}" for d in dropped)
    n_seeds = len(seeds)
    if not tested:
        why = f"no informative budget ({drop_text})" if dropped else "no budget scored for both models in every seed"
        extra["power"] = {}
        return Criterion("robustness", "robustness", statement, "inconclusive", n_seeds=n_seeds,
                         detail=f"Robustness cannot be tested: {why}.", extra=extra)
    est = estimate(tested)
    outcome, why = judge(est.effect, est.low, est.high, min_effect=min_effect)
    if outcome == "opposite":
        why += f": {se_model} is less robust than {baseline} by more than the margin"
    alpha = 1.0 - confidence
    mde = float(minimum_detectable_effect(est.se, est.df, alpha=alpha, margin=min_effect)) if est.se > 0 else _NAN
    power = {"mde": mde, "power": POWER, "alpha": round(alpha, 12), "margin": min_effect, "se": est.se, "df": est.df,
             "n_seeds": est.n_seeds, "n_images": est.n_images, "method": extra["method"], **est.components}
    if est.components and all(math.isfinite(v) for v in est.components.values()):
        power["planning"] = [
            {"seeds": n, "images": m, "mde": planned_mde(est.components["var_seed"], est.components["var_image"],
                                                         est.components["var_residual"], n, m, alpha=alpha,
                                                         margin=min_effect)}
            for n, m in sorted({(est.n_seeds, est.n_images), (3, est.n_images), (5, est.n_images),
                                (10, est.n_images), (est.n_seeds, 1000), (5, 1000)})]
        own = [row["mde"] for row in power["planning"]
               if (row["seeds"], row["images"]) == (est.n_seeds, est.n_images)]
        # the simulated MDE at the study's own size: the analytic one uses the measured SE as if it were the
        # true one, which with 2-4 degrees of freedom is optimistic (benchmarks/verdict_calibration.py)
        power["mde_planned"] = own[0] if own else _NAN
    extra["power"] = power
    size = f"{est.n_seeds} seeds x {est.n_images} images" if est.n_images else f"{est.n_seeds} seeds"
    dof = f", {est.df:.3g} df" if est.df == est.df else ""
    detail = (f"{se_model} minus {baseline} {attack} robust accuracy, averaged over the informative budgets eps in "
              f"({', '.join(label(e) for e in tested)}): {_fmt(est.effect, est.low, est.high)} ({method_note}; "
              f"{size}{dof}); {why}.")
    planned = power.get("mde_planned", _NAN)
    if planned == planned:
        detail += (f" With {POWER:.0%} power the study detects a gain of {100 * planned:.1f} points or more (simulated "
                   f"from its variance components; the analytic estimate, optimistic with few seeds, is "
                   f"{100 * mde:.1f}).")
    elif mde == mde:
        detail += f" With {POWER:.0%} power the study detects a gain of {100 * mde:.1f} points or more."
    elif not base.size and est.n_seeds > 1:
        detail += " The per-seed differences coincide, and without per-image results there is no interval to give."
    if dropped:
        detail += f" Not tested: {drop_text}."
    if math.isnan(clean) and ceiling_gap is not None:
        detail += " No clean accuracy (eps = 0 rows) was given, so no budget was checked against the ceiling."
    return Criterion("robustness", "robustness", statement, outcome, est.effect, est.low, est.high, n_seeds,
                     detail, **_claims(est, margin=min_effect), extra=extra)


# ----------------------------------------------------------------------------------------------------
# the gradient-masking guard


def _masking_guard(diagnostics: pd.DataFrame | None, *, baseline: str, se_model: str,
                   seeds: Sequence[Any]) -> tuple[Criterion, list[str]]:
    """The gradient-masking guard over every seed, and the baseline's failed checks."""
    statement = f"No gradient-masking check fails for {se_model} or {baseline} on any seed."
    guard = Criterion("gradient_masking", "guard", statement, counts=False)
    if diagnostics is None:
        guard.detail = "no diagnostics given; run serobust.masking_diagnostics on both models"
        return guard, []
    _require_columns(diagnostics, ["model", "check", "passed"], "diagnostics")
    passed = _check_flags(diagnostics, "passed", "diagnostics")
    has_seed = "seed" in diagnostics.columns

    def failed(model: str) -> list[str]:
        bad = diagnostics[(diagnostics["model"] == model) & ~passed]
        if has_seed:
            return sorted({f"{c} (seed {s})" for c, s in zip(bad["check"], bad["seed"])})
        return sorted(set(map(str, bad["check"])))

    failed_se, failed_base = failed(se_model), failed(baseline)
    n_rows = {m: int((diagnostics["model"] == m).sum()) for m in (se_model, baseline)}
    uncovered = []
    if has_seed:
        for m in (se_model, baseline):
            ran = set(diagnostics.loc[diagnostics["model"] == m, "seed"])
            missing = [s for s in seeds if s not in ran]
            if missing:
                uncovered.append(f"{m} has no checks for seed(s) {missing}")
    guard.effect = float(len(failed_se) + len(failed_base))
    guard.n_seeds = len(set(diagnostics["seed"])) if has_seed else 0
    if failed_se or failed_base:
        guard.outcome = "not supported"
        guard.detail = "failed checks: " + ", ".join([f"{se_model}: {c}" for c in failed_se]
                                                    + [f"{baseline}: {c}" for c in failed_base])
    elif n_rows[se_model] == 0:
        guard.detail = f"no diagnostics rows for {se_model!r}; run serobust.masking_diagnostics on it"
    elif uncovered:
        guard.detail = ("every check that ran passed, but " + "; ".join(uncovered)
                        + ": a check that did not run cannot clear that seed")
    else:
        guard.outcome = "supported"
        where = f" on {guard.n_seeds} seed(s)" if has_seed else ""
        guard.detail = (f"all {sum(n_rows.values())} checks passed{where} ({n_rows[se_model]} for {se_model}, "
                        f"{n_rows[baseline]} for {baseline})")
    return guard, failed_base


def _apply_guard(rob: Criterion, guard: Criterion, failed_base: list[str], label: Callable) -> None:
    """Void what the guard forbids: an unguarded gain, or a loss when the baseline's checks failed.

    A masked baseline inflates its own robust accuracy, which could create an apparent loss; a masked SE
    twin only inflates the SE side, so it voids a gain, never a loss. Per-budget labels follow.
    """
    def guarded(outcome: str) -> tuple[str, str]:
        if outcome == "supported" and guard.outcome != "supported":
            return "inconclusive", f"Downgraded from supported: gradient-masking guard {guard.outcome} ({guard.detail})."
        if outcome in ("not supported", "opposite") and failed_base:
            return "inconclusive", (f"Downgraded from {outcome}: the baseline failed {', '.join(failed_base)}, so "
                                    "its robust accuracy may be inflated.")
        return outcome, ""

    rob.outcome, note = guarded(rob.outcome)
    if guard.outcome != "supported":
        rob.p_supported = 1.0  # no support claim without the guard
    if failed_base:
        rob.p_not_supported = rob.p_opposite = 1.0  # nor a loss claim against a masked baseline
    if note:
        rob.detail += f" {note}"
    per_eps = rob.extra.get("per_eps", [])
    for p in per_eps:
        p["outcome"], _ = guarded(p["outcome"])
    if per_eps:
        labels = [f"{label(p['eps'])}: {_pp(p['effect'])} pp ({p['outcome']}{'' if p['informative'] else ', not tested'})"
                  for p in per_eps]
        rob.detail += " Per eps (descriptive, not corrected for the number of budgets): " + "; ".join(labels) + "."


# ----------------------------------------------------------------------------------------------------
# mechanism


@dataclass(frozen=True)
class _Spec:
    id: str
    column: str
    relative: bool  # attack / Gaussian-noise ratio on matched (seed, eps, block) cells
    threshold: float
    margin: float
    statement: str
    label: str
    opposite: str  # what "opposite" means; "" when it cannot be (then "not supported")


def _mechanism_specs(max_s_change: float | None, noise_kind: str, margin: float) -> list[_Spec]:
    lo = 1 - margin
    specs = [
        _Spec("global_state_stable", "z_over_u", True, 1.0, margin,
              f"The squeeze z moves less relative to the feature map u under attack than under {noise_kind} noise of "
              f"the same L2 size: z_over_u(attack) / z_over_u({noise_kind}) < {lo:g}.",
              f"z_over_u, attack / {noise_kind}", f"z moves more under attack than under {noise_kind} noise"),
        _Spec("gate_damps", "damping_ratio", True, 1.0, margin,
              f"The gate damps the attack more than {noise_kind} noise of the same L2 size: "
              f"damping_ratio(attack) / damping_ratio({noise_kind}) < {lo:g}.",
              f"damping ratio, attack / {noise_kind}", f"the gate damps {noise_kind} noise more than the attack"),
        _Spec("gate_absorbs", "absorb_ratio", False, 1.0, margin,
              f"The excitation's own change absorbs the feature change under attack: absorb_ratio = "
              f"|d(s*u)| / |s du| < {lo:g} (a frozen gate gives exactly 1).",
              "absorb ratio under attack", "the excitation's change adds to the feature change"),
        _Spec("gate_absorbs_beyond_noise", "absorb_ratio", True, 1.0, margin,
              f"The gate absorbs the attack more than {noise_kind} noise of the same L2 size: "
              f"absorb_ratio(attack) / absorb_ratio({noise_kind}) < {lo:g}.",
              f"absorb ratio, attack / {noise_kind}", f"the gate absorbs {noise_kind} noise more than the attack"),
    ]  # fmt: skip
    if max_s_change is not None:
        specs.append(_Spec("excitation_stable", "s_rel_change", False, float(max_s_change), 0.0,
                           f"The excitation s changes little under attack: relative change of s < {max_s_change:g}.",
                           "relative change of s under attack", ""))
    return specs


def _mechanism(shift_table: pd.DataFrame | None, *, se_model: str, adversarial_kind: str, noise_kind: str,
               margin: float, max_s_change: float | None, confidence: float) -> list[Criterion]:
    """The mechanism criteria from the SE model's excitation shifts; each expects a value below its threshold."""
    specs = _mechanism_specs(max_s_change, noise_kind, margin)

    def unjudged(s: _Spec, detail: str) -> Criterion:
        return Criterion(s.id, "mechanism", s.statement, detail=detail)

    if shift_table is None:
        return [unjudged(s, "no excitation shifts given; run the probe") for s in specs]
    _require_columns(shift_table, ["seed", "kind", "eps", "block", "z_over_u", "damping_ratio", "s_rel_change"],
                     "shift_table", check_nan=False)
    _check_no_nan(shift_table, ["seed", "kind", "eps", "block"], "shift_table")
    shifts = shift_table
    if "model" in shifts.columns:
        present = list(pd.unique(shifts["model"]))
        shifts = shifts[shifts["model"] == se_model]
        if shifts.empty:
            raise InputError(f"shift_table has no rows with model == {se_model!r}; models present: {present}")
    kinds = sorted(map(str, pd.unique(shifts["kind"])))
    shifts = shifts[shifts["eps"] > 0]  # ratios are undefined at eps = 0
    adv = shifts[shifts["kind"] == adversarial_kind]
    if adv.empty:
        raise InputError(f"shift_table has no rows with kind == {adversarial_kind!r} at eps > 0; kinds present: "
                         f"{kinds} (pass adversarial_kind= to name the attack's rows)")
    _check_no_nan(adv, ["z_over_u", "damping_ratio", "s_rel_change"], f"shift_table ({adversarial_kind} rows)")
    noise = shifts[shifts["kind"] == noise_kind]
    cells = ["seed", "eps", "block"]
    out = []
    for s in specs:
        if s.column not in shifts.columns:
            out.append(unjudged(s, f"the shift table has no {s.column!r} column (it comes with the absorb-ratio "
                                   "shift metrics); not judged"))
            continue
        a = adv.dropna(subset=[s.column]).groupby(cells)[s.column].mean()
        if s.relative:
            if noise.empty:
                out.append(unjudged(s, f"no {noise_kind!r} rows at eps > 0 in shift_table (kinds present: {kinds}); "
                                       "run the L2-matched Gaussian control"))
                continue
            b = noise.dropna(subset=[s.column]).groupby(cells)[s.column].mean()
            paired = pd.concat([a.rename("adv"), b.rename("noise")], axis=1, join="inner")
            paired = paired[(paired["adv"] > 0) & (paired["noise"] > 0)]
            if paired.empty:
                out.append(unjudged(s, f"no (seed, eps, block) cell has both {adversarial_kind!r} and {noise_kind!r} "
                                       f"values of {s.column}"))
                continue
            # geometric mean of the per-cell ratio within each seed: one value per seed
            per_seed = np.exp(np.log(paired["adv"] / paired["noise"]).groupby(level="seed").mean())
            extra = (f"; attack {paired['adv'].mean():.3g} vs {noise_kind} {paired['noise'].mean():.3g} on "
                     f"{len(paired)} matched cells")
            where = "per seed the geometric mean over matched (eps, block) cells"
        else:
            per_seed = a.groupby(level="seed").mean()
            extra, where = "", f"under {adversarial_kind}, per seed the mean over (eps, block) cells"
        est = _seed_only(per_seed.to_numpy(dtype=np.float64), confidence)
        outcome, why = judge(est.effect, est.low, est.high, expect="below", threshold=s.threshold, min_effect=s.margin)
        if outcome == "opposite":
            if s.opposite:
                why += f": {s.opposite}"
            else:
                outcome = "not supported"
        p = _claims(est, expect="below", threshold=s.threshold, margin=s.margin)
        if not s.opposite:
            p["p_opposite"] = 1.0
        detail = (f"{s.label}, {where}: {_fmt(est.effect, est.low, est.high)} (t interval across {est.n_seeds} seeds; "
                  f"the shift table has no per-image values{extra}); {why}.")
        out.append(Criterion(s.id, "mechanism", s.statement, outcome, est.effect, est.low, est.high, est.n_seeds,
                             detail, **p))
    return out


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
            f"{c.id} {_fmt(c.effect, c.ci_low, c.ci_high)} ({c.outcome})" for c in mech) + ".")
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
          seeds AND test images (:func:`serobust.stats.crossed_mean_ci`); without it, or when it does not
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
    _require_columns(robust_table, ["seed", "model", "attack", "eps", "robust_acc"], "robust_table", check_nan=False)
    _check_no_nan(robust_table, ["seed", "model", "attack", "eps"], "robust_table")
    se_model = _resolve_se_model(list(map(str, pd.unique(robust_table["model"]))), baseline, se_model)
    rob = _robustness(robust_table, per_example, baseline=baseline, se_model=se_model, attack=attack,
                      min_effect=float(min_effect), floor=floor, ceiling_gap=ceiling_gap, confidence=confidence,
                      label=label)
    seeds = sorted(set(robust_table.loc[robust_table["model"] == se_model, "seed"]))
    guard, failed_base = _masking_guard(diagnostics, baseline=baseline, se_model=se_model, seeds=seeds)
    _apply_guard(rob, guard, failed_base, label)
    mechanism = _mechanism(shift_table, se_model=se_model, adversarial_kind=adversarial_kind, noise_kind=noise_kind,
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
    _check_fraction("min_effect", min_effect, example="0.01")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 1:
        raise InputError(f"mechanism_margin must be a fraction in [0, 1) (e.g. 0.05), got {margin!r}")
    if max_s_change is not None and (
        isinstance(max_s_change, bool) or not isinstance(max_s_change, (int, float)) or not max_s_change > 0
    ):
        raise InputError(
            f"max_s_change must be a positive relative change (e.g. 0.1) or None, got {max_s_change!r}"
        )
    _check_fraction("floor", floor, optional=True)
    _check_fraction("ceiling_gap", gap, optional=True)
