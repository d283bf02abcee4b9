"""serobust.verdicts on synthetic studies: the rule, informative budgets, the guard, the headline."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

import serobust as sr
from serobust import stats as S
from serobust import verdicts as V

# ----------------------------------------------------------------------------------------------------
# verdict on synthetic studies


def _study(
    *,
    gains=(0.05, 0.06, 0.04, 0.05),
    eps_gain=None,
    z_over_u=0.3,
    damping=0.7,
    noise_damping=0.9,
    s_change=0.03,
    with_noise=True,
    failed=(),
):
    """(robust_table, shift_table, diagnostics) of a synthetic study with len(gains) seeds."""
    rng = np.random.default_rng(0)
    robust, shifts = [], []
    for seed, gain in enumerate(gains):
        for eps in (0.0, 0.1, 0.2, 0.3):
            base = 0.95 - 2.5 * eps
            g = 0.0 if eps == 0 else gain if eps_gain is None else gain * eps_gain[eps]
            robust.append(
                {"seed": seed, "model": "baseline", "attack": "pgd", "eps": eps, "robust_acc": base}
            )
            robust.append({"seed": seed, "model": "se", "attack": "pgd", "eps": eps, "robust_acc": base + g})
            robust.append({"seed": seed, "model": "se", "attack": "fgsm", "eps": eps, "robust_acc": base})
            for block in range(3):
                jitter = rng.normal(0, 0.02, size=3)
                shifts.append(
                    {
                        "seed": seed,
                        "kind": "adversarial",
                        "eps": eps,
                        "block": f"b{block}",
                        "z_over_u": z_over_u + jitter[0],
                        "damping_ratio": damping + jitter[1],
                        "s_rel_change": s_change + jitter[2] / 10,
                    }
                )
                if with_noise:
                    shifts.append(
                        {
                            "seed": seed,
                            "kind": "sign_noise",
                            "eps": eps,
                            "block": f"b{block}",
                            "z_over_u": 0.5,
                            "damping_ratio": noise_damping + jitter[1],
                            "s_rel_change": 0.01,
                        }
                    )
    checks = ["monotone_in_eps", "more_steps", "square_vs_pgd"]
    diagnostics = pd.DataFrame(
        [{"model": m, "check": c, "passed": (m, c) not in failed} for m in ("baseline", "se") for c in checks]
    )
    shift = pd.DataFrame(shifts)
    shift.loc[shift.eps == 0, ["z_over_u", "damping_ratio"]] = np.nan  # 0/0 at eps = 0, as metrics gives
    return pd.DataFrame(robust), shift, diagnostics


def _by_id(result):
    return {c["id"]: c for c in result["criteria"]}


def test_verdict_supported():
    result = V.verdict(*_study())
    crit = _by_id(result)
    assert result["outcome"] == "supported", result["summary"]
    assert set(crit) == {
        "robustness",
        "global_state_stable",
        "gate_damps",
        "excitation_stable",
        "beyond_noise",
        "gradient_masking",
    }
    assert all(c["outcome"] == "supported" for c in crit.values())
    assert {c["outcome"] for c in result["criteria"]} <= set(V.OUTCOMES)
    # the robustness effect is the mean over seeds of the per-seed mean over eps > 0, with the t interval
    per_seed = np.array([0.05, 0.06, 0.04, 0.05])
    ci = sps.ttest_1samp(per_seed, 0.0).confidence_interval(0.95)
    rob = crit["robustness"]
    assert rob["effect"] == pytest.approx(per_seed.mean())
    assert (rob["ci_low"], rob["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert rob["n_seeds"] == 4 and result["n_seeds"] == 4
    assert [p["eps"] for p in rob["per_eps"]] == [0.1, 0.2, 0.3]  # eps = 0 is not a robustness budget
    assert result["summary"].startswith("H1 is supported")
    assert result["settings"]["se_model"] == "se" and result["hypothesis"] == V.H1


def test_verdict_mechanism_averages_within_seed_over_eps_and_blocks():
    robust, shift, diag = _study()
    extra = shift[
        (shift.seed == 0) & (shift.kind == "adversarial") & (shift.eps == 0.1) & (shift.block == "b0")
    ]
    shift = pd.concat([shift, extra.assign(damping_ratio=extra.damping_ratio + 0.3)])  # a repeated cell
    crit = _by_id(V.verdict(robust, shift, diag))
    adv = shift[(shift.kind == "adversarial") & (shift.eps > 0)]
    per_seed = adv.groupby(["seed", "eps", "block"])["damping_ratio"].mean().groupby("seed").mean()
    ci = sps.ttest_1samp(per_seed, 0.0).confidence_interval(0.95)
    assert crit["gate_damps"]["effect"] == pytest.approx(per_seed.mean())
    assert (crit["gate_damps"]["ci_low"], crit["gate_damps"]["ci_high"]) == pytest.approx((ci.low, ci.high))


def test_verdict_opposite_when_se_is_made_less_robust():
    loss = (-0.05, -0.04, -0.06, -0.05)
    result = V.verdict(*_study(gains=loss))
    rob = _by_id(result)["robustness"]
    ci = sps.ttest_1samp(np.array(loss), 0.0).confidence_interval(0.95)
    assert rob["effect"] == pytest.approx(np.mean(loss))
    assert (rob["ci_low"], rob["ci_high"]) == pytest.approx((ci.low, ci.high)) and ci.high < 0
    assert rob["outcome"] == "opposite" and result["outcome"] == "opposite"
    assert "wholly below 0: se is less robust than baseline" in rob["detail"]
    assert result["summary"].startswith("H1 is contradicted at the 95% level (opposite: robustness")
    assert all(p["outcome"] == "opposite" for p in rob["per_eps"])
    assert "5.0 percentage points less robust than baseline" in result["headline"]
    # opposite wins over every other outcome, even a refuted mechanism
    both = V.verdict(*_study(gains=loss, damping=1.3, noise_damping=1.3))
    assert both["outcome"] == "opposite" and _by_id(both)["gate_damps"]["outcome"] == "opposite"


def test_verdict_inconclusive_when_interval_straddles_zero():
    result = V.verdict(*_study(gains=(0.04, -0.03, 0.02, -0.01)))
    assert _by_id(result)["robustness"]["outcome"] == "inconclusive"
    assert result["outcome"] == "inconclusive"


def test_verdict_negligible_gain_is_not_supported():
    result = V.verdict(*_study(gains=(0.004, 0.0045, 0.0035, 0.004)), min_effect=0.01)
    rob = _by_id(result)["robustness"]
    assert rob["ci_low"] > 0 and rob["outcome"] == "not supported" and "practical size" in rob["detail"]
    assert V.verdict(*_study(gains=(0.004, 0.0045, 0.0035, 0.004)), min_effect=0.0)["outcome"] == "supported"


def test_verdict_per_eps_outcomes():
    result = V.verdict(*_study(eps_gain={0.1: 0.0, 0.2: 1.0, 0.3: 2.0}, gains=(0.05, 0.03, 0.04, 0.06)))
    per_eps = {p["eps"]: p["outcome"] for p in _by_id(result)["robustness"]["per_eps"]}
    # no gain at all at eps 0.1: the interval [0, 0] lies below min_effect
    assert per_eps == {0.1: "not supported", 0.2: "supported", 0.3: "supported"}
    assert "0.1: +0 (not supported); 0.2: +0.045 (supported)" in _by_id(result)["robustness"]["detail"]
    # the masking guard applies per eps too, whatever the overall robustness outcome
    masked = V.verdict(
        *_study(
            eps_gain={0.1: 0.0, 0.2: 1.0, 0.3: 2.0},
            gains=(0.05, 0.03, 0.04, 0.06),
            failed=[("se", "more_steps")],
        )
    )
    per_eps = {p["eps"]: p["outcome"] for p in _by_id(masked)["robustness"]["per_eps"]}
    assert per_eps == {0.1: "not supported", 0.2: "inconclusive", 0.3: "inconclusive"}


def test_verdict_masking_failure_downgrades_robustness():
    result = V.verdict(*_study(failed=[("se", "square_vs_pgd")]))
    crit = _by_id(result)
    assert crit["gradient_masking"]["outcome"] == "not supported"
    assert crit["robustness"]["outcome"] == "inconclusive"
    assert "se: square_vs_pgd" in crit["robustness"]["detail"]
    assert all(p["outcome"] != "supported" for p in crit["robustness"]["per_eps"])
    assert result["outcome"] == "inconclusive"
    # a failure of the baseline also blocks support, and no diagnostics at all blocks it too
    assert V.verdict(*_study(failed=[("baseline", "more_steps")]))["outcome"] == "inconclusive"
    robust, shift, _ = _study()
    none = V.verdict(robust, shift, None)
    assert none["outcome"] == "inconclusive" and _by_id(none)["gradient_masking"]["outcome"] == "inconclusive"


def test_verdict_masked_baseline_voids_a_loss_but_masked_se_does_not():
    loss = (-0.05, -0.04, -0.06, -0.05)
    assert V.verdict(*_study(gains=loss, failed=[("baseline", "more_steps")]))["outcome"] == "inconclusive"
    assert V.verdict(*_study(gains=loss, failed=[("se", "more_steps")]))["outcome"] == "opposite"
    masked = V.verdict(*_study(gains=loss, failed=[("baseline", "more_steps")]))
    assert "Downgraded from opposite: the baseline failed more_steps" in _by_id(masked)["robustness"]["detail"]
    assert all(p["outcome"] == "inconclusive" for p in _by_id(masked)["robustness"]["per_eps"])


def test_verdict_mechanism_failures():
    undamped = V.verdict(*_study(damping=1.3, noise_damping=1.3))
    assert _by_id(undamped)["gate_damps"]["outcome"] == "opposite"  # the gate amplifies
    assert "the gate amplifies the perturbation" in _by_id(undamped)["gate_damps"]["detail"]
    assert undamped["outcome"] == "not supported"  # robust but the mechanism is refuted
    assert "gate_damps (opposite)" in undamped["summary"]
    like_noise = V.verdict(*_study(noise_damping=0.7))
    assert _by_id(like_noise)["beyond_noise"]["outcome"] == "inconclusive"
    assert like_noise["outcome"] == "inconclusive"
    less_than_noise = V.verdict(*_study(noise_damping=0.5))
    assert _by_id(less_than_noise)["beyond_noise"]["outcome"] == "opposite"
    no_noise = V.verdict(*_study(with_noise=False))
    assert _by_id(no_noise)["beyond_noise"]["outcome"] == "inconclusive"
    assert "sign_noise" in _by_id(no_noise)["beyond_noise"]["detail"]
    stable_z = V.verdict(*_study(z_over_u=1.4))
    assert _by_id(stable_z)["global_state_stable"]["outcome"] == "opposite"
    assert stable_z["outcome"] == "not supported"
    s_moves = V.verdict(*_study(s_change=0.3))
    assert _by_id(s_moves)["excitation_stable"]["outcome"] == "opposite"
    skipped = V.verdict(*_study(s_change=0.3), max_s_change=None)
    assert "excitation_stable" not in _by_id(skipped) and skipped["outcome"] == "supported"


def test_verdict_single_seed_is_inconclusive():
    result = V.verdict(*_study(gains=(0.05,)))
    assert result["outcome"] == "inconclusive"
    assert all(c["outcome"] == "inconclusive" for c in result["criteria"] if c["role"] != "guard")


def test_verdict_input_errors():
    robust, shift, diag = _study()
    with pytest.raises(ValueError, match=r"missing column\(s\) \['damping_ratio'\]"):
        V.verdict(robust, shift.drop(columns="damping_ratio"), diag)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['passed'\]"):
        V.verdict(robust, shift, diag.drop(columns="passed"))
    with pytest.raises(ValueError, match="'robust_acc' has 1 NaN"):
        V.verdict(
            robust.assign(robust_acc=robust.robust_acc.where(robust.index != 3)), shift, diag
        )  # pgd, eps 0.1
    bad = shift.copy()
    bad.loc[(bad.kind == "adversarial") & (bad.eps == 0.2), "z_over_u"] = np.nan
    with pytest.raises(ValueError, match="'z_over_u' has"):
        V.verdict(robust, bad, diag)
    with pytest.raises(ValueError, match="attacks present: \\['fgsm', 'pgd'\\]"):
        V.verdict(robust, shift, diag, attack="apgd")
    with pytest.raises(ValueError, match="kinds present"):
        V.verdict(robust, shift, diag, adversarial_kind="pgd")
    several = pd.concat([robust, robust[robust.model == "se"].assign(model="se_r4")])
    with pytest.raises(ValueError, match="se_model="):
        V.verdict(several, shift, diag)
    assert V.verdict(several, shift, diag, se_model="se_r4")["settings"]["se_model"] == "se_r4"
    with pytest.raises(ValueError, match="empty"):
        V.verdict(robust.head(0), shift, diag)
    with pytest.raises(ValueError, match="alpha"):
        V.verdict(robust, shift, diag, alpha=5)
    with pytest.raises(ValueError, match="max_s_change"):
        V.verdict(robust, shift, diag, max_s_change=-1)


# ----------------------------------------------------------------------------------------------------
# informative budgets, one rule per budget, the headline


def _budget_study(base: dict, diffs: dict, *, clean: float = 0.95, se_at: dict | None = None) -> pd.DataFrame:
    """pgd robust_table: the baseline at ``base[eps]`` in every seed, the SE twin at base + ``diffs[eps][seed]``.

    ``se_at`` overrides the SE twin's accuracy at some budgets (same in every seed).
    """
    n_seeds = len(next(iter(diffs.values())))
    rows = []
    for seed in range(n_seeds):
        rows += [{"seed": seed, "model": m, "attack": "pgd", "eps": 0.0, "robust_acc": clean} for m in ("baseline", "se")]
        for eps, acc in base.items():
            se = (se_at or {}).get(eps, acc + diffs[eps][seed])
            rows.append({"seed": seed, "model": "baseline", "attack": "pgd", "eps": eps, "robust_acc": acc})
            rows.append({"seed": seed, "model": "se", "attack": "pgd", "eps": eps, "robust_acc": se})
    return pd.DataFrame(rows)


# ceiling at 0.02 (within 2 points of clean 0.95), informative at 0.1 and 0.2, floor at 0.3 and 0.4
_BASE = {0.02: 0.94, 0.1: 0.6, 0.2: 0.3, 0.3: 0.0, 0.4: 0.01}
_DIFFS = {0.02: [-0.01] * 3, 0.1: [0.04, 0.05, 0.06], 0.2: [0.02, 0.03, 0.04], 0.3: [0.0] * 3, 0.4: [-0.01] * 3}


def test_budgets_at_floor_and_ceiling_are_dropped_and_do_not_dilute_the_effect():
    _, shift, diag = _study()
    result = V.verdict(_budget_study(_BASE, _DIFFS), shift, diag)
    rob = _by_id(result)["robustness"]
    assert rob["budgets_tested"] == [0.1, 0.2]
    dropped = {d["eps"]: d["reason"] for d in rob["budgets_dropped"]}
    assert set(dropped) == {0.02, 0.3, 0.4}
    assert dropped[0.02].startswith("at the ceiling") and "95.0%" in dropped[0.02]
    assert dropped[0.3].startswith("at the floor") and dropped[0.4].startswith("at the floor")
    flags = {p["eps"]: (p["informative"], p["reason"]) for p in rob["per_eps"]}
    assert flags[0.1] == (True, None) and flags[0.2] == (True, None)
    assert flags[0.3] == (False, dropped[0.3]) and flags[0.02] == (False, dropped[0.02])
    # the effect: per seed the mean over the two informative budgets, then the t interval across seeds
    per_seed = (np.array(_DIFFS[0.1]) + np.array(_DIFFS[0.2])) / 2
    ci = sps.ttest_1samp(per_seed, 0.0).confidence_interval(0.95)
    assert rob["effect"] == pytest.approx(per_seed.mean())
    assert (rob["ci_low"], rob["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert rob["outcome"] == "supported" and result["outcome"] == "supported"
    assert "Not tested: eps 0.02 at the ceiling" in rob["detail"] and "0.3: +0 (not supported, not tested)" in rob["detail"]
    # averaging every budget in (the old behaviour, both rules off) dilutes the same data
    diluted = _by_id(V.verdict(_budget_study(_BASE, _DIFFS), shift, diag, floor=None, ceiling_gap=None))["robustness"]
    all_budgets = np.mean([np.array(d) for d in _DIFFS.values()], axis=0)
    assert diluted["budgets_dropped"] == [] and diluted["effect"] == pytest.approx(all_budgets.mean())
    assert diluted["effect"] < rob["effect"] / 2
    assert result["settings"]["floor"] == 0.02 and result["settings"]["ceiling_gap"] == 0.02


def test_budgets_are_chosen_on_the_baseline_only():
    _, shift, diag = _study()
    # the SE twin far from its floor at eps 0.3 and at 0% at eps 0.1 changes nothing in the choice
    odd = _budget_study(_BASE, _DIFFS, se_at={0.3: 0.5, 0.1: 0.0})
    rob = _by_id(V.verdict(odd, shift, diag))["robustness"]
    assert rob["budgets_tested"] == [0.1, 0.2]
    assert [d["eps"] for d in rob["budgets_dropped"]] == [0.02, 0.3, 0.4]
    table = sr.informative_budgets(odd, attack="pgd")
    assert list(table.eps[table.informative]) == [0.1, 0.2]
    assert table.baseline_robust_acc.tolist() == pytest.approx(list(_BASE.values()))


def test_no_informative_budget_is_inconclusive_with_the_reason():
    _, shift, diag = _study()
    floor = {0.1: 0.01, 0.2: 0.0}
    robust = _budget_study(floor, {0.1: [0.0, 0.01, -0.01], 0.2: [0.0] * 3})
    result = V.verdict(robust, shift, diag)
    rob = _by_id(result)["robustness"]
    assert rob["outcome"] == "inconclusive" and result["outcome"] == "inconclusive"
    assert rob["budgets_tested"] == [] and math.isnan(rob["effect"]) and rob["n_seeds"] == 3
    assert rob["detail"].startswith("Robustness cannot be tested: no informative budget (eps 0.1 at the floor")
    assert result["headline"].startswith("No budget under pgd was informative")


def test_per_budget_labels_follow_the_rule_of_the_averaged_effect():
    _, shift, diag = _study()
    base = {0.1: 0.7, 0.2: 0.45, 0.3: 0.2}
    diffs = {0.1: [-0.12, -0.135, -0.15], 0.2: [0.0, 0.0, 0.0], 0.3: [0.05, 0.03, 0.04]}
    result = V.verdict(_budget_study(base, diffs), shift, diag)
    rob = _by_id(result)["robustness"]
    per_eps = {p["eps"]: p for p in rob["per_eps"]}
    assert per_eps[0.1]["effect"] == pytest.approx(-0.135) and per_eps[0.1]["ci_high"] < 0
    assert per_eps[0.1]["outcome"] == "opposite"  # not "inconclusive": the interval lies below 0
    assert (per_eps[0.2]["effect"], per_eps[0.2]["ci_low"], per_eps[0.2]["ci_high"]) == (0.0, 0.0, 0.0)
    assert per_eps[0.2]["outcome"] == "not supported"  # [0, 0] lies below min_effect = 0.01
    assert per_eps[0.3]["outcome"] == "supported"
    for p in [*rob["per_eps"], rob]:  # every label is the one rule applied to its own numbers
        assert p["outcome"] == S.judge(p["effect"], p["ci_low"], p["ci_high"], min_effect=0.01)[0]
    # with no practical margin the exact 0 touches 0: inconclusive, by the same rule
    no_margin = _by_id(V.verdict(_budget_study(base, diffs), shift, diag, min_effect=0.0))["robustness"]
    assert {p["eps"]: p["outcome"] for p in no_margin["per_eps"]}[0.2] == "inconclusive"


def test_headline_states_direction_and_effect_in_points():
    gains = (0.05, 0.06, 0.04, 0.05)
    ci = sps.ttest_1samp(np.array(gains), 0.0).confidence_interval(0.95)
    result = V.verdict(*_study(gains=gains))
    assert result["headline"] == (
        f"At the informative budgets (eps 0.1, 0.2, 0.3), se is 5.0 percentage points more robust than baseline "
        f"under pgd (95% CI {100 * ci.low:.1f} to {100 * ci.high:.1f}, 4 seeds)."
    )
    assert result["summary"].startswith("H1 is supported") and result["headline"] not in result["summary"]
    mixed = (0.04, -0.03, 0.02, -0.01)
    ci = sps.ttest_1samp(np.array(mixed), 0.0).confidence_interval(0.95)
    headline = V.verdict(*_study(gains=mixed))["headline"]
    assert headline == (
        f"At the informative budgets (eps 0.1, 0.2, 0.3), se is 0.5 percentage points more robust than baseline "
        f"under pgd (95% CI {100 * ci.low:.1f} to {100 * ci.high:.1f}, 4 seeds; the interval includes 0)."
    )
    loss = V.verdict(*_study(gains=(-0.02, -0.025, -0.03, -0.025)))["headline"]
    assert "se is 2.5 percentage points less robust than baseline under pgd" in loss
    assert V.verdict(*_study(gains=(0.05,)))["headline"].endswith("(1 seed, no interval).")


def test_headline_writes_budgets_per_255_when_asked():
    _, shift, diag = _study()
    base = {2 / 255: 0.6, 4 / 255: 0.3, 8 / 255: 0.0}
    robust = _budget_study(base, {2 / 255: [0.01, 0.02, 0.03], 4 / 255: [0.0, 0.01, 0.02], 8 / 255: [0.0] * 3})
    result = V.verdict(robust, shift, diag, per_255=True)
    assert result["headline"].startswith("At the informative budgets (eps 2/255, 4/255), se is 1.5 percentage")
    assert "eps 8/255 at the floor" in _by_id(result)["robustness"]["detail"]
    assert "(eps 0.00784314, 0.0156863)" in V.verdict(robust, shift, diag)["headline"]


def test_verdict_without_shifts_judges_robustness_only():
    robust, _, diag = _study()
    result = V.verdict(robust, None, diag)
    crit = _by_id(result)
    assert crit["robustness"]["outcome"] == "supported"
    mech = [c for c in result["criteria"] if c["role"] == "mechanism"]
    assert [c["id"] for c in mech] == ["global_state_stable", "gate_damps", "excitation_stable", "beyond_noise"]
    assert all(c["outcome"] == "inconclusive" and "run the probe" in c["detail"] for c in mech)
    assert result["outcome"] == "inconclusive"


def test_verdict_rejects_bad_budget_rules():
    robust, shift, diag = _study()
    with pytest.raises(ValueError, match=r"floor must be a fraction of accuracy in \[0, 1\) or None"):
        V.verdict(robust, shift, diag, floor=2)
    with pytest.raises(ValueError, match="ceiling_gap"):
        V.verdict(robust, shift, diag, ceiling_gap=-0.1)


def test_public_names_stay_functions_whatever_was_imported_first():
    # a submodule named like a function it exports would replace the function on the package once imported
    import serobust.paired_tests  # noqa: F401
    import serobust.robust_accuracy  # noqa: F401
    import serobust.verdicts  # noqa: F401

    for name in ("verdict", "mcnemar", "pooled_mcnemar", "headline_table", "informative_budgets"):
        assert callable(getattr(sr, name)) and getattr(sr, name).__name__ == name
    assert sr.verdict is V.verdict and sr.robust_accuracy_table is S.robust_accuracy_table
