"""The verdict on the study's hypothesis H1: one rule for every criterion, and a one-sentence headline.

H1 (see :data:`H1`) is a conjunction: the SE twin keeps more robust accuracy than its baseline (the
robustness criterion), and the mechanism the SE paper (Hu et al. 2018) suggests is visible in the
excitation shifts (the mechanism criteria). Seeds are the unit of replication everywhere; the
intervals come from :mod:`serobust.stats`.

One rule (:func:`judge`) labels every criterion, the averaged robustness effect and each budget alike:
"supported", "not supported" (no effect of practical size), "opposite" (the interval lies wholly on
the wrong side: the SE twin is *less* robust, the gate *amplifies*) or "inconclusive". Robustness is
tested only on informative budgets (:func:`serobust.robust_accuracy.informative_budgets`): averaging in
budgets where both models sit at 0% would pull any effect toward 0 and call a loss "inconclusive".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import pandas as pd

from .errors import InputError
from .names import ADVERSARIAL, BASELINE, SIGN_NOISE
from .robust_accuracy import (
    CEILING_GAP,
    FLOOR,
    _attack_rows,
    _budget_difference,
    _check_fraction,
    _paired_cells,
    eps_label,
    informative_budgets,
)
from .stats import OUTCOMES, _check_flags, _check_no_nan, _require_columns, judge, mean_ci, paired_difference

__all__ = ["H1", "OUTCOMES", "judge", "verdict"]

logger = logging.getLogger(__name__)

H1 = (
    "SE twins lose less accuracy under attack than their baselines AND the mechanism is visible: z changes "
    "less than u, s changes little, damping ratios < 1, beyond what random noise of the same size does; a "
    "robustness gain that fails the gradient-masking diagnostics does not count as support."
)

_CRITERION_KEYS = ("id", "role", "statement", "outcome", "effect", "ci_low", "ci_high", "n_seeds", "detail")
_PHRASE = {"opposite": "contradicted"}  # "H1 is contradicted", not "H1 is opposite"


# ----------------------------------------------------------------------------------------------------
# criteria


def _criterion(*values: Any, **extra: Any) -> dict[str, Any]:
    """A criterion dict: the values of :data:`_CRITERION_KEYS` in order, then any extra keys."""
    out = dict(zip(_CRITERION_KEYS, values, strict=True))
    for key in ("effect", "ci_low", "ci_high"):
        out[key] = float(out[key])
    out["n_seeds"] = int(out["n_seeds"])
    return {**out, **extra}


def _unjudged(cid: str, role: str, statement: str, detail: str) -> dict[str, Any]:
    """A criterion that could not be judged (no data): inconclusive, no estimate."""
    return _criterion(cid, role, statement, "inconclusive", math.nan, math.nan, math.nan, 0, detail)


def _fmt(effect: float, low: float, high: float) -> str:
    return f"{effect:.3g} [{low:.3g}, {high:.3g}]"


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


def _per_eps(
    cells: pd.DataFrame, budgets: pd.DataFrame, *, baseline: str, se_model: str, min_effect: float, **ci: Any
) -> list[dict[str, Any]]:
    """One label per budget, by the same :func:`judge` call as the averaged effect."""
    reasons = {
        float(e): (None if ok else str(r))
        for e, ok, r in budgets[["eps", "informative", "reason"]].itertuples(index=False)
    }
    out = []
    for eps, sub in cells.groupby(level="eps", sort=True):
        r = paired_difference(sub[baseline].to_numpy(), sub[se_model].to_numpy(), **ci)
        outcome, _ = judge(r["mean_diff"], r["ci_low"], r["ci_high"], min_effect=min_effect)
        reason = reasons.get(float(eps))
        out.append(
            {
                "eps": float(eps),
                "outcome": outcome,
                "effect": r["mean_diff"],
                "ci_low": r["ci_low"],
                "ci_high": r["ci_high"],
                "n_seeds": r["n"],
                "t_p": r["t_p"],
                "informative": reason is None,
                "reason": reason,
            }
        )
    return out


def _robustness(
    robust_table: pd.DataFrame,
    *,
    baseline: str,
    se_model: str,
    attack: str,
    min_effect: float,
    floor: float | None,
    ceiling_gap: float | None,
    label: Callable[[float], str],
    **ci: Any,
) -> dict[str, Any]:
    """The robustness criterion on the informative budgets, with per-budget labels and the dropped ones."""
    rows = _attack_rows(
        robust_table[robust_table["model"].isin([baseline, se_model])], attack, "robust_table"
    )
    if not (rows["eps"] > 0).any():
        raise InputError(f"robust_table has no {attack!r} rows with eps > 0; robustness is judged at eps > 0")
    cells = _paired_cells(rows, baseline, se_model, attack=attack)
    paired_eps = set(cells.index.get_level_values("eps"))
    budgets = informative_budgets(
        rows, attack=attack, baseline=baseline, floor=floor, ceiling_gap=ceiling_gap
    )
    budgets = budgets[budgets["eps"].isin(paired_eps)]
    tested = [float(e) for e in budgets.loc[budgets["informative"], "eps"]]
    dropped = [
        {"eps": float(e), "reason": str(r)}
        for e, r in budgets.loc[~budgets["informative"], ["eps", "reason"]].itertuples(index=False)
    ]
    per_eps = _per_eps(cells, budgets, baseline=baseline, se_model=se_model, min_effect=min_effect, **ci)
    n_seeds = int(cells.index.get_level_values("seed").nunique())
    statement = (
        f"Under {attack} at the informative budgets, {se_model} keeps more robust accuracy than {baseline} "
        f"(seed-paired difference > 0 with its interval above 0, estimate > {min_effect:g})."
    )
    drop_text = "; ".join(f"eps {label(d['eps'])} {d['reason']}" for d in dropped)
    budget_keys = {"per_eps": per_eps, "budgets_tested": tested, "budgets_dropped": dropped}
    if not tested:
        why = f"no informative budget ({drop_text})" if dropped else "no budget scored for both models"
        nan = math.nan
        detail = f"Robustness cannot be tested: {why}."
        return _criterion("robustness", "robustness", statement, "inconclusive", nan, nan, nan, n_seeds, detail,
                          **budget_keys)  # fmt: skip
    res = _budget_difference(cells, baseline, se_model, tested, **ci)
    effect, low, high = res["mean_diff"], res["ci_low"], res["ci_high"]
    outcome, why = judge(effect, low, high, min_effect=min_effect)
    if outcome == "opposite":
        why += f": {se_model} is less robust than {baseline}"
    detail = (
        f"{se_model} minus {baseline} {attack} robust accuracy, averaged over the informative budgets eps in "
        f"({', '.join(label(e) for e in tested)}) within each seed: {_fmt(effect, low, high)} "
        f"({res['ci_method']} interval, {res['n']} seeds, paired t p={res['t_p']:.3g}); {why}."
    )
    if dropped:
        detail += f" Not tested: {drop_text}."
    if budgets["baseline_clean_acc"].isna().all() and ceiling_gap is not None:
        detail += " No clean accuracy (eps = 0 rows) was given, so no budget was checked against the ceiling."
    return _criterion(
        "robustness", "robustness", statement, outcome, effect, low, high, res["n"], detail, **budget_keys
    )


def _masking_guard(
    diagnostics: pd.DataFrame | None, *, baseline: str, se_model: str
) -> tuple[dict[str, Any], list[str]]:
    """The gradient-masking criterion and the baseline's failed checks."""
    statement = f"No gradient-masking diagnostic fails for {se_model} or {baseline}."
    if diagnostics is None:
        detail = "no diagnostics given; run serobust.masking_diagnostics on both models"
        return _unjudged("gradient_masking", "guard", statement, detail), []
    _require_columns(diagnostics, ["model", "check", "passed"], "diagnostics")
    passed = _check_flags(diagnostics, "passed", "diagnostics")
    failed_se = sorted(map(str, diagnostics.loc[(diagnostics["model"] == se_model) & ~passed, "check"]))
    failed_base = sorted(map(str, diagnostics.loc[(diagnostics["model"] == baseline) & ~passed, "check"]))
    n_se = int((diagnostics["model"] == se_model).sum())
    n_base = int((diagnostics["model"] == baseline).sum())
    if failed_se or failed_base:
        names = [f"{se_model}: {c}" for c in failed_se] + [f"{baseline}: {c}" for c in failed_base]
        outcome, detail = "not supported", "failed checks: " + ", ".join(names)
    elif n_se == 0:
        outcome = "inconclusive"
        detail = f"no diagnostics rows for {se_model!r}; run serobust.masking_diagnostics on it"
    else:
        outcome = "supported"
        detail = f"all {n_se + n_base} checks passed ({n_se} for {se_model}, {n_base} for {baseline})"
    n_failed = float(len(failed_se) + len(failed_base))
    crit = _criterion(
        "gradient_masking", "guard", statement, outcome, n_failed, math.nan, math.nan, 0, detail
    )
    return crit, failed_base


def _apply_guard(outcome: str, guard: dict[str, Any], failed_base: list[str]) -> tuple[str, str]:
    """Robustness outcome after the gradient-masking guard, and a note saying why it changed.

    An unguarded "supported" becomes "inconclusive". A loss ("not supported", "opposite") stands unless a
    check of the *baseline* failed: a masked baseline inflates its robust accuracy, which could create the
    apparent loss, while a masked SE model only inflates the SE side.
    """
    if outcome == "supported" and guard["outcome"] != "supported":
        return "inconclusive", (
            f"Downgraded from supported: gradient-masking guard {guard['outcome']} ({guard['detail']})."
        )
    if outcome in ("not supported", "opposite") and failed_base:
        return "inconclusive", (
            f"Downgraded from {outcome}: the baseline failed {', '.join(failed_base)}, so its robust accuracy "
            "may be inflated."
        )
    return outcome, ""


def _per_seed_mean(frame: pd.DataFrame, column: str) -> pd.Series:
    """Average over (eps, block) cells within each seed: each cell once, then each seed once."""
    return frame.groupby(["seed", "eps", "block"], sort=True)[column].mean().groupby(level="seed").mean()


def _mechanism_specs(max_s_change: float | None, noise_kind: str, noise_margin: float) -> list[tuple]:
    """(id, column, threshold, statement, label, what "opposite" means) of each mechanism criterion."""
    specs = [
        ("global_state_stable", "z_over_u", 1.0,
         "The squeeze z (global state) changes less than the feature map u under attack: z_over_u < 1.",
         "relative change of z over relative change of u", "z changes more than u"),
        ("gate_damps", "damping_ratio", 1.0,
         "The gate damps adversarial perturbations: damping ratio (rel. change of s*u over rel. change of u) < 1.",
         "damping ratio", "the gate amplifies the perturbation"),
    ]  # fmt: skip
    if max_s_change is not None:
        specs.append(
            ("excitation_stable", "s_rel_change", float(max_s_change),
             f"The excitation s changes little under attack: relative change of s < {max_s_change:g}.",
             "relative change of s", f"s changes by more than {max_s_change:g}")
        )  # fmt: skip
    specs.append(
        ("beyond_noise", None, noise_margin,
         f"The gate damps adversarial perturbations at least as much as {noise_kind} noise of the same size: "
         f"adversarial minus {noise_kind} damping ratio < {noise_margin:g}.",
         f"adversarial minus {noise_kind} damping ratio",
         f"the gate damps {noise_kind} noise more than the attack")
    )  # fmt: skip
    return specs


def _mechanism(
    shift_table: pd.DataFrame | None,
    *,
    se_model: str,
    adversarial_kind: str,
    noise_kind: str,
    noise_margin: float,
    max_s_change: float | None,
    **ci: Any,
) -> list[dict[str, Any]]:
    """The mechanism criteria from the SE model's excitation shifts; each expects a value below a threshold."""
    specs = _mechanism_specs(max_s_change, noise_kind, noise_margin)
    if shift_table is None:
        return [
            _unjudged(s[0], "mechanism", s[3], "no excitation shifts given; run the probe") for s in specs
        ]
    columns = ["seed", "kind", "eps", "block", "z_over_u", "damping_ratio", "s_rel_change"]
    _require_columns(shift_table, columns, "shift_table", check_nan=False)
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
        raise InputError(
            f"shift_table has no rows with kind == {adversarial_kind!r} at eps > 0; kinds present: {kinds} "
            "(pass adversarial_kind= to name the attack's rows)"
        )
    _check_no_nan(
        adv, ["z_over_u", "damping_ratio", "s_rel_change"], f"shift_table ({adversarial_kind} rows)"
    )
    out = []
    for cid, column, threshold, statement, label, opposite in specs:
        extra = ""
        if column is not None:
            per_seed = _per_seed_mean(adv, column)
            where = f"under {adversarial_kind}, averaged over blocks and eps within seed"
        else:  # beyond_noise: adversarial minus noise damping ratio on the same (seed, eps, block) cells
            per_seed, extra, missing = _beyond_noise(adv, shifts, adversarial_kind, noise_kind, kinds)
            if missing:
                out.append(_unjudged(cid, "mechanism", statement, missing))
                continue
            where = "on matched (eps, block) cells"
        s = mean_ci(per_seed.to_numpy(), **ci)
        outcome, why = judge(s["mean"], s["ci_low"], s["ci_high"], expect="below", threshold=threshold)
        if outcome == "opposite":
            why += f": {opposite}"
        detail = (
            f"{label} {where}: {_fmt(s['mean'], s['ci_low'], s['ci_high'])} ({s['ci_method']} interval, "
            f"{s['n']} seeds{extra}); {why}."
        )
        out.append(
            _criterion(
                cid, "mechanism", statement, outcome, s["mean"], s["ci_low"], s["ci_high"], s["n"], detail
            )
        )
    return out


def _beyond_noise(
    adv: pd.DataFrame, shifts: pd.DataFrame, adversarial_kind: str, noise_kind: str, kinds: list[str]
) -> tuple[pd.Series, str, str]:
    """Per-seed mean of adversarial minus noise damping ratio, a note, and why it is missing ('' if not)."""
    noise = shifts[shifts["kind"] == noise_kind]
    if noise.empty:
        missing = f"no {noise_kind!r} rows at eps > 0 in shift_table (kinds present: {kinds})"
        return pd.Series(dtype=float), "", missing + "; run the noise control"
    _check_no_nan(noise, ["damping_ratio"], f"shift_table ({noise_kind} rows)")
    cells = ["seed", "eps", "block"]
    paired = (
        adv.groupby(cells)["damping_ratio"].mean().rename("adv").to_frame()
        .join(noise.groupby(cells)["damping_ratio"].mean().rename("noise"), how="inner")
    )  # (matched cells, 2): same seed, eps and block  # fmt: skip
    if paired.empty:
        missing = f"no (seed, eps, block) cell has both {adversarial_kind!r} and {noise_kind!r} rows"
        return pd.Series(dtype=float), "", missing
    adv_mean = float(paired["adv"].groupby(level="seed").mean().mean())
    noise_mean = float(paired["noise"].groupby(level="seed").mean().mean())
    note = f"; adversarial {adv_mean:.3g} vs {noise_kind} {noise_mean:.3g}"
    return (paired["adv"] - paired["noise"]).groupby(level="seed").mean(), note, ""


# ----------------------------------------------------------------------------------------------------
# the verdict


def _overall(robustness: dict[str, Any], judged: list[dict[str, Any]]) -> tuple[str, str]:
    """Three-valued "and" over the judged criteria, with "opposite" when robustness itself is reversed."""
    outcomes = [c["outcome"] for c in judged]
    if robustness["outcome"] == "opposite":
        return "opposite", "opposite: robustness, the SE twin is less robust"
    if "not supported" in outcomes or "opposite" in outcomes:
        failed = [
            f"{c['id']} ({c['outcome']})" for c in judged if c["outcome"] in ("not supported", "opposite")
        ]
        return "not supported", "not supported: " + ", ".join(failed)
    if all(o == "supported" for o in outcomes):
        return "supported", "every criterion is supported"
    return "inconclusive", "inconclusive: " + ", ".join(
        c["id"] for c in judged if c["outcome"] == "inconclusive"
    )


def _guard_robustness(
    robustness: dict[str, Any], guard: dict[str, Any], failed_base: list[str], *, label: Callable
) -> None:
    """Apply the gradient-masking guard to the robustness criterion and to every per-budget label."""
    robustness["outcome"], note = _apply_guard(robustness["outcome"], guard, failed_base)
    if note:
        robustness["detail"] += f" {note}"
    for p in robustness["per_eps"]:
        p["outcome"], _ = _apply_guard(p["outcome"], guard, failed_base)
    labels = [
        f"{label(p['eps'])}: {p['effect']:+.3g} ({p['outcome']}{'' if p['informative'] else ', not tested'})"
        for p in robustness["per_eps"]
    ]
    robustness["detail"] += " Per eps: " + "; ".join(labels) + "."


def _criteria_text(
    robustness: dict[str, Any], mechanism: list[dict[str, Any]], guard: dict[str, Any], *, se_model: str
) -> str:
    """The summary paragraph after its first sentence: each criterion's outcome and numbers."""
    mech = "; ".join(
        f"{c['id']} {_fmt(c['effect'], c['ci_low'], c['ci_high'])} ({c['outcome']})" for c in mechanism
    )
    return (
        f"Robustness ({robustness['outcome']}): {robustness['detail']} Mechanism, from {se_model}'s excitation "
        f"shifts (interval across seeds): {mech}. Gradient masking ({guard['outcome']}): {guard['detail']}."
    )


def _headline(
    rob: dict[str, Any], *, se_model: str, baseline: str, attack: str, confidence: float, label: Callable
) -> str:
    """One plain sentence: where, the direction, the effect in percentage points, its interval and n."""
    tested, n = rob["budgets_tested"], rob["n_seeds"]
    seeds = f"{n} seed" + ("" if n == 1 else "s")
    if not tested:
        return (
            f"No budget under {attack} was informative (the baseline sits at the floor or at its clean "
            f"accuracy at every eps), so these {seeds} cannot tell whether {se_model} is more or less robust "
            f"than {baseline}."
        )
    budgets = ", ".join(label(e) for e in tested)
    where = f"At the informative budget{'s' if len(tested) > 1 else ''} (eps {budgets})"
    effect, low, high = rob["effect"], rob["ci_low"], rob["ci_high"]
    points = f"{100 * abs(effect):.1f} percentage points"
    if effect > 0:
        claim = f"{se_model} is {points} more robust than {baseline}"
    elif effect < 0:
        claim = f"{se_model} is {points} less robust than {baseline}"
    else:
        claim = f"{se_model} is exactly as robust as {baseline}"
    if math.isnan(low) or math.isnan(high):
        interval = f"{seeds}, no interval"
    else:
        interval = f"{confidence:.0%} CI {100 * low:.1f} to {100 * high:.1f}, {seeds}"
        if low <= 0 <= high and effect != 0:
            interval += "; the interval includes 0"
    return f"{where}, {claim} under {attack} ({interval})."


def verdict(
    robust_table: pd.DataFrame,
    shift_table: pd.DataFrame | None,
    diagnostics: pd.DataFrame | None,
    *,
    alpha: float = 0.05,
    min_effect: float = 0.01,
    baseline: str = BASELINE,
    se_model: str | None = None,
    attack: str = "pgd",
    adversarial_kind: str = ADVERSARIAL,
    noise_kind: str = SIGN_NOISE,
    noise_margin: float = 0.0,
    max_s_change: float | None = 0.1,
    n_resamples: int = 10_000,
    seed: int | None = 0,
    floor: float | None = FLOOR,
    ceiling_gap: float | None = CEILING_GAP,
    per_255: bool = False,
) -> dict[str, Any]:
    """Structured verdict on H1 (:data:`H1`) from per-seed robust accuracies, shifts and diagnostics.

    Seeds are the unit of replication: quantities are averaged over eps (and blocks) within a seed first,
    then an interval at level ``1 - alpha`` is taken across seeds (the t interval below 20 seeds, see
    :func:`serobust.stats.paired_difference`). Every criterion is judged by :func:`judge`. (The body is
    short; this docstring is long because it is the contract of the dict the report renders.)

    Inputs:
        * ``robust_table``: per-seed long frame, columns ``seed``, ``model`` (``baseline`` and ``se_model``),
          ``attack``, ``eps`` (0 = clean), ``robust_acc`` (fraction); one row per (seed, model, attack, eps).
        * ``shift_table``: the SE model's excitation shifts, columns ``seed``, ``kind``, ``eps``, ``block``,
          ``z_over_u``, ``damping_ratio``, ``s_rel_change``; optional ``model`` (filtered to ``se_model``);
          rows at eps = 0 are ignored. None: the mechanism criteria are inconclusive.
        * ``diagnostics``: gradient-masking checks, columns ``model``, ``check``, ``passed``; None: none run.

    Criteria (role in parentheses), each labelled by :func:`judge`:
        * ``robustness`` (robustness): SE minus baseline robust accuracy under ``attack``, per seed averaged
          over the informative budgets, expected above 0 by more than ``min_effect``; ``per_eps`` labels
          every budget by the same rule. No informative budget: inconclusive.
        * ``global_state_stable``, ``gate_damps``, ``excitation_stable`` (mechanism): adversarial
          ``z_over_u`` < 1, ``damping_ratio`` < 1, ``s_rel_change`` < ``max_s_change`` (0.1, a judgement
          call). ``beyond_noise`` (mechanism): adversarial minus ``noise_kind`` damping ratio on matched
          cells < ``noise_margin``. Opposite when the interval lies above the threshold.
        * ``gradient_masking`` (guard): every check of both models passed. An unguarded robustness
          "supported" becomes "inconclusive"; a failed *baseline* check turns a robustness loss into
          "inconclusive" (:func:`_apply_guard`), per budget too.

    Overall: "opposite" when robustness is opposite; else "not supported" if any judged criterion is not
    supported or opposite (H1 is a conjunction), "supported" if all are supported, else "inconclusive".

    Args:
        alpha: 1 - confidence of every interval.
        min_effect: smallest robust-accuracy gain (fraction, 0.01 = 1 point) that counts as support.
        baseline, se_model: ``model`` values; ``se_model=None`` picks the only non-baseline model.
        attack: the main attack's ``attack`` value.
        adversarial_kind, noise_kind: ``kind`` values of the attack's and of the noise control's rows.
        noise_margin: non-inferiority margin of ``beyond_noise``.
        max_s_change: threshold of ``excitation_stable``; None leaves that criterion out.
        n_resamples, seed: bootstrap settings for the reported bootstrap intervals.
        floor, ceiling_gap: the informative-budget rules (None switches one off).
        per_255: write budgets as ``k/255`` in the texts where they are (CIFAR-style budgets).

    Returns:
        dict with ``hypothesis``, ``outcome``, ``headline`` (one sentence: direction and effect in points),
        ``summary`` (one paragraph), ``criteria`` (dicts ``id, role, statement, outcome, effect, ci_low,
        ci_high, n_seeds, detail``; robustness adds ``per_eps`` (``eps, outcome, effect, ci_low, ci_high,
        n_seeds, t_p, informative, reason``), ``budgets_tested`` and ``budgets_dropped`` (``eps, reason``)),
        ``n_seeds`` and ``settings`` (the arguments used).

    Raises:
        ValueError: missing columns (listed), empty frames, NaN in used columns, unknown attack/kind/model,
            bad alpha, min_effect, max_s_change, floor or ceiling_gap.
    """
    _check_options(
        alpha=alpha, min_effect=min_effect, max_s_change=max_s_change, floor=floor, gap=ceiling_gap
    )
    confidence = 1.0 - float(alpha)
    ci = {"confidence": confidence, "n_resamples": n_resamples, "seed": seed}
    label = lambda eps: eps_label(eps, per_255=per_255)  # noqa: E731
    _require_columns(
        robust_table, ["seed", "model", "attack", "eps", "robust_acc"], "robust_table", check_nan=False
    )
    _check_no_nan(robust_table, ["seed", "model", "attack", "eps"], "robust_table")
    se_model = _resolve_se_model(list(map(str, pd.unique(robust_table["model"]))), baseline, se_model)

    robustness = _robustness(
        robust_table,
        baseline=baseline,
        se_model=se_model,
        attack=attack,
        min_effect=float(min_effect),
        floor=floor,
        ceiling_gap=ceiling_gap,
        label=label,
        **ci,
    )
    guard, failed_base = _masking_guard(diagnostics, baseline=baseline, se_model=se_model)
    _guard_robustness(robustness, guard, failed_base, label=label)
    mechanism = _mechanism(
        shift_table,
        se_model=se_model,
        adversarial_kind=adversarial_kind,
        noise_kind=noise_kind,
        noise_margin=float(noise_margin),
        max_s_change=max_s_change,
        **ci,
    )
    overall, reason = _overall(robustness, [robustness, *mechanism])
    headline = _headline(
        robustness, se_model=se_model, baseline=baseline, attack=attack, confidence=confidence, label=label
    )
    summary = (
        f"H1 is {_PHRASE.get(overall, overall)} at the {confidence:.0%} level ({reason}). "
        + _criteria_text(robustness, mechanism, guard, se_model=se_model)
    )
    logger.info("verdict on H1 for %s: %s", se_model, overall)
    return {
        "hypothesis": H1,
        "outcome": overall,
        "headline": headline,
        "summary": summary,
        "criteria": [robustness, *mechanism, guard],
        "n_seeds": robustness["n_seeds"],
        "settings": {
            "alpha": float(alpha),
            "confidence": confidence,
            "min_effect": float(min_effect),
            "baseline": baseline,
            "se_model": se_model,
            "attack": attack,
            "adversarial_kind": adversarial_kind,
            "noise_kind": noise_kind,
            "noise_margin": float(noise_margin),
            "max_s_change": None if max_s_change is None else float(max_s_change),
            "floor": None if floor is None else float(floor),
            "ceiling_gap": None if ceiling_gap is None else float(ceiling_gap),
        },
    }


def _check_options(*, alpha: Any, min_effect: Any, max_s_change: Any, floor: Any, gap: Any) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise InputError(f"alpha must be in (0, 1), e.g. 0.05, got {alpha!r}")
    _check_fraction("min_effect", min_effect, example="0.01")
    if max_s_change is not None and (
        isinstance(max_s_change, bool) or not isinstance(max_s_change, (int, float)) or not max_s_change > 0
    ):
        raise InputError(
            f"max_s_change must be a positive relative change (e.g. 0.1) or None, got {max_s_change!r}"
        )
    _check_fraction("floor", floor, optional=True)
    _check_fraction("ceiling_gap", gap, optional=True)
