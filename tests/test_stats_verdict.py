"""serobust.stats.verdict on synthetic studies: the rule, budgets, the crossed interval, Holm, power, the guard."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

import serobust as sr
from serobust.stats import differences, intervals
from serobust.stats import verdict as V
from serobust.stats.criterion import Criterion

MECHANISM = ["global_state_stable", "gate_damps", "gate_absorbs", "gate_absorbs_beyond_noise", "excitation_stable"]

# ----------------------------------------------------------------------------------------------------
# synthetic studies


def _study(
    *,
    gains=(0.05, 0.06, 0.04, 0.05),
    eps_gain=None,
    z_rel=0.6,
    damp_rel=0.8,
    absorb=0.8,
    absorb_noise=1.0,
    s_change=0.03,
    with_noise=True,
    with_absorb=True,
    failed=(),
    diag_seeds=None,
):
    """(robust_table, shift_table, diagnostics) of a synthetic study with len(gains) seeds.

    Shift rows: the attack's z_over_u, damping_ratio and absorb_ratio are ``z_rel``, ``damp_rel`` times
    the Gaussian control's (and ``absorb`` against ``absorb_noise``), with a little per-cell jitter.
    Diagnostics: one row per (seed, model, check); ``failed`` lists (model, check) or (model, check, seed).
    """
    rng = np.random.default_rng(0)
    robust, shifts = [], []
    for seed, gain in enumerate(gains):
        for eps in (0.0, 0.1, 0.2, 0.3):
            base = 0.95 - 2.5 * eps
            g = 0.0 if eps == 0 else gain if eps_gain is None else gain * eps_gain[eps]
            robust.append({"seed": seed, "model": "baseline", "attack": "pgd", "eps": eps, "robust_acc": base})
            robust.append({"seed": seed, "model": "se", "attack": "pgd", "eps": eps, "robust_acc": base + g})
            robust.append({"seed": seed, "model": "se", "attack": "fgsm", "eps": eps, "robust_acc": base})
            for block in range(3):
                j = 1 + rng.normal(0, 0.01, size=4)
                noise = {"z_over_u": 0.5, "damping_ratio": 0.95, "s_rel_change": 0.01, "absorb_ratio": absorb_noise}
                adv = {"z_over_u": 0.5 * z_rel * j[0], "damping_ratio": 0.95 * damp_rel * j[1],
                       "s_rel_change": s_change * j[2], "absorb_ratio": absorb * j[3]}
                shifts.append({"seed": seed, "kind": "adversarial", "eps": eps, "block": f"b{block}", **adv})
                if with_noise:
                    shifts.append({"seed": seed, "kind": "gaussian", "eps": eps, "block": f"b{block}", **noise})
                    shifts.append({"seed": seed, "kind": "sign_noise", "eps": eps, "block": f"b{block}",
                                   **{k: v * 0.5 for k, v in noise.items()}})  # never used: Gaussian is the control
    checks = ["monotone_in_eps", "more_steps", "square_vs_pgd"]
    seeds = range(len(gains)) if diag_seeds is None else diag_seeds
    bad = {f if len(f) == 3 else (*f, None) for f in failed}
    diagnostics = pd.DataFrame(
        [{"seed": s, "model": m, "check": c, "passed": (m, c, s) not in bad and (m, c, None) not in bad}
         for s in seeds for m in ("baseline", "se") for c in checks]
    )
    shift = pd.DataFrame(shifts)
    if not with_absorb:
        shift = shift.drop(columns="absorb_ratio")
    return pd.DataFrame(robust), shift, diagnostics


def _by_id(result):
    return {c.id: c for c in result.criteria}


def _per_image_study(base_correct, se_correct, *, attack="aa", eps=0.2, clean=0.98):
    """robust_table and per_example from (seeds, images) correctness arrays of one budget."""
    rows, per = [], []
    for seed in range(base_correct.shape[0]):
        for model, flags in (("baseline", base_correct[seed]), ("se", se_correct[seed])):
            rows.append({"seed": seed, "model": model, "attack": attack, "eps": 0.0, "robust_acc": clean})
            rows.append({"seed": seed, "model": model, "attack": attack, "eps": eps, "robust_acc": flags.mean()})
            per += [{"seed": seed, "model": model, "attack": attack, "eps": eps, "index": i, "robust_correct": bool(f)}
                    for i, f in enumerate(flags)]
    return pd.DataFrame(rows), pd.DataFrame(per)


# ----------------------------------------------------------------------------------------------------
# the verdict and its declared criteria


def test_verdict_supported_and_its_json_form():
    v = V.verdict(*_study())
    crit = _by_id(v)
    assert isinstance(v, V.Verdict) and all(isinstance(c, Criterion) for c in v.criteria)
    assert [c.id for c in v.criteria] == ["robustness", *MECHANISM, "gradient_masking"]
    assert all(c.outcome == "supported" for c in v.criteria), v.summary
    assert v.outcome == "supported" and v.summary.startswith("H1 is supported")
    assert [c.counts for c in v.criteria] == [True] * 6 + [False]  # the guard is not a test of H1
    # without per-image data: the seed-only t interval of the per-seed mean over eps > 0, and it says so
    per_seed = np.array([0.05, 0.06, 0.04, 0.05])
    ci = sps.ttest_1samp(per_seed, 0.0).confidence_interval(0.95)
    rob = crit["robustness"]
    assert rob.effect == pytest.approx(per_seed.mean())
    assert (rob.ci_low, rob.ci_high) == pytest.approx((ci.low, ci.high))
    assert "seed-only t interval: no per-image table was given" in rob.detail
    assert rob.extra["method"] == "t across seeds" and v.settings["interval"] == "t across seeds"
    d = v.to_dict()
    assert set(d) == {"hypothesis", "outcome", "headline", "summary", "criteria", "n_seeds", "power", "settings"}
    assert d["criteria"][0]["id"] == "robustness" and d["criteria"][0]["budgets_tested"] == [0.1, 0.2, 0.3]
    assert d["n_seeds"] == 4 and d["power"]["mde"] == pytest.approx(rob.extra["power"]["mde"])
    assert {c["outcome"] for c in d["criteria"]} <= set(V.OUTCOMES)


def test_mechanism_ratios_are_relative_to_the_gaussian_control_on_matched_cells():
    robust, shift, diag = _study()
    crit = _by_id(V.verdict(robust, shift, diag))
    adv = shift[(shift.kind == "adversarial") & (shift.eps > 0)].set_index(["seed", "eps", "block"])
    gauss = shift[(shift.kind == "gaussian") & (shift.eps > 0)].set_index(["seed", "eps", "block"])
    for cid, column in (("global_state_stable", "z_over_u"), ("gate_damps", "damping_ratio"),
                        ("gate_absorbs_beyond_noise", "absorb_ratio")):
        ratio = np.log(adv[column] / gauss[column]).groupby(level="seed").mean().pipe(np.exp)
        ci = sps.ttest_1samp(ratio, 0.0).confidence_interval(0.95)
        assert crit[cid].effect == pytest.approx(ratio.mean())
        assert (crit[cid].ci_low, crit[cid].ci_high) == pytest.approx((ci.low, ci.high))
    absorb = adv["absorb_ratio"].groupby(level="seed").mean()
    assert crit["gate_absorbs"].effect == pytest.approx(absorb.mean())  # absolute: a frozen gate gives 1
    # sign noise rows (half the size) are not the control: halving them changes nothing
    other = shift.copy()
    other.loc[other.kind == "sign_noise", ["z_over_u", "damping_ratio"]] *= 0.1
    assert _by_id(V.verdict(robust, other, diag))["gate_damps"].effect == crit["gate_damps"].effect


@pytest.mark.parametrize("cid, kwargs", [
    ("global_state_stable", {"z_rel": 1.0}),  # z moves relative to u as much as under Gaussian noise
    ("gate_damps", {"damp_rel": 1.01}),  # the gate damps the attack as much as noise
    ("gate_absorbs", {"absorb": 1.0, "absorb_noise": 1.0}),  # |dg| = |s du|: a frozen gate's value
    ("gate_absorbs_beyond_noise", {"absorb": 0.8, "absorb_noise": 0.8}),  # absorbs, but noise as much
    ("excitation_stable", {"s_change": 0.3}),  # s moves by 30%
])
def test_each_mechanism_criterion_can_be_not_supported(cid, kwargs):
    v = V.verdict(*_study(**kwargs))
    crit = _by_id(v)[cid]
    assert crit.outcome == "not supported", crit.detail
    assert crit.p_holm < 0.05  # survives Holm across the six counted criteria
    assert v.outcome == "not supported" and f"{cid} (not supported" in v.summary
    others = [c for c in v.criteria if c.role == "mechanism" and c.id != cid]
    assert all(c.outcome == "supported" for c in others if not (cid == "gate_absorbs" and c.id.startswith("gate_abs")))


def test_mechanism_opposite_and_missing_inputs():
    amplifies = _by_id(V.verdict(*_study(damp_rel=1.3)))["gate_damps"]
    assert amplifies.outcome == "opposite" and "damps gaussian noise more than the attack" in amplifies.detail
    z_moves = V.verdict(*_study(z_rel=1.4))
    assert _by_id(z_moves)["global_state_stable"].outcome == "opposite" and z_moves.outcome == "not supported"
    no_absorb = _by_id(V.verdict(*_study(with_absorb=False)))
    for cid in ("gate_absorbs", "gate_absorbs_beyond_noise"):
        assert no_absorb[cid].outcome == "inconclusive" and "no 'absorb_ratio' column" in no_absorb[cid].detail
    no_noise = _by_id(V.verdict(*_study(with_noise=False)))
    assert no_noise["gate_damps"].outcome == "inconclusive" and "'gaussian'" in no_noise["gate_damps"].detail
    assert no_noise["gate_absorbs"].outcome == "supported"  # absolute: needs no control
    skipped = V.verdict(*_study(), max_s_change=None)
    assert "excitation_stable" not in _by_id(skipped) and skipped.outcome == "supported"


def test_verdict_without_shifts_judges_robustness_only():
    robust, _, diag = _study()
    v = V.verdict(robust, None, diag)
    mech = [c for c in v.criteria if c.role == "mechanism"]
    assert [c.id for c in mech] == MECHANISM
    assert all(c.outcome == "inconclusive" and "run the probe" in c.detail for c in mech)
    assert _by_id(v)["robustness"].outcome == "supported" and v.outcome == "inconclusive"


# ----------------------------------------------------------------------------------------------------
# the robustness rule: symmetric margins, coinciding seeds, per-image intervals


def test_opposite_only_beyond_the_margin_and_symmetric_with_supported():
    loss = (-0.05, -0.04, -0.06, -0.05)
    v = V.verdict(*_study(gains=loss))
    rob = _by_id(v)["robustness"]
    assert rob.outcome == "opposite" and v.outcome == "opposite"
    assert "wholly below -0.01: se is less robust than baseline" in rob.detail
    assert v.summary.startswith("H1 is contradicted at the 95% level (opposite: robustness")
    assert "5.0 percentage points less robust than baseline" in v.headline
    # a loss smaller than min_effect, however precise, is not "opposite"
    small = V.verdict(*_study(gains=(-0.005, -0.0045, -0.0055, -0.005)))
    rob = _by_id(small)["robustness"]
    assert rob.ci_high < 0 and rob.outcome == "not supported" and small.outcome == "not supported"
    assert all(p["outcome"] == "not supported" for p in rob.extra["per_eps"])
    # a gain must clear the margin with its whole interval, as a loss must to be "opposite"
    gain = _by_id(V.verdict(*_study(gains=(0.012, 0.02, 0.01, 0.014))))["robustness"]
    assert gain.ci_low > 0 and gain.ci_low < 0.01 and gain.outcome == "inconclusive"


def test_coinciding_per_seed_differences_give_an_interval_and_no_claim():
    # AutoAttack on 30 digits at 95%: the SE twin loses the same one digit in every seed. The per-seed
    # differences coincide (-1/30 each): the old t interval had zero width and p = 0, "opposite".
    base = np.ones((3, 30), dtype=bool)
    base[:, :2] = False
    se = base.copy()
    se[:, 2] = False
    robust, per_example = _per_image_study(base, se)
    v = V.verdict(robust, None, None, per_example=per_example, attack="aa")
    rob = _by_id(v)["robustness"]
    assert rob.effect == pytest.approx(-1 / 30)
    assert rob.ci_high - rob.ci_low > 0.02 and rob.ci_low < -1 / 30 < rob.ci_high
    assert rob.outcome not in ("supported", "opposite") and v.outcome != "opposite"
    assert rob.extra["method"] == "crossed seeds x images" and "3 seeds x 30 images" in rob.detail
    # the seed-only fallback refuses the zero-width interval instead of reporting it
    fallback = _by_id(V.verdict(robust, None, None, attack="aa"))["robustness"]
    assert math.isnan(fallback.ci_low) and fallback.outcome == "inconclusive"
    # three zero differences: no "not supported" from a zero-width interval either
    same = _per_image_study(base, base.copy())
    zero = _by_id(V.verdict(same[0], None, None, per_example=same[1], attack="aa"))["robustness"]
    assert zero.effect == 0 and zero.ci_low < -0.01 and zero.ci_high > 0.01 and zero.outcome == "inconclusive"


def test_per_image_interval_is_the_crossed_interval_and_covers_images():
    rng = np.random.default_rng(5)
    base = rng.random((3, 200)) < 0.4
    se = np.where(rng.random((3, 200)) < 0.8, base, rng.random((3, 200)) < 0.45)
    robust, per_example = _per_image_study(base, se, attack="pgd")
    rob = _by_id(V.verdict(robust, None, None, per_example=per_example, attack="pgd"))["robustness"]
    ref = intervals.crossed_mean_ci(se.astype(float) - base.astype(float))
    assert (rob.effect, rob.ci_low, rob.ci_high) == pytest.approx(
        (float(ref["mean"]), float(ref["ci_low"]), float(ref["ci_high"])))
    assert rob.effect == pytest.approx(np.mean(se.mean(1) - base.mean(1)))
    assert rob.extra["method"] == "crossed seeds x images"
    # images shuffled within the table, the same answer; a seed scored on other images falls back
    shuffled = per_example.sample(frac=1.0, random_state=1)
    again = _by_id(V.verdict(robust, None, None, per_example=shuffled, attack="pgd"))["robustness"]
    assert again.ci_low == pytest.approx(rob.ci_low)
    moved = per_example.assign(index=per_example["index"] + 1000 * (per_example.seed == 2))
    fallback = _by_id(V.verdict(robust, None, None, per_example=moved, attack="pgd"))["robustness"]
    assert fallback.extra["method"] == "t across seeds" and "not scored on the same images" in fallback.detail


# ----------------------------------------------------------------------------------------------------
# informative budgets: the pair's mean decides


def _budget_study(base: dict, diffs: dict, *, clean: float = 0.95, se_at: dict | None = None) -> pd.DataFrame:
    """pgd robust_table: the baseline at ``base[eps]`` in every seed, the SE twin at base + ``diffs[eps][seed]``."""
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
    _, shift, diag = _study(gains=(0.05,) * 3)
    v = V.verdict(_budget_study(_BASE, _DIFFS), shift, diag)
    rob = _by_id(v)["robustness"]
    assert rob.extra["budgets_tested"] == [0.1, 0.2]
    dropped = {d["eps"]: d["reason"] for d in rob.extra["budgets_dropped"]}
    assert set(dropped) == {0.02, 0.3, 0.4}
    assert dropped[0.02].startswith("at the ceiling") and "95.0%" in dropped[0.02]
    assert dropped[0.3].startswith("at the floor: the pair keeps 0.0% on average")
    per_seed = (np.array(_DIFFS[0.1]) + np.array(_DIFFS[0.2])) / 2
    ci = sps.ttest_1samp(per_seed, 0.0).confidence_interval(0.95)
    assert rob.effect == pytest.approx(per_seed.mean())
    assert (rob.ci_low, rob.ci_high) == pytest.approx((ci.low, ci.high))
    assert rob.outcome == "supported" and v.outcome == "supported"
    assert "Not tested: eps 0.02 at the ceiling" in rob.detail and "0.3: +0.0 pp (inconclusive, not tested)" in rob.detail
    assert all(p["descriptive"] for p in rob.extra["per_eps"]) and "Per eps (descriptive" in rob.detail
    diluted = _by_id(V.verdict(_budget_study(_BASE, _DIFFS), shift, diag, floor=None, ceiling_gap=None))["robustness"]
    assert diluted.extra["budgets_dropped"] == [] and diluted.effect < rob.effect / 2


def test_a_budget_where_only_the_se_twin_is_above_the_floor_is_tested():
    _, shift, diag = _study(gains=(0.05,) * 3)
    # eps 0.3: the baseline at 0% in every seed, the SE twin keeps about 50%
    odd = _budget_study(_BASE, {**_DIFFS, 0.3: [0.5, 0.48, 0.52]})
    rob = _by_id(V.verdict(odd, shift, diag))["robustness"]
    assert rob.extra["budgets_tested"] == [0.1, 0.2, 0.3]
    table = sr.informative_budgets(odd, attack="pgd")
    row = table.set_index("eps").loc[0.3]
    assert row.baseline_robust_acc == 0.0 and row.se_robust_acc == pytest.approx(0.5)
    assert row.pair_robust_acc == pytest.approx(0.25) and bool(row.informative) and row.reason is None
    # and the rule is symmetric: the SE twin at 0% while the baseline keeps 50% is tested too
    flipped = _budget_study({**_BASE, 0.3: 0.5}, {**_DIFFS, 0.3: [-0.5, -0.48, -0.52]})
    assert 0.3 in _by_id(V.verdict(flipped, shift, diag))["robustness"].extra["budgets_tested"]


def test_no_informative_budget_is_inconclusive_with_the_reason():
    _, shift, diag = _study(gains=(0.05,) * 3)
    robust = _budget_study({0.1: 0.01, 0.2: 0.0}, {0.1: [0.0, 0.01, -0.01], 0.2: [0.0] * 3})
    v = V.verdict(robust, shift, diag)
    rob = _by_id(v)["robustness"]
    assert rob.outcome == "inconclusive" and v.outcome == "inconclusive"
    assert rob.extra["budgets_tested"] == [] and math.isnan(rob.effect) and rob.n_seeds == 3
    assert rob.detail.startswith("Robustness cannot be tested: no informative budget (eps 0.1 at the floor")
    assert v.headline.startswith("No budget under pgd was informative")


# ----------------------------------------------------------------------------------------------------
# the overall outcome: intersection-union for support, Holm for the negative claims


def _crit(cid, *, outcome="inconclusive", p_sup=0.5, p_not=0.5, p_opp=0.9, counts=True):
    return Criterion(cid, "robustness" if cid == "robustness" else "mechanism", cid, outcome,
                       p_supported=p_sup, p_not_supported=p_not, p_opposite=p_opp, counts=counts)


def _one(criteria):
    return V.Verdict(V.H1, "se", "baseline", "pgd", criteria, {"confidence": 0.95, "alpha": 0.05})


def test_holm_changes_the_overall_outcome_where_it_should():
    # one criterion "not supported" at p = 0.02 among five: alone it would refute H1, but 5 x 0.02 > 0.05
    crits = [_crit("robustness", outcome="inconclusive", p_sup=0.2, p_not=0.5),
             _crit("gate_damps", outcome="not supported", p_sup=1.0, p_not=0.02)] + \
            [_crit(f"m{i}", outcome="supported", p_sup=0.001, p_not=1.0) for i in range(3)]
    v = _one(crits)
    V.decide_overall([v], alpha=0.05)
    assert v.outcome == "inconclusive" and crits[1].p_holm == pytest.approx(0.1)
    assert "not refuted after Holm's correction: gate_damps" in v.reason
    strong = [*crits[:1], _crit("gate_damps", outcome="not supported", p_sup=1.0, p_not=0.004), *crits[2:]]
    v = _one(strong)
    V.decide_overall([v], alpha=0.05)
    assert v.outcome == "not supported" and strong[1].p_holm == pytest.approx(0.02)
    # the guard and the detector are not in the family: a refuted detector leaves H1 alone
    extra = [*crits, _crit("excitation_detector", outcome="not supported", p_not=1e-9, counts=False)]
    v = _one(extra)
    V.decide_overall([v], alpha=0.05)
    assert v.outcome == "inconclusive" and math.isnan(extra[-1].p_holm)


def test_holm_across_twins_for_support():
    def twin(p):
        return _one([_crit("robustness", outcome="supported", p_sup=p, p_not=1.0),
                     _crit("gate_damps", outcome="supported", p_sup=0.001, p_not=1.0)])

    alone = twin(0.03)
    V.decide_overall([alone], alpha=0.05)
    assert alone.outcome == "supported"  # intersection-union: no correction within one twin
    a, b = twin(0.03), twin(0.04)
    V.decide_overall([a, b], alpha=0.05)  # two twins: 2 x 0.03 > 0.05
    assert a.outcome == b.outcome == "inconclusive" and "not after Holm's correction and across 2 twins" in a.reason
    a, b = twin(0.01), twin(0.04)
    V.decide_overall([a, b], alpha=0.05)
    assert a.outcome == "supported" and b.outcome == "supported"  # 2 x 0.01, then 1 x 0.04


def test_opposite_needs_the_robustness_loss_to_survive_holm():
    crits = [_crit("robustness", outcome="opposite", p_sup=1.0, p_not=0.001, p_opp=0.02)] + \
            [_crit(f"m{i}", outcome="inconclusive") for i in range(4)]
    v = _one(crits)
    V.decide_overall([v], alpha=0.05)
    assert v.outcome == "not supported"  # the loss is beyond 0 after Holm, not beyond the margin (5 x 0.02)
    crits[0].p_opposite = 0.005
    V.decide_overall([v], alpha=0.05)
    assert v.outcome == "opposite"


def test_detection_criterion_joins_the_declared_list_outside_h1():
    from serobust.detect.verdict import detection_criterion

    rows = []
    for seed in range(3):
        for features, perturbation, auroc in (("excitation", "pgd", 0.99), ("pooled", "pgd", 0.99),
                                              ("excitation", "adaptive", 0.97)):
            rows.append({"seed": seed, "features": features, "perturbation": perturbation, "eps": 0.1,
                         "auroc": auroc + 0.001 * seed})
    det = detection_criterion(pd.DataFrame(rows))
    assert isinstance(det, Criterion) and det.counts is False and det.outcome == "not supported"
    v = V.verdict(*_study())
    v.criteria.append(det)
    V.decide_overall([v], alpha=0.05)
    assert v.outcome == "supported"  # a refuted detector does not refute H1 ...
    assert "excitation_detector (not supported; reported beside H1, not part of it)" in v.summary  # ... but is shown
    assert v.to_dict()["criteria"][-1]["id"] == "excitation_detector"


# ----------------------------------------------------------------------------------------------------
# power


def test_power_is_stated_and_matches_the_normal_approximation():
    rng = np.random.default_rng(7)
    base = rng.random((5, 400)) < 0.5
    se = np.where(rng.random((5, 400)) < 0.7, base, rng.random((5, 400)) < 0.5)
    robust, per_example = _per_image_study(base, se, attack="pgd")
    v = V.verdict(robust, None, None, per_example=per_example, attack="pgd")
    power = v.power
    d = se.astype(float) - base.astype(float)
    # independent: the MDE formula m + (t_0.975 + t_0.8) se from the two-way mean squares, by hand
    rows, cols = d.mean(1), d.mean(0)
    resid = d - rows[:, None] - cols[None, :] + d.mean()
    ms_res = (resid**2).sum() / (4 * 399)
    ms_seed, ms_image = 400 * rows.var(ddof=1), 5 * cols.var(ddof=1)
    a = max(ms_seed, ms_res) / 2000
    df_a = 4 if ms_seed > ms_res else 4 * 399
    b = max(ms_image - ms_res, 0) / 2000
    df_b = (ms_image - ms_res) ** 2 / (ms_image**2 / 399 + ms_res**2 / (4 * 399)) if b > 0 else np.inf
    df = (a + b) ** 2 / (a**2 / df_a + (b**2 / df_b if b > 0 else 0))
    by_hand = 0.01 + (sps.t.ppf(0.975, df) + sps.t.ppf(0.8, df)) * math.sqrt(a + b)
    assert power["mde"] == pytest.approx(by_hand)
    normal = 0.01 + (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * math.sqrt(a + b)
    assert normal <= power["mde"] < 0.01 + 1.4 * (normal - 0.01)  # t quantiles on few df: a little larger
    assert power["n_seeds"] == 5 and power["n_images"] == 400 and power["power"] == 0.8
    assert {"var_seed", "var_image", "var_residual", "planning"} <= set(power)
    # the headline states the simulated MDE at the study's own size (the analytic one is optimistic with few seeds)
    own = [r["mde"] for r in power["planning"] if (r["seeds"], r["images"]) == (5, 400)]
    assert power["mde_planned"] == own[0] and power["mde_planned"] >= 0.9 * power["mde"]
    assert f"a gain of {100 * power['mde_planned']:.1f} points or more with 80% power" in v.headline
    supported = V.verdict(*_study())
    assert supported.outcome == "supported" and "could have detected" not in supported.headline


# ----------------------------------------------------------------------------------------------------
# the gradient-masking guard, every seed


def test_a_failing_check_on_any_seed_downgrades_a_gain():
    v = V.verdict(*_study(failed=[("se", "square_vs_pgd", 2)]))  # the third seed only
    crit = _by_id(v)
    assert crit["gradient_masking"].outcome == "not supported"
    assert "se: square_vs_pgd (seed 2)" in crit["gradient_masking"].detail
    assert crit["robustness"].outcome == "inconclusive" and v.outcome == "inconclusive"
    assert "Downgraded from supported" in crit["robustness"].detail
    assert all(p["outcome"] != "supported" for p in crit["robustness"].extra["per_eps"])
    # checks that ran on the first seed only cannot clear the others
    first_only = _by_id(V.verdict(*_study(diag_seeds=[0])))
    assert first_only["gradient_masking"].outcome == "inconclusive"
    assert "no checks for seed(s) [1, 2, 3]" in first_only["gradient_masking"].detail
    assert first_only["robustness"].outcome == "inconclusive"
    robust, shift, _ = _study()
    assert _by_id(V.verdict(robust, shift, None))["gradient_masking"].outcome == "inconclusive"


def test_masked_baseline_voids_a_loss_but_masked_se_does_not():
    loss = (-0.05, -0.04, -0.06, -0.05)
    masked = V.verdict(*_study(gains=loss, failed=[("baseline", "more_steps", 1)]))
    assert masked.outcome == "inconclusive"
    assert "Downgraded from opposite: the baseline failed more_steps (seed 1)" in _by_id(masked)["robustness"].detail
    assert V.verdict(*_study(gains=loss, failed=[("se", "more_steps")])).outcome == "opposite"


def test_the_guard_reads_only_its_twins_rows():
    robust, shift, diag = _study()
    other = diag[diag.model == "se"].assign(model="se_r8", passed=False)  # another twin failing everything
    v = V.verdict(robust, shift, pd.concat([diag, other]))
    assert _by_id(v)["gradient_masking"].outcome == "supported" and v.outcome == "supported"


# ----------------------------------------------------------------------------------------------------
# texts and errors


def test_headline_states_direction_effect_interval_and_power():
    gains = (0.05, 0.06, 0.04, 0.05)
    ci = sps.ttest_1samp(np.array(gains), 0.0).confidence_interval(0.95)
    v = V.verdict(*_study(gains=gains))
    assert v.headline == (
        f"At the informative budgets (eps 0.1, 0.2, 0.3), se is 5.0 percentage points more robust than baseline "
        f"under pgd (95% CI {100 * ci.low:.1f} to {100 * ci.high:.1f}, 4 seeds)."
    )
    mixed = V.verdict(*_study(gains=(0.04, -0.03, 0.02, -0.01)))
    assert "; the interval includes 0); the study could have detected a gain of" in mixed.headline
    assert V.verdict(*_study(gains=(0.05,))).headline.endswith("(1 seed, no interval).")
    flags = np.arange(30)[None, :] % 5 > 0  # 80% of the digits
    one = _per_image_study(flags, flags.copy())  # one seed, per image
    single = V.verdict(one[0], None, None, per_example=one[1], attack="aa")
    assert single.headline.endswith("(1 seed x 30 images, no interval).") and "planning" not in single.power


def test_headline_writes_budgets_per_255_when_asked():
    _, shift, diag = _study(gains=(0.05,) * 3)
    base = {2 / 255: 0.6, 4 / 255: 0.3, 8 / 255: 0.0}
    robust = _budget_study(base, {2 / 255: [0.01, 0.02, 0.03], 4 / 255: [0.0, 0.01, 0.02], 8 / 255: [0.0] * 3})
    v = V.verdict(robust, shift, diag, per_255=True)
    assert v.headline.startswith("At the informative budgets (eps 2/255, 4/255), se is 1.5 percentage")
    assert "eps 8/255 at the floor" in _by_id(v)["robustness"].detail


def test_verdict_input_errors():
    robust, shift, diag = _study()
    with pytest.raises(ValueError, match=r"missing column\(s\) \['damping_ratio'\]"):
        V.verdict(robust, shift.drop(columns="damping_ratio"), diag)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['passed'\]"):
        V.verdict(robust, shift, diag.drop(columns="passed"))
    with pytest.raises(ValueError, match="'robust_acc' has 1 NaN"):
        V.verdict(robust.assign(robust_acc=robust.robust_acc.where(robust.index != 3)), shift, diag)
    with pytest.raises(ValueError, match="attacks present: \\['fgsm', 'pgd'\\]"):
        V.verdict(robust, shift, diag, attack="apgd")
    with pytest.raises(ValueError, match="kinds present"):
        V.verdict(robust, shift, diag, adversarial_kind="pgd")
    several = pd.concat([robust, robust[robust.model == "se"].assign(model="se_r4")])
    with pytest.raises(ValueError, match="se_model="):
        V.verdict(several, shift, diag)
    with pytest.raises(ValueError, match="empty"):
        V.verdict(robust.head(0), shift, diag)
    with pytest.raises(ValueError, match="alpha"):
        V.verdict(robust, shift, diag, alpha=5)
    with pytest.raises(ValueError, match="max_s_change"):
        V.verdict(robust, shift, diag, max_s_change=-1)
    with pytest.raises(ValueError, match="mechanism_margin"):
        V.verdict(robust, shift, diag, mechanism_margin=1.5)
    with pytest.raises(ValueError, match=r"floor must be a fraction of accuracy in \[0, 1\) or None"):
        V.verdict(robust, shift, diag, floor=2)
    with pytest.raises(ValueError, match="outcome must be one of"):
        Criterion("x", "mechanism", "x", "maybe")


def test_public_names_stay_functions_whatever_was_imported_first():
    import serobust.stats.paired  # noqa: F401
    import serobust.stats.robust_accuracy  # noqa: F401
    import serobust.stats.verdict  # noqa: F401

    for name in ("verdict", "mcnemar", "headline_table", "informative_budgets"):
        assert callable(getattr(sr, name)) and getattr(sr, name).__name__ == name
    assert sr.verdict is V.verdict and sr.robust_accuracy_table is differences.robust_accuracy_table


def test_headline_names_the_mechanism_criteria_that_decided_a_not_supported_verdict():
    """The badge reads "not supported" while the sentence is about robustness: the headline says why."""
    # robustness undecided (mixed gains); the gate does not damp (ratio 1.0 to noise, tight): refuted
    v = V.verdict(*_study(gains=(0.04, -0.03, 0.02, -0.01), damp_rel=1.0))
    assert v.criterion("robustness").outcome == "inconclusive"
    assert v.criterion("gate_damps").outcome == "not supported" and v.outcome == "not supported"
    assert v.headline.endswith("are refuted after Holm's correction.")
    assert "gate_damps" in v.headline.split("H1 as a whole is not supported: its mechanism criteria ")[1]
    supported = V.verdict(*_study())  # every criterion holds: no such sentence
    assert supported.outcome == "supported" and "H1 as a whole" not in supported.headline
