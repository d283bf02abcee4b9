"""serobust.stats intervals, paired differences, tables, the decision rule and power against scipy and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from serobust.stats import decisions, differences, intervals
from serobust.stats import power as pw

# ----------------------------------------------------------------------------------------------------
# bootstrap_ci


@pytest.mark.parametrize("method", ["percentile", "bca"])
@pytest.mark.parametrize("statistic", [np.mean, np.std], ids=["mean", "std"])
@pytest.mark.parametrize("sample", ["normal", "skewed"])
def test_bootstrap_matches_scipy_within_monte_carlo_error(method, statistic, sample):
    rng = np.random.default_rng(3)
    x = rng.normal(1.0, 2.0, size=25) if sample == "normal" else rng.exponential(1.0, size=40)
    est, low, high = intervals.bootstrap_ci(x, statistic=statistic, method=method, n_resamples=100_000, seed=11)
    ref = sps.bootstrap((x,), statistic, method=method, n_resamples=100_000, rng=12345)
    # with 100k resamples each endpoint's Monte-Carlo sd is <= 1.6% of the bootstrap standard error (BCa,
    # measured over seeds), so two independent runs differ by < 8% (3.5 sd); percentile and BCa endpoints
    # differ by more than that on these samples (checked below), so the tolerance tells the methods apart
    tol = 0.08 * ref.standard_error
    assert est == pytest.approx(statistic(x))
    assert low == pytest.approx(ref.confidence_interval.low, abs=tol)
    assert high == pytest.approx(ref.confidence_interval.high, abs=tol)
    assert low < est < high
    other = sps.bootstrap(
        (x,), statistic, n_resamples=100_000, rng=1, method="percentile" if method == "bca" else "bca"
    ).confidence_interval
    assert abs(other.low - low) > tol or abs(other.high - high) > tol


def test_bootstrap_bernoulli_closed_form():
    # the bootstrap distribution of the mean of 10 ones and 10 zeros is Binomial(20, 1/2) / 20; its 2.5%
    # and 97.5% quantiles are 6/20 and 14/20 (CDF(5) = 0.021 < 0.025 < CDF(6) = 0.058; symmetric above)
    x = np.r_[np.ones(10), np.zeros(10)]
    assert sps.binom.cdf(5, 20, 0.5) < 0.025 < sps.binom.cdf(6, 20, 0.5)
    assert intervals.bootstrap_ci(x, seed=5) == (0.5, 0.3, 0.7)


def test_bootstrap_large_sample_normal_theory_and_chunking():
    # 4000 x 3000 resample entries exceed one chunk, so several chunks are drawn; the percentile interval
    # of a mean must then match mean +- 1.96 * sd / sqrt(n) (plug-in sd) to Monte-Carlo accuracy
    x = np.random.default_rng(0).normal(size=4000)
    est, low, high = intervals.bootstrap_ci(x, n_resamples=3000, seed=1)
    half = 1.959964 * x.std(ddof=0) / math.sqrt(x.size)
    assert low == pytest.approx(est - half, abs=0.08 * half)
    assert high == pytest.approx(est + half, abs=0.08 * half)


def test_bootstrap_is_vectorized_over_resamples():
    calls = []

    def mean(a, axis=None):
        calls.append(np.shape(a))
        return np.mean(a, axis=axis)

    intervals.bootstrap_ci(np.arange(10.0), statistic=mean, n_resamples=5000)
    assert calls == [(1, 10), (5000, 10)]  # the estimate, then every resample in one call


def test_bootstrap_reproducible_and_seed_dependent():
    x = np.random.default_rng(1).normal(size=12)
    assert intervals.bootstrap_ci(x, seed=4) == intervals.bootstrap_ci(x, seed=4)
    assert intervals.bootstrap_ci(x, seed=4) != intervals.bootstrap_ci(x, seed=5)


def test_bootstrap_single_value_and_constant_sample():
    est, low, high = intervals.bootstrap_ci([0.7])
    assert est == 0.7 and math.isnan(low) and math.isnan(high)
    for method in ("percentile", "bca"):
        assert intervals.bootstrap_ci([0.4] * 5, method=method) == pytest.approx((0.4, 0.4, 0.4))


@pytest.mark.parametrize(
    "values, kwargs, match",
    [
        ([1.0, np.nan, 2.0], {}, "NaN"),
        ([], {}, "empty"),
        ([[1.0, 2.0]], {}, "one-dimensional"),
        ([1.0, np.inf], {}, "infinite"),
        ([1.0, 2.0], {"method": "basic"}, "method must be one of"),
        ([1.0, 2.0], {"confidence": 95}, "confidence"),
        ([1.0, 2.0], {"n_resamples": 0}, "n_resamples"),
    ],
)
def test_bootstrap_rejects_bad_input(values, kwargs, match):
    with pytest.raises(ValueError, match=match):
        intervals.bootstrap_ci(values, **kwargs)


def test_bootstrap_warns_on_few_resamples():
    with pytest.warns(UserWarning, match="at least 1000"):
        intervals.bootstrap_ci([1.0, 2.0, 3.0], n_resamples=50)


# ----------------------------------------------------------------------------------------------------
# t interval, paired differences, group means


def test_t_ci_matches_scipy():
    x = np.array([0.61, 0.58, 0.66, 0.63])
    mean, low, high = intervals.t_ci(x, confidence=0.9)
    ref = sps.ttest_1samp(x, 0.0).confidence_interval(0.9)
    assert mean == pytest.approx(x.mean())
    assert (low, high) == pytest.approx((ref.low, ref.high))


def test_paired_difference_matches_scipy_and_hand_computation():
    a = np.array([0.41, 0.38, 0.45])  # baseline, seeds 0..2
    b = np.array([0.47, 0.40, 0.52])  # SE twin, same seeds
    res = differences.paired_difference(a, b, seed=0)
    d = b - a
    ref = sps.ttest_rel(b, a)
    ci = ref.confidence_interval(0.95)
    assert res["n"] == 3
    assert res["mean_diff"] == pytest.approx(d.mean())
    assert res["sd_diff"] == pytest.approx(d.std(ddof=1))
    assert res["t_p"] == pytest.approx(ref.pvalue)
    assert res["t_stat"] == pytest.approx(ref.statistic)
    # t interval by hand: mean +- t_{2, 0.975} sd / sqrt(3), t_{2, 0.975} = 4.302653
    half = 4.302653 * d.std(ddof=1) / math.sqrt(3)
    assert (res["t_ci_low"], res["t_ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half), abs=1e-6)
    assert (res["t_ci_low"], res["t_ci_high"]) == pytest.approx((ci.low, ci.high))
    assert res["d_z"] == pytest.approx(d.mean() / d.std(ddof=1))
    # with 3 seeds the verdict interval is the t interval, and the bootstrap one is narrower (inside it)
    assert res["ci_method"] == "t" and (res["ci_low"], res["ci_high"]) == (res["t_ci_low"], res["t_ci_high"])
    assert res["t_ci_low"] < res["boot_ci_low"] <= res["boot_ci_high"] < res["t_ci_high"]
    assert math.isnan(res["wilcoxon_p"])  # 3 seeds: a signed-rank test cannot reach 0.05


def test_paired_difference_wilcoxon_and_bootstrap_for_many_seeds():
    rng = np.random.default_rng(2)
    a = rng.uniform(0.3, 0.5, size=25)
    b = a + rng.normal(0.02, 0.03, size=25)
    res = differences.paired_difference(a, b, seed=3)
    assert res["wilcoxon_p"] == pytest.approx(sps.wilcoxon(b - a).pvalue)
    assert res["ci_method"] == "bootstrap-percentile"
    assert (res["ci_low"], res["ci_high"]) == (res["boot_ci_low"], res["boot_ci_high"])
    assert differences.paired_difference(a[:6], b[:6])["wilcoxon_p"] == pytest.approx(
        sps.wilcoxon(b[:6] - a[:6]).pvalue
    )
    assert math.isnan(differences.paired_difference(a[:5], b[:5])["wilcoxon_p"])


def test_paired_difference_constant_differences():
    a = np.array([0.2, 0.3, 0.4])
    same = differences.paired_difference(a, a)
    assert same["mean_diff"] == 0 and same["wilcoxon_p"] == 1.0 and math.isnan(same["t_p"])
    assert (same["t_ci_low"], same["t_ci_high"]) == (0.0, 0.0)
    shifted = differences.paired_difference(a, a + 0.25)
    assert shifted["t_p"] == 0.0 and shifted["t_stat"] == math.inf and shifted["d_z"] == math.inf


def test_paired_difference_rejects_bad_input():
    with pytest.raises(ValueError, match="lengths 3 and 2"):
        differences.paired_difference([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"b \(SE\) contains 1 NaN"):
        differences.paired_difference([0.1, 0.2], [0.1, np.nan])


def test_mean_ci_by_averages_within_unit_first():
    rows = []
    for seed, level in enumerate([0.80, 0.90, 0.70, 0.85]):
        for block in range(3):
            rows.append({"kind": "adv", "seed": seed, "block": block, "ratio": level + 0.01 * block})
        if seed == 0:  # an extra row for one seed must not give that seed more weight
            rows.append({"kind": "adv", "seed": 0, "block": 3, "ratio": level + 0.03})
        rows.append({"kind": "noise", "seed": seed, "block": 0, "ratio": 1.0 + 0.01 * seed})
    frame = pd.DataFrame(rows)
    out = mean_by = intervals.mean_ci_by(frame, "kind", "ratio", unit="seed", seed=0)
    assert list(out["kind"]) == ["adv", "noise"]
    per_seed = frame[frame.kind == "adv"].groupby("seed")["ratio"].mean().to_numpy()
    ref = sps.ttest_1samp(per_seed, 0.0).confidence_interval(0.95)
    adv = mean_by.iloc[0]
    assert adv["n"] == 4 and adv["mean"] == pytest.approx(per_seed.mean())
    assert (adv["ci_low"], adv["ci_high"]) == pytest.approx((ref.low, ref.high))
    assert adv["boot_ci_low"] == pytest.approx(intervals.bootstrap_ci(per_seed, seed=0)[1])
    pooled = intervals.mean_ci_by(frame, ["kind"], "ratio")  # no unit: every row counts
    assert pooled.iloc[0]["n"] == 13


def test_mean_ci_by_names_missing_columns():
    with pytest.raises(ValueError, match=r"missing column\(s\) \['ratio'\]"):
        intervals.mean_ci_by(pd.DataFrame({"kind": ["a"], "seed": [0]}), "kind", "ratio", unit="seed")
    with pytest.raises(ValueError, match="'ratio' has 1 NaN"):
        intervals.mean_ci_by(pd.DataFrame({"kind": ["a", "a"], "ratio": [1.0, np.nan]}), "kind", "ratio")


# ----------------------------------------------------------------------------------------------------
# tables across seeds


def _per_seed_frame(seeds=(0, 1, 2)) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = []
    for seed in seeds:
        for attack in ("pgd", "fgsm"):
            for eps in (0.0, 0.1, 0.2):
                base = 0.9 - 2 * eps + rng.normal(0, 0.01)
                for model, gain in (("baseline", 0.0), ("se", 0.03), ("se_r4", -0.01)):
                    acc = base + gain * (eps > 0) + rng.normal(0, 0.01)
                    rows.append(
                        {"seed": seed, "model": model, "attack": attack, "eps": eps, "robust_acc": acc}
                    )
    return pd.DataFrame(rows)


def test_robust_accuracy_table_pairs_by_seed():
    frame = _per_seed_frame()
    table = differences.robust_accuracy_table(frame.sample(frac=1.0, random_state=1), seed=0)  # row order irrelevant
    assert len(table) == 2 * 2 * 3  # (se, se_r4) x (pgd, fgsm) x 3 eps
    row = table[(table.model == "se") & (table.attack == "pgd") & (table.eps == 0.2)].iloc[0]
    sub = frame[(frame.attack == "pgd") & (frame.eps == 0.2)].pivot(
        index="seed", columns="model", values="robust_acc"
    )
    ref = sps.ttest_rel(sub["se"], sub["baseline"])
    assert row["n_seeds"] == 3
    assert row["mean_baseline"] == pytest.approx(sub["baseline"].mean())
    assert row["mean_model"] == pytest.approx(sub["se"].mean())
    assert row["mean_diff"] == pytest.approx((sub["se"] - sub["baseline"]).mean())
    assert row["t_p"] == pytest.approx(ref.pvalue)
    ci = ref.confidence_interval(0.95)
    assert (row["t_ci_low"], row["t_ci_high"]) == pytest.approx((ci.low, ci.high))
    assert {"boot_ci_low", "boot_ci_high", "wilcoxon_p", "d_z", "ci_method"} <= set(table.columns)


def test_robust_accuracy_table_warns_on_unpaired_seed():
    frame = _per_seed_frame()
    frame = frame[~((frame.model == "se") & (frame.seed == 2) & (frame.attack == "pgd") & (frame.eps == 0.1))]
    with pytest.warns(UserWarning, match="1 seed"):
        table = differences.robust_accuracy_table(frame[frame.model != "se_r4"])
    row = table[(table.attack == "pgd") & (table.eps == 0.1)].iloc[0]
    assert row["n_seeds"] == 2


def test_robust_accuracy_table_input_errors():
    frame = _per_seed_frame()
    with pytest.raises(ValueError, match=r"missing column\(s\) \['seed', 'robust_acc'\]"):
        differences.robust_accuracy_table(frame.drop(columns=["robust_acc", "seed"]))
    with pytest.raises(ValueError, match="'robust_acc' has 1 NaN"):
        differences.robust_accuracy_table(frame.assign(robust_acc=frame.robust_acc.where(frame.index != 3)))
    with pytest.raises(ValueError, match="share the same"):
        differences.robust_accuracy_table(pd.concat([frame, frame.head(1)]))
    with pytest.raises(ValueError, match="no rows with model == 'base'"):
        differences.robust_accuracy_table(frame, baseline="base")
    with pytest.raises(ValueError, match="empty"):
        differences.robust_accuracy_table(frame.head(0))


# ----------------------------------------------------------------------------------------------------
# the decision rule


@pytest.mark.parametrize(
    "effect, low, high, expect, threshold, min_effect, outcome",
    [
        # a gain H1 expects above 0 by more than min_effect: the interval must lie wholly above it
        (0.05, 0.03, 0.07, "above", 0.0, 0.01, "supported"),
        (0.02, 0.005, 0.035, "above", 0.0, 0.01, "inconclusive"),  # above 0 but not wholly above 0.01
        (-0.135, -0.172, -0.098, "above", 0.0, 0.01, "opposite"),  # wholly below -0.01: less robust
        (-0.005, -0.008, -0.002, "above", 0.0, 0.01, "not supported"),  # a loss smaller than the margin
        (-0.02, -0.03, -0.005, "above", 0.0, 0.01, "not supported"),  # below 0, not wholly below -0.01
        (0.0, 0.0, 0.0, "above", 0.0, 0.01, "not supported"),  # exact 0: within the margin
        (0.0, 0.0, 0.0, "above", 0.0, 0.0, "inconclusive"),  # ... and with no margin it touches 0
        (0.004, 0.002, 0.006, "above", 0.0, 0.01, "not supported"),  # above 0, below practical size
        (-0.002, -0.004, 0.005, "above", 0.0, 0.01, "not supported"),  # contains 0, but short of 0.01
        (0.02, -0.01, 0.05, "above", 0.0, 0.01, "inconclusive"),  # contains 0 and reaches past 0.01
        (0.05, math.nan, math.nan, "above", 0.0, 0.01, "inconclusive"),  # one seed
        # a ratio H1 expects below 1 by a 5% margin
        (0.7, 0.6, 0.8, "below", 1.0, 0.05, "supported"),
        (0.94, 0.92, 0.96, "below", 1.0, 0.05, "inconclusive"),  # below 1, not wholly below 0.95
        (1.3, 1.2, 1.4, "below", 1.0, 0.05, "opposite"),  # the gate amplifies beyond the margin
        (1.0, 0.97, 1.03, "below", 1.0, 0.05, "not supported"),  # within [0.95, 1.05]: equivalent to 1
        (1.04, 1.02, 1.07, "below", 1.0, 0.05, "not supported"),  # above 1, not wholly above 1.05
        (1.0, 0.9, 1.1, "below", 1.0, 0.0, "inconclusive"),
        (0.97, 0.96, 0.99, "below", 1.0, 0.05, "not supported"),  # below 1 but not below 0.95
    ],
)
def test_judge_outcomes(effect, low, high, expect, threshold, min_effect, outcome):
    got, why = decisions.judge(effect, low, high, expect=expect, threshold=threshold, min_effect=min_effect)
    assert got == outcome and got in decisions.OUTCOMES
    assert isinstance(why, str) and why


def test_judge_below_mirrors_above():
    # a ratio r expected below t is the gain t - r expected above 0: the same rule, mirrored
    rng = np.random.default_rng(0)
    for _ in range(200):
        low, high = np.sort(rng.normal(1.0, 0.3, size=2))
        effect = rng.uniform(low, high)
        margin = float(rng.choice([0.0, 0.05]))
        below, _ = decisions.judge(effect, low, high, expect="below", threshold=1.0, min_effect=margin)
        above, _ = decisions.judge(1.0 - effect, 1.0 - high, 1.0 - low, expect="above", min_effect=margin)
        assert below == above


def test_judge_rejects_bad_options():
    with pytest.raises(ValueError, match="expect must be 'above' or 'below'"):
        decisions.judge(0.1, 0.0, 0.2, expect="greater")
    with pytest.raises(ValueError, match="min_effect must be >= 0"):
        decisions.judge(0.1, 0.0, 0.2, min_effect=-0.01)


def test_decide_is_judge_on_arrays():
    rng = np.random.default_rng(1)
    low = rng.normal(0, 0.03, 300)
    high = low + rng.uniform(0, 0.05, 300)
    got = decisions.decide(low, high, margin=0.01)
    assert list(got) == [decisions.judge(0.0, lo, hi, min_effect=0.01)[0] for lo, hi in zip(low, high)]
    assert set(got) == set(decisions.OUTCOMES) - {"inconclusive"} | {"inconclusive"}  # every outcome occurs


def _anova_by_hand(d):
    """Two-way mean squares with explicit loops (no shared code with crossed_mean_ci)."""
    n, m = len(d), len(d[0])
    grand = sum(sum(r) for r in d) / (n * m)
    rows = [sum(r) / m for r in d]
    cols = [sum(d[i][j] for i in range(n)) / n for j in range(m)]
    ms_seed = m * sum((r - grand) ** 2 for r in rows) / (n - 1)
    ms_image = n * sum((c - grand) ** 2 for c in cols) / (m - 1)
    ms_res = sum((d[i][j] - rows[i] - cols[j] + grand) ** 2 for i in range(n) for j in range(m)) / ((n - 1) * (m - 1))
    return grand, ms_seed, ms_image, ms_res


def test_crossed_interval_against_a_hand_computation():
    rng = np.random.default_rng(2)
    n, m = 4, 50
    seed_effect = rng.normal(0, 0.1, (n, 1))
    image_effect = rng.normal(0, 0.3, (1, m))
    d = (rng.random((n, m)) < 0.2).astype(float) - (rng.random((n, m)) < 0.2) + seed_effect + image_effect
    got = intervals.crossed_mean_ci(d)
    grand, ms_seed, ms_image, ms_res = _anova_by_hand(d.tolist())
    assert ms_seed / (n * m) > ms_res / (n * m)  # the seed part binds here (no floor)
    a, b = ms_seed / (n * m), max(ms_image - ms_res, 0) / (n * m)
    assert b > 0
    df_b = (ms_image - ms_res) ** 2 / (ms_image**2 / (m - 1) + ms_res**2 / ((n - 1) * (m - 1)))
    df = (a + b) ** 2 / (a**2 / (n - 1) + b**2 / df_b)
    half = sps.t.ppf(0.975, df) * math.sqrt(a + b)
    assert float(got["mean"]) == pytest.approx(grand)
    assert float(got["df"]) == pytest.approx(df)
    assert (float(got["ci_low"]), float(got["ci_high"])) == pytest.approx((grand - half, grand + half))
    assert float(got["var_seed"]) == pytest.approx((ms_seed - ms_res) / m)
    # vectorised: a stack of studies gives each study's own answer
    stack = intervals.crossed_mean_ci(np.stack([d, d[::-1], d * 0.5]))
    assert stack["ci_low"].shape == (3,) and stack["ci_low"][0] == pytest.approx(float(got["ci_low"]))


def test_coinciding_seeds_never_give_a_zero_width_interval():
    # every seed loses exactly one of 30 digits: the seed-level t interval has zero width (and p = 0)
    d = np.zeros((3, 30))
    d[:, 0] = -1.0  # the same digit lost in every seed
    r = intervals.crossed_mean_ci(d)
    assert float(r["ci_high"] - r["ci_low"]) > 0.02
    assert float(r["ci_low"]) < -1 / 30 < float(r["ci_high"])
    assert decisions.decide(r["ci_low"], r["ci_high"], margin=0.01)[()] != "opposite"
    d2 = np.zeros((3, 30))
    d2[[0, 1, 2], [0, 1, 2]] = -1.0  # a different digit in each seed
    r2 = intervals.crossed_mean_ci(d2)
    assert float(r2["ci_high"] - r2["ci_low"]) > 0.02 and decisions.decide(r2["ci_low"], r2["ci_high"], margin=0.01)[()] \
        not in ("supported", "opposite")
    # no discordant image at all: Agresti-Min pseudo-counts keep a width, no claim either way
    zero = intervals.crossed_mean_ci(np.zeros((3, 30)))
    assert float(zero["ci_high"]) > 0.01 and float(zero["ci_low"]) < -0.01
    assert decisions.decide(zero["ci_low"], zero["ci_high"], margin=0.01)[()] == "inconclusive"
    assert np.isnan(intervals.crossed_mean_ci(np.zeros((1, 30)))["ci_low"])  # one seed: no interval


def test_holm_matches_the_step_down_definition():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    assert decisions.holm(p).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert decisions.holm([0.5]).tolist() == [0.5] and decisions.holm([]).size == 0
    assert decisions.holm([0.3, 0.4]).tolist() == pytest.approx([0.6, 0.6])


def test_claim_p_values_agree_with_the_interval():
    rng = np.random.default_rng(3)
    effect, se, df = rng.normal(0, 0.03, 500), rng.uniform(0.005, 0.02, 500), rng.integers(2, 50, 500)
    half = sps.t.ppf(0.975, df) * se
    p = decisions.claim_p_values(effect, se, df, margin=0.01)
    outcome = decisions.decide(effect - half, effect + half, margin=0.01)
    assert ((p["supported"] < 0.05) == (outcome == "supported")).all()
    assert ((p["opposite"] < 0.05) == (outcome == "opposite")).all()
    assert ((p["not_supported"] < 0.05) == np.isin(outcome, ["not supported", "opposite"])).all()


def test_minimum_detectable_effect_against_the_normal_formula_and_noncentral_t():
    # many degrees of freedom: the normal-approximation formula m + (z_0.975 + z_0.8) se
    se = 0.012
    assert float(pw.minimum_detectable_effect(se, 1e6, margin=0.01)) == pytest.approx(
        0.01 + (1.959964 + 0.841621) * se, rel=1e-5)
    # few degrees of freedom: a true gain of the MDE is called supported in about 80% of studies
    df, se = 4, 0.01
    mde = float(pw.minimum_detectable_effect(se, df, margin=0.01))
    crit = 0.01 / se + sps.t.ppf(0.975, df)  # supported: (est - 0.01) / se > t_0.975
    power = sps.nct.sf(crit, df, mde / se)
    assert 0.75 < power < 0.85
    # planning by simulating the procedure: where the seed part always binds it is the paired t test, whose
    # exact power comes from the noncentral t distribution
    from scipy.optimize import brentq

    n, sigma = 5, 0.1
    exact = brentq(lambda delta: sps.nct.sf(sps.t.ppf(0.975, n - 1), n - 1, delta / (sigma / math.sqrt(n))) - 0.8,
                   1e-4, 1.0)
    planned = pw.planned_mde(sigma**2, 0.0, 1e-6, n, 50, n_sims=4000)
    assert planned == pytest.approx(exact, rel=0.06)
    # more seeds or more images never make it larger (same simulation seed)
    assert pw.planned_mde(0.0004, 0.0, 0.2, 10, 200) < pw.planned_mde(0.0004, 0.0, 0.2, 3, 200)
    assert pw.planned_mde(0.0, 0.0, 0.2, 3, 1000) < pw.planned_mde(0.0, 0.0, 0.2, 3, 200)
    assert math.isnan(pw.planned_mde(0.0004, 0.0, 0.2, 1, 200))


def test_robust_accuracy_table_uses_the_crossed_interval_where_per_image_results_exist():
    rng = np.random.default_rng(6)
    rows, per = [], []
    flags = {}
    for seed in range(3):
        for model in ("baseline", "se"):
            for eps in (0.1, 0.2):
                f = rng.random(60) < (0.6 - eps)
                flags[seed, model, eps] = f
                rows.append({"seed": seed, "model": model, "attack": "pgd", "eps": eps, "robust_acc": f.mean()})
                if eps == 0.1:  # per-image rows for one budget only
                    per += [{"seed": seed, "model": model, "attack": "pgd", "eps": eps, "index": i,
                             "robust_correct": bool(v)} for i, v in enumerate(f)]
    table = differences.robust_accuracy_table(pd.DataFrame(rows), per_example=pd.DataFrame(per)).set_index("eps")
    d = np.array([flags[s, "se", 0.1].astype(float) - flags[s, "baseline", 0.1] for s in range(3)])
    ref = intervals.crossed_mean_ci(d)
    assert table.loc[0.1, "ci_method"] == "crossed seeds x images" and table.loc[0.1, "n_images"] == 60
    assert (table.loc[0.1, "ci_low"], table.loc[0.1, "ci_high"]) == pytest.approx(
        (float(ref["ci_low"]), float(ref["ci_high"])))
    assert table.loc[0.1, "mean_diff"] == pytest.approx(float(ref["mean"]))
    assert table.loc[0.2, "ci_method"] == "t" and table.loc[0.2, "ci_low"] == table.loc[0.2, "t_ci_low"]
