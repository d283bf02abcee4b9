"""The criteria of the verdict on H1, each built from the study's tables into a typed :class:`Criterion`.

* :func:`robustness_criterion`: SE minus baseline robust accuracy on the informative budgets, with the
  crossed seeds x images interval from per-image correctness (else the seed-only t interval), per-budget
  labels (descriptive) and its power;
* :func:`masking_guard` and :func:`apply_guard`: the gradient-masking checks over every seed, and what
  they void (an unguarded gain; a loss against a masked baseline);
* :func:`mechanism_criteria`: the excitation-shift ratios of the SE model, attack against L2-matched
  Gaussian noise, each expected below its threshold by a margin.

Every criterion is labelled by one rule (:func:`serobust.stats.decisions.judge`); the verdict
(:func:`serobust.stats.verdict.verdict`) assembles them and decides the overall outcome.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..errors import InputError
from .checks import check_flags, check_no_nan, require_columns
from .criterion import Criterion, format_interval
from .decisions import claim_p_values, decide, judge
from .per_image import per_image_arrays
from .power import POWER, minimum_detectable_effect, planned_mde
from .robust_accuracy import (
    attack_rows,
    budget_reasons,
    informative_mask,
    pair_clean,
    paired_cells,
    robustness_test,
)

__all__ = ["robustness_criterion", "masking_guard", "apply_guard", "mechanism_criteria"]

_NAN = math.nan


# ----------------------------------------------------------------------------------------------------
# an estimate with its interval


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


def _pp(value: float) -> str:
    return f"{100 * value:+.1f}"


# ----------------------------------------------------------------------------------------------------
# robustness


@dataclass(frozen=True)
class _Budgets:
    """The budgets scored for both twins in every seed, their per-seed cells, and why a budget is not tested.

    ``cells``: robust accuracy per (seed, eps) for ``[baseline, se_model]``; ``reasons[i]`` is None when
    ``eps[i]`` is informative (tested), else why it is dropped; ``clean``: the pair's mean clean accuracy
    (NaN when unknown).
    """

    seeds: list[Any]
    eps: list[float]
    cells: pd.DataFrame
    clean: float
    reasons: list[str | None]

    @property
    def tested(self) -> list[float]:
        return [e for e, r in zip(self.eps, self.reasons) if r is None]

    @property
    def dropped(self) -> list[dict[str, Any]]:
        return [{"eps": e, "reason": r} for e, r in zip(self.eps, self.reasons) if r is not None]


def _budgets(robust_table: pd.DataFrame, *, baseline: str, se_model: str, attack: str, floor: float | None,
             ceiling_gap: float | None) -> _Budgets:
    """The budgets scored for both twins in every seed, and which are informative on the pair's mean accuracy."""
    rows = attack_rows(robust_table[robust_table["model"].isin([baseline, se_model])], attack, "robust_table")
    if not (rows["eps"] > 0).any():
        raise InputError(f"robust_table has no {attack!r} rows with eps > 0; robustness is judged at eps > 0")
    cells = paired_cells(rows, baseline, se_model, attack=attack)  # (seed, eps) x [baseline, se]
    seeds = sorted(set(cells.index.get_level_values("seed")))
    eps_all = sorted(float(e) for e in set(cells.index.get_level_values("eps")))
    complete = cells.groupby(level="eps").size()
    eps_all = [e for e in eps_all if complete.get(e, 0) == len(seeds)]  # budgets scored in every seed
    cells = cells[cells.index.get_level_values("eps").isin(eps_all)]
    pair = cells.groupby(level="eps").mean()  # (eps, 2) means over seeds
    clean = pair_clean(rows, baseline, se_model)
    pair_acc = pair.mean(axis=1).to_numpy()
    mask = informative_mask(pair_acc, None if math.isnan(clean) else clean, floor=floor, ceiling_gap=ceiling_gap)
    reasons = budget_reasons(pair, clean, mask, baseline=baseline, se_model=se_model, floor=floor, gap=ceiling_gap)
    return _Budgets(seeds, eps_all, cells, clean, reasons)


def _estimator(b: _Budgets, per_example: pd.DataFrame | None, *, attack: str, baseline: str, se_model: str,
               min_effect: float, confidence: float) -> tuple[Callable[[list[float]], _Estimate], str]:
    """``(estimate, why_not)``: the robustness estimate over chosen budgets, and why it is seed-only ("" if not).

    With per-image correctness for every tested cell the estimate is :func:`robustness_test`'s crossed
    seeds x images interval; otherwise the t interval across seeds of the per-seed differences.
    """
    base, se, why_not = per_image_arrays(per_example, attack=attack, baseline=baseline, se_model=se_model,
                                         seeds=b.seeds, eps=b.eps)
    per_seed = b.cells.unstack("eps")  # (seeds, [model x eps])

    def estimate(which: list[float]) -> _Estimate:
        if base.size:
            keep = np.isin(b.eps, which)
            return _from_test(robustness_test(base, se, informative=keep, min_effect=min_effect,
                                             confidence=confidence))
        d = np.mean([per_seed[(se_model, e)].to_numpy() - per_seed[(baseline, e)].to_numpy() for e in which], axis=0)
        return _seed_only(d, confidence)

    return estimate, "" if base.size else why_not


def _per_eps(b: _Budgets, estimate: Callable[[list[float]], _Estimate], min_effect: float) -> list[dict[str, Any]]:
    """Every budget labelled by the same rule, one at a time (descriptive: not corrected for their number)."""
    per_eps = []
    for e, reason in zip(b.eps, b.reasons):
        est = estimate([e])
        per_eps.append({"eps": e, "outcome": str(decide(est.low, est.high, margin=min_effect)[()]),
                        "effect": est.effect, "ci_low": est.low, "ci_high": est.high, "n_seeds": est.n_seeds,
                        "n_images": est.n_images, "p_value": _p_zero(est), "informative": reason is None,
                        "reason": reason, "descriptive": True})
    return per_eps


def _power(est: _Estimate, *, min_effect: float, confidence: float, method: str) -> dict[str, Any]:
    """The minimum detectable effect (analytic, and simulated at the study's size), components, planning grid."""
    alpha = 1.0 - confidence
    mde = float(minimum_detectable_effect(est.se, est.df, alpha=alpha, margin=min_effect)) if est.se > 0 else _NAN
    power = {"mde": mde, "power": POWER, "alpha": round(alpha, 12), "margin": min_effect, "se": est.se, "df": est.df,
             "n_seeds": est.n_seeds, "n_images": est.n_images, "method": method, **est.components}
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
    return power


def _robustness_detail(est: _Estimate, b: _Budgets, power: dict[str, Any], *, why: str, why_not: str,
                       baseline: str, se_model: str, attack: str, ceiling_gap: float | None,
                       label: Callable[[float], str]) -> str:
    """The robustness criterion's detail: the estimate and how it was made, the power, the untested budgets."""
    method_note = ("interval over seeds and test images (crossed random effects, per-image correctness)"
                   if not why_not else f"seed-only t interval: {why_not}, so test-image variation is not in it")
    size = f"{est.n_seeds} seeds x {est.n_images} images" if est.n_images else f"{est.n_seeds} seeds"
    dof = f", {est.df:.3g} df" if est.df == est.df else ""
    detail = (f"{se_model} minus {baseline} {attack} robust accuracy, averaged over the informative budgets eps in "
              f"({', '.join(label(e) for e in b.tested)}): {format_interval(est.effect, est.low, est.high)} "
              f"({method_note}; {size}{dof}); {why}.")
    mde, planned = power["mde"], power.get("mde_planned", _NAN)
    if planned == planned:
        detail += (f" With {POWER:.0%} power the study detects a gain of {100 * planned:.1f} points or more (simulated "
                   f"from its variance components; the analytic estimate, optimistic with few seeds, is "
                   f"{100 * mde:.1f}).")
    elif mde == mde:
        detail += f" With {POWER:.0%} power the study detects a gain of {100 * mde:.1f} points or more."
    elif why_not and est.n_seeds > 1:
        detail += " The per-seed differences coincide, and without per-image results there is no interval to give."
    if b.dropped:
        detail += f" Not tested: {_drop_text(b, label)}."
    if math.isnan(b.clean) and ceiling_gap is not None:
        detail += " No clean accuracy (eps = 0 rows) was given, so no budget was checked against the ceiling."
    return detail


def _drop_text(b: _Budgets, label: Callable[[float], str]) -> str:
    return "; ".join(f"eps {label(d['eps'])} {d['reason']}" for d in b.dropped)


def robustness_criterion(
    robust_table: pd.DataFrame, per_example: pd.DataFrame | None, *, baseline: str, se_model: str, attack: str,
    min_effect: float, floor: float | None, ceiling_gap: float | None, confidence: float,
    label: Callable[[float], str],
) -> Criterion:
    """The robustness criterion on the informative budgets, per-budget labels (descriptive) and power.

    SE minus baseline robust accuracy under ``attack``, averaged over the budgets where the pair is neither
    at the floor nor at its clean accuracy, expected above ``min_effect``; the interval covers seeds and
    test images when ``per_example`` covers every tested cell, else seeds only (the detail says which).
    """
    b = _budgets(robust_table, baseline=baseline, se_model=se_model, attack=attack, floor=floor,
                 ceiling_gap=ceiling_gap)
    estimate, why_not = _estimator(b, per_example, attack=attack, baseline=baseline, se_model=se_model,
                                   min_effect=min_effect, confidence=confidence)
    statement = (f"Under {attack} at the informative budgets, {se_model} keeps more robust accuracy than {baseline} "
                 f"by more than {100 * min_effect:g} percentage points (the interval lies wholly above {min_effect:g}).")
    extra: dict[str, Any] = {"per_eps": _per_eps(b, estimate, min_effect), "budgets_tested": b.tested,
                             "budgets_dropped": b.dropped,
                             "method": "t across seeds" if why_not else "crossed seeds x images"}
    if not b.tested:
        why = f"no informative budget ({_drop_text(b, label)})" if b.dropped else \
            "no budget scored for both models in every seed"
        extra["power"] = {}
        return Criterion("robustness", "robustness", statement, "inconclusive", n_seeds=len(b.seeds),
                         detail=f"Robustness cannot be tested: {why}.", extra=extra)
    est = estimate(b.tested)
    outcome, why = judge(est.effect, est.low, est.high, min_effect=min_effect)
    if outcome == "opposite":
        why += f": {se_model} is less robust than {baseline} by more than the margin"
    extra["power"] = _power(est, min_effect=min_effect, confidence=confidence, method=extra["method"])
    detail = _robustness_detail(est, b, extra["power"], why=why, why_not=why_not, baseline=baseline,
                                se_model=se_model, attack=attack, ceiling_gap=ceiling_gap, label=label)
    return Criterion("robustness", "robustness", statement, outcome, est.effect, est.low, est.high, len(b.seeds),
                     detail, **_claims(est, margin=min_effect), extra=extra)


# ----------------------------------------------------------------------------------------------------
# the gradient-masking guard


def masking_guard(diagnostics: pd.DataFrame | None, *, baseline: str, se_model: str,
                   seeds: Sequence[Any]) -> tuple[Criterion, list[str]]:
    """The gradient-masking guard over every seed, and the baseline's failed checks."""
    statement = f"No gradient-masking check fails for {se_model} or {baseline} on any seed."
    guard = Criterion("gradient_masking", "guard", statement, counts=False)
    if diagnostics is None:
        guard.detail = "no diagnostics given; run serobust.masking_diagnostics on both models"
        return guard, []
    require_columns(diagnostics, ["model", "check", "passed"], "diagnostics")
    passed = check_flags(diagnostics, "passed", "diagnostics")
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


def apply_guard(rob: Criterion, guard: Criterion, failed_base: list[str], label: Callable) -> None:
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


def _shift_rows(shift_table: pd.DataFrame, *, se_model: str, adversarial_kind: str,
                noise_kind: str) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """``(adversarial rows, noise rows, kinds present)`` of the SE model's shifts at eps > 0, checked."""
    require_columns(shift_table, ["seed", "kind", "eps", "block", "z_over_u", "damping_ratio", "s_rel_change"],
                    "shift_table", check_nan=False)
    check_no_nan(shift_table, ["seed", "kind", "eps", "block"], "shift_table")
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
    check_no_nan(adv, ["z_over_u", "damping_ratio", "s_rel_change"], f"shift_table ({adversarial_kind} rows)")
    return adv, shifts[shifts["kind"] == noise_kind], kinds


def _per_seed_values(s: _Spec, adv: pd.DataFrame, noise: pd.DataFrame, *, adversarial_kind: str, noise_kind: str,
                     kinds: list[str]) -> tuple[pd.Series, str, str] | str:
    """``(one value per seed, extra text, where text)`` of one mechanism quantity, or why it cannot be judged.

    A relative quantity is the geometric mean, within each seed, of the attack / noise ratio on matched
    (seed, eps, block) cells; an absolute one the mean over the attack's (eps, block) cells.
    """
    cells = ["seed", "eps", "block"]
    if s.column not in adv.columns:
        return (f"the shift table has no {s.column!r} column (it comes with the absorb-ratio shift metrics); "
                "not judged")
    a = adv.dropna(subset=[s.column]).groupby(cells)[s.column].mean()
    if not s.relative:
        return a.groupby(level="seed").mean(), "", f"under {adversarial_kind}, per seed the mean over (eps, block) cells"
    if noise.empty:
        return (f"no {noise_kind!r} rows at eps > 0 in shift_table (kinds present: {kinds}); "
                "run the L2-matched Gaussian control")
    b = noise.dropna(subset=[s.column]).groupby(cells)[s.column].mean()
    paired = pd.concat([a.rename("adv"), b.rename("noise")], axis=1, join="inner")
    paired = paired[(paired["adv"] > 0) & (paired["noise"] > 0)]
    if paired.empty:
        return f"no (seed, eps, block) cell has both {adversarial_kind!r} and {noise_kind!r} values of {s.column}"
    # geometric mean of the per-cell ratio within each seed: one value per seed
    per_seed = np.exp(np.log(paired["adv"] / paired["noise"]).groupby(level="seed").mean())
    extra = (f"; attack {paired['adv'].mean():.3g} vs {noise_kind} {paired['noise'].mean():.3g} on "
             f"{len(paired)} matched cells")
    return per_seed, extra, "per seed the geometric mean over matched (eps, block) cells"


def _judge_mechanism(s: _Spec, per_seed: pd.Series, extra: str, where: str, confidence: float) -> Criterion:
    """One mechanism criterion from its per-seed values: t interval across seeds, expected below the threshold."""
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
    detail = (f"{s.label}, {where}: {format_interval(est.effect, est.low, est.high)} (t interval across "
              f"{est.n_seeds} seeds; the shift table has no per-image values{extra}); {why}.")
    return Criterion(s.id, "mechanism", s.statement, outcome, est.effect, est.low, est.high, est.n_seeds,
                     detail, **p)


def mechanism_criteria(shift_table: pd.DataFrame | None, *, se_model: str, adversarial_kind: str, noise_kind: str,
                       margin: float, max_s_change: float | None, confidence: float) -> list[Criterion]:
    """The mechanism criteria from the SE model's excitation shifts; each expects a value below its threshold.

    Without a shift table (or a column, or the noise control's rows) a criterion stays "inconclusive" and
    its detail says what to run.
    """
    specs = _mechanism_specs(max_s_change, noise_kind, margin)
    if shift_table is None:
        return [Criterion(s.id, "mechanism", s.statement, detail="no excitation shifts given; run the probe")
                for s in specs]
    adv, noise, kinds = _shift_rows(shift_table, se_model=se_model, adversarial_kind=adversarial_kind,
                                    noise_kind=noise_kind)
    out = []
    for s in specs:
        values = _per_seed_values(s, adv, noise, adversarial_kind=adversarial_kind, noise_kind=noise_kind,
                                  kinds=kinds)
        if isinstance(values, str):
            out.append(Criterion(s.id, "mechanism", s.statement, detail=values))
        else:
            out.append(_judge_mechanism(s, *values, confidence))
    return out
