"""The verdict as the page shows it: the headline sentence first, then criteria and per-budget labels.

:mod:`serobust.verdict` decides; this module only words and formats its dict for the template. Results
written before the verdict had a ``headline`` get one sentence built from the robustness criterion, in the
same shape (direction first, effect in percentage points, interval, seeds), so the page still leads with
the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .figures import FigureStyle
from .labels import attack_name, number, points

__all__ = ["OUTCOMES", "outcome_class", "robustness_criterion", "tested_budgets", "informative_budgets",
           "headline_sentence", "power_sentence", "verdict_views"]

#: Every outcome the verdict gives, in the order of the glossary.
OUTCOMES = ("supported", "not supported", "opposite", "inconclusive")


def outcome_class(outcome: Any) -> str:
    """The CSS class of an outcome badge (``not supported`` -> ``not-supported``; unknown -> ``unknown``)."""
    text = str(outcome)
    return text.replace(" ", "-") if text in OUTCOMES else "unknown"


def robustness_criterion(verdict: Mapping[str, Any]) -> Mapping[str, Any]:
    """The verdict's robustness criterion (``{}`` when the verdict has none)."""
    return next((c for c in verdict.get("criteria", []) if c.get("id") == "robustness"), {})


def tested_budgets(crit: Mapping[str, Any]) -> list[float]:
    """The budgets the robustness criterion tested (older results: every budget it labelled above 0)."""
    tested = crit.get("budgets_tested")
    if tested:
        return [float(e) for e in tested]
    return [float(p["eps"]) for p in crit.get("per_eps", []) if float(p["eps"]) > 0]


def informative_budgets(results: Mapping[str, Any]) -> dict[float, bool]:
    """eps -> tested by the first twin's verdict (each pair's mean accuracy decides); ``{}`` in older results."""
    for v in results.get("verdict", {}).values():
        per_eps = robustness_criterion(v).get("per_eps", [])
        if any("informative" in p for p in per_eps):
            return {float(p["eps"]): bool(p.get("informative")) for p in per_eps}
    return {}


def headline_sentence(twin: str, verdict: Mapping[str, Any], *, attack: str, style: FigureStyle) -> str:
    """The verdict's own ``headline``, else one sentence from its robustness criterion (older results)."""
    if verdict.get("headline"):
        return str(verdict["headline"])
    crit = robustness_criterion(verdict)
    effect = crit.get("effect")
    if effect is None:
        return str(verdict.get("summary", "")).split(". ")[0]
    size = abs(100 * float(effect))
    direction = "more" if effect > 0 else "less"
    budgets = tested_budgets(crit)
    where = f"averaged over eps {style.eps_label.many(budgets)}" if budgets else "averaged over the budgets"
    low, high = crit.get("ci_low"), crit.get("ci_high")
    ci = f"{style.level} CI {points(low, unit=False)} to {points(high, unit=False)} pp, " if low is not None else ""
    n = crit.get("n_seeds", verdict.get("n_seeds", "?"))
    if size == 0:
        return f"{twin} is exactly as robust as baseline under {attack_name(attack)}, {where} ({ci}{n} seeds)."
    return (f"{twin} is {size:.1f} percentage points {direction} robust than baseline under "
            f"{attack_name(attack)}, {where} ({ci}{n} seeds).")


def _effect(crit: Mapping[str, Any], key: str, *, unit: bool = True) -> str:
    """Robustness in signed percentage points; mechanism ratios and differences as plain numbers."""
    value = crit.get(key)
    robustness = crit.get("role") == "robustness" or crit.get("id") == "robustness"
    return points(value, unit=unit) if robustness else number(value)


def _criterion_row(crit: Mapping[str, Any]) -> dict[str, Any]:
    low, high = _effect(crit, "ci_low", unit=False), _effect(crit, "ci_high", unit=False)
    return {"id": crit.get("id", ""), "role": crit.get("role", ""), "statement": crit.get("statement", ""),
            "outcome": crit.get("outcome", ""), "badge": outcome_class(crit.get("outcome")),
            "effect": _effect(crit, "effect"), "ci": f"[{low}, {high}]" if low and high else "",
            "holm": number(crit.get("p_holm"), digits=2) if crit.get("counts", True) else "not counted",
            "detail": crit.get("detail", "")}


def _per_eps_rows(crit: Mapping[str, Any], style: FigureStyle) -> list[dict[str, Any]]:
    rows = []
    for p in crit.get("per_eps", []):
        informative = p.get("informative")
        low, high = points(p.get("ci_low"), unit=False), points(p.get("ci_high"), unit=False)
        rows.append({
            "eps": style.eps_label(p["eps"]), "outcome": p.get("outcome", ""), "badge": outcome_class(p.get("outcome")),
            "effect": points(p.get("effect")), "ci": f"[{low}, {high}]" if low and high else "",
            "p": number(p.get("p_value", p.get("t_p")), digits=2), "n": p.get("n_seeds", ""),
            "tested": "" if informative is None else ("yes" if informative else "no"),
            "reason": p.get("reason") or "",
        })
    return rows


def power_sentence(verdict: Mapping[str, Any]) -> str:
    """The robustness criterion's power in one sentence ("" in older results without it)."""
    power = verdict.get("power") or robustness_criterion(verdict).get("power") or {}
    mde = power.get("mde")
    if mde is None or mde != mde:
        return ""
    images = f" x {power['n_images']} test images" if power.get("n_images") else " (seed-only interval)"
    text = (f"with {power.get('n_seeds', '?')} seeds{images}, the robustness criterion would call a true gain of "
            f"{100 * mde:.1f} points or more supported with {power.get('power', 0.8):.0%} probability "
            f"(minimum detectable effect at alpha {power.get('alpha', 0.05):g}, margin "
            f"{100 * power.get('margin', 0):g} points included).")
    plan = [p for p in power.get("planning", []) if p.get("mde") == p.get("mde")]
    if plan:
        text += " Simulated from the measured variance components (the verdict's own interval on each): " + "; ".join(
            f"{p['seeds']} seeds x {p['images']} images {100 * p['mde']:.1f}" for p in plan) + " points."
    return text


def verdict_views(results: Mapping[str, Any], *, style: FigureStyle) -> list[dict[str, Any]]:
    """One view per SE twin: outcome badge, headline sentence, summary, criteria and per-budget rows."""
    attack = str(results.get("meta", {}).get("main_attack", ""))
    views = []
    for twin, v in results.get("verdict", {}).items():
        crit = robustness_criterion(v)
        views.append({
            "twin": twin, "color": style.color(twin), "outcome": v.get("outcome", ""),
            "badge": outcome_class(v.get("outcome")),
            "headline": headline_sentence(twin, v, attack=attack, style=style),
            "summary": v.get("summary", ""), "hypothesis": v.get("hypothesis", ""), "power": power_sentence(v),
            "criteria": [_criterion_row(c) for c in v.get("criteria", [])],
            "per_eps": _per_eps_rows(crit, style),
            "tested": style.eps_label.many(crit.get("budgets_tested") or []),
            "dropped": [{"eps": style.eps_label(d["eps"]), "reason": d.get("reason", "")}
                        for d in crit.get("budgets_dropped") or []],
        })
    return views
