"""serobust.stats against scipy, textbook tables and hand computations; the verdict on synthetic studies."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from serobust import stats as S

# ----------------------------------------------------------------------------------------------------
# bootstrap_ci


@pytest.mark.parametrize("method", ["percentile", "bca"])
@pytest.mark.parametrize("statistic", [np.mean, np.std], ids=["mean", "std"])
@pytest.mark.parametrize("sample", ["normal", "skewed"])
def test_bootstrap_matches_scipy_within_monte_carlo_error(method, statistic, sample):
    rng = np.random.default_rng(3)
    x = rng.normal(1.0, 2.0, size=25) if sample == "normal" else rng.exponential(1.0, size=40)
    est, low, high = S.bootstrap_ci(x, statistic=statistic, method=method, n_resamples=100_000, seed=11)
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
    assert S.bootstrap_ci(x, seed=5) == (0.5, 0.3, 0.7)


def test_bootstrap_large_sample_normal_theory_and_chunking():
    # 4000 x 3000 resample entries exceed one chunk, so several chunks are drawn; the percentile interval
    # of a mean must then match mean +- 1.96 * sd / sqrt(n) (plug-in sd) to Monte-Carlo accuracy
    x = np.random.default_rng(0).normal(size=4000)
    est, low, high = S.bootstrap_ci(x, n_resamples=3000, seed=1)
    half = 1.959964 * x.std(ddof=0) / math.sqrt(x.size)
    assert low == pytest.approx(est - half, abs=0.08 * half)
    assert high == pytest.approx(est + half, abs=0.08 * half)


def test_bootstrap_is_vectorized_over_resamples():
    calls = []

    def mean(a, axis=None):
        calls.append(np.shape(a))
        return np.mean(a, axis=axis)

    S.bootstrap_ci(np.arange(10.0), statistic=mean, n_resamples=5000)
    assert calls == [(1, 10), (5000, 10)]  # the estimate, then every resample in one call


def test_bootstrap_reproducible_and_seed_dependent():
    x = np.random.default_rng(1).normal(size=12)
    assert S.bootstrap_ci(x, seed=4) == S.bootstrap_ci(x, seed=4)
    assert S.bootstrap_ci(x, seed=4) != S.bootstrap_ci(x, seed=5)


def test_bootstrap_single_value_and_constant_sample():
    est, low, high = S.bootstrap_ci([0.7])
    assert est == 0.7 and math.isnan(low) and math.isnan(high)
    for method in ("percentile", "bca"):
        assert S.bootstrap_ci([0.4] * 5, method=method) == pytest.approx((0.4, 0.4, 0.4))


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
        S.bootstrap_ci(values, **kwargs)


def test_bootstrap_warns_on_few_resamples():
    with pytest.warns(UserWarning, match="at least 1000"):
        S.bootstrap_ci([1.0, 2.0, 3.0], n_resamples=50)


# ----------------------------------------------------------------------------------------------------
# t interval, paired differences, group means


def test_t_ci_matches_scipy():
    x = np.array([0.61, 0.58, 0.66, 0.63])
    mean, low, high = S.t_ci(x, confidence=0.9)
    ref = sps.ttest_1samp(x, 0.0).confidence_interval(0.9)
    assert mean == pytest.approx(x.mean())
    assert (low, high) == pytest.approx((ref.low, ref.high))


def test_paired_difference_matches_scipy_and_hand_computation():
    a = np.array([0.41, 0.38, 0.45])  # baseline, seeds 0..2
    b = np.array([0.47, 0.40, 0.52])  # SE twin, same seeds
    res = S.paired_difference(a, b, seed=0)
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
    res = S.paired_difference(a, b, seed=3)
    assert res["wilcoxon_p"] == pytest.approx(sps.wilcoxon(b - a).pvalue)
    assert res["ci_method"] == "bootstrap-percentile"
    assert (res["ci_low"], res["ci_high"]) == (res["boot_ci_low"], res["boot_ci_high"])
    assert S.paired_difference(a[:6], b[:6])["wilcoxon_p"] == pytest.approx(
        sps.wilcoxon(b[:6] - a[:6]).pvalue
    )
    assert math.isnan(S.paired_difference(a[:5], b[:5])["wilcoxon_p"])


def test_paired_difference_constant_differences():
    a = np.array([0.2, 0.3, 0.4])
    same = S.paired_difference(a, a)
    assert same["mean_diff"] == 0 and same["wilcoxon_p"] == 1.0 and math.isnan(same["t_p"])
    assert (same["t_ci_low"], same["t_ci_high"]) == (0.0, 0.0)
    shifted = S.paired_difference(a, a + 0.25)
    assert shifted["t_p"] == 0.0 and shifted["t_stat"] == math.inf and shifted["d_z"] == math.inf


def test_paired_difference_rejects_bad_input():
    with pytest.raises(ValueError, match="lengths 3 and 2"):
        S.paired_difference([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"b \(SE\) contains 1 NaN"):
        S.paired_difference([0.1, 0.2], [0.1, np.nan])


def test_mean_ci_by_averages_within_unit_first():
    rows = []
    for seed, level in enumerate([0.80, 0.90, 0.70, 0.85]):
        for block in range(3):
            rows.append({"kind": "adv", "seed": seed, "block": block, "ratio": level + 0.01 * block})
        if seed == 0:  # an extra row for one seed must not give that seed more weight
            rows.append({"kind": "adv", "seed": 0, "block": 3, "ratio": level + 0.03})
        rows.append({"kind": "noise", "seed": seed, "block": 0, "ratio": 1.0 + 0.01 * seed})
    frame = pd.DataFrame(rows)
    out = mean_by = S.mean_ci_by(frame, "kind", "ratio", unit="seed", seed=0)
    assert list(out["kind"]) == ["adv", "noise"]
    per_seed = frame[frame.kind == "adv"].groupby("seed")["ratio"].mean().to_numpy()
    ref = sps.ttest_1samp(per_seed, 0.0).confidence_interval(0.95)
    adv = mean_by.iloc[0]
    assert adv["n"] == 4 and adv["mean"] == pytest.approx(per_seed.mean())
    assert (adv["ci_low"], adv["ci_high"]) == pytest.approx((ref.low, ref.high))
    assert adv["boot_ci_low"] == pytest.approx(S.bootstrap_ci(per_seed, seed=0)[1])
    pooled = S.mean_ci_by(frame, ["kind"], "ratio")  # no unit: every row counts
    assert pooled.iloc[0]["n"] == 13


def test_mean_ci_by_names_missing_columns():
    with pytest.raises(ValueError, match=r"missing column\(s\) \['ratio'\]"):
        S.mean_ci_by(pd.DataFrame({"kind": ["a"], "seed": [0]}), "kind", "ratio", unit="seed")
    with pytest.raises(ValueError, match="'ratio' has 1 NaN"):
        S.mean_ci_by(pd.DataFrame({"kind": ["a", "a"], "ratio": [1.0, np.nan]}), "kind", "ratio")


# ----------------------------------------------------------------------------------------------------
# McNemar


def _paired_flags(n11: int, n10: int, n01: int, n00: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-example correctness of a and b realising a paired 2x2 table (n10: a right, b wrong)."""
    a = np.r_[np.ones(n11), np.ones(n10), np.zeros(n01), np.zeros(n00)].astype(bool)
    b = np.r_[np.ones(n11), np.zeros(n10), np.ones(n01), np.zeros(n00)].astype(bool)
    perm = np.random.default_rng(0).permutation(a.size)  # order must not matter
    return a[perm], b[perm]


def test_mcnemar_exact_matches_hand_binomial_and_published_newcombe_interval():
    # Cavo et al. (2012) in Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables",
    # ch. 8: table [[59, 6], [16, 80]], first (rows) = b, second (columns) = a; exact McNemar p = 0.052,
    # Newcombe square-and-add estimate -0.0621, 95% CI (-0.1186, -0.0046)
    a, b = _paired_flags(n11=59, n10=16, n01=6, n00=80)
    res = S.mcnemar(a, b)
    assert (res["n"], res["b01"], res["b10"], res["n11"], res["n00"]) == (161, 6, 16, 59, 80)
    assert res["test"] == "exact binomial"  # 22 discordant pairs < 25
    hand_p = 2 * sum(math.comb(22, k) for k in range(7)) / 2**22
    assert res["p_value"] == pytest.approx(hand_p, rel=1e-12)
    assert res["p_value"] == pytest.approx(0.0525, abs=5e-5)
    assert res["statistic"] == 6
    assert res["diff"] == pytest.approx(-10 / 161)
    assert res["diff_ci_low"] == pytest.approx(-0.1186, abs=5e-5)
    assert res["diff_ci_high"] == pytest.approx(-0.0046, abs=5e-5)


def test_mcnemar_chi2_and_wald_match_agresti_textbook_example():
    # Agresti, Categorical Data Analysis, presidential approval: 794 approve twice, 150 approve -> disapprove,
    # 86 disapprove -> approve, 570 disapprove twice. a = first survey, b = second survey.
    a, b = _paired_flags(n11=794, n10=150, n01=86, n00=570)
    res = S.mcnemar(a, b, ci_method="wald")
    assert res["test"] == "chi2 (continuity-corrected)"
    stat = (abs(86 - 150) - 1) ** 2 / (86 + 150)  # statsmodels' mcnemar(exact=False, correction=True)
    assert res["statistic"] == pytest.approx(stat)
    assert res["p_value"] == pytest.approx(math.erfc(math.sqrt(stat / 2)), rel=1e-9)  # chi2(1) tail by hand
    assert res["diff"] == pytest.approx(-0.04)
    # Agresti: 0.04 +- 1.96 * 0.0095, i.e. (0.021, 0.059) for first minus second
    assert res["diff_ci_low"] == pytest.approx(-0.0587, abs=2e-4)
    assert res["diff_ci_high"] == pytest.approx(-0.0213, abs=2e-4)
    # with this many discordant pairs Newcombe's interval is close to Wald's
    newcombe = S.mcnemar(a, b)
    assert newcombe["diff_ci_low"] == pytest.approx(res["diff_ci_low"], abs=2e-3)
    assert newcombe["diff_ci_high"] == pytest.approx(res["diff_ci_high"], abs=2e-3)
    # forcing the exact test gives the two-sided binomial tail computed with integers
    exact = S.mcnemar(a, b, exact=True)
    hand = 2 * sum(math.comb(236, k) for k in range(87)) / 2**236
    assert exact["test"] == "exact binomial" and exact["p_value"] == pytest.approx(hand, rel=1e-9)


def test_mcnemar_forced_chi2_and_no_discordant_pairs():
    a, b = _paired_flags(n11=10, n10=2, n01=9, n00=4)
    res = S.mcnemar(a, b, exact=False)
    assert res["statistic"] == pytest.approx((7 - 1) ** 2 / 11)
    # Wald with the paired variance by hand: se = sqrt(b01 + b10 - (b01 - b10)^2 / n) / n
    wald = S.mcnemar(a, b, ci_method="wald", confidence=0.9)
    half = 1.644854 * math.sqrt(11 - 7**2 / 25) / 25
    assert (wald["diff_ci_low"], wald["diff_ci_high"]) == pytest.approx(
        (7 / 25 - half, 7 / 25 + half), abs=1e-6
    )
    same = S.mcnemar(a, a)
    assert same["p_value"] == 1.0 and same["diff"] == 0.0
    assert same["diff_ci_low"] < 0 < same["diff_ci_high"]  # Newcombe stays honest with 0 discordant pairs
    wald = S.mcnemar(a, a, ci_method="wald")
    assert wald["diff_ci_low"] == wald["diff_ci_high"] == 0.0


def test_mcnemar_rejects_bad_input():
    with pytest.raises(ValueError, match="same examples"):
        S.mcnemar([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="0/1"):
        S.mcnemar([1, 0, 2], [1, 0, 1])
    with pytest.raises(ValueError, match="NaN"):
        S.mcnemar([1.0, np.nan], [1.0, 0.0])
    with pytest.raises(ValueError, match="ci_method"):
        S.mcnemar([1, 0], [1, 0], ci_method="exact")


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
    table = S.robust_accuracy_table(frame.sample(frac=1.0, random_state=1), seed=0)  # row order irrelevant
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
        table = S.robust_accuracy_table(frame[frame.model != "se_r4"])
    row = table[(table.attack == "pgd") & (table.eps == 0.1)].iloc[0]
    assert row["n_seeds"] == 2


def test_robust_accuracy_table_input_errors():
    frame = _per_seed_frame()
    with pytest.raises(ValueError, match=r"missing column\(s\) \['seed', 'robust_acc'\]"):
        S.robust_accuracy_table(frame.drop(columns=["robust_acc", "seed"]))
    with pytest.raises(ValueError, match="'robust_acc' has 1 NaN"):
        S.robust_accuracy_table(frame.assign(robust_acc=frame.robust_acc.where(frame.index != 3)))
    with pytest.raises(ValueError, match="share the same"):
        S.robust_accuracy_table(pd.concat([frame, frame.head(1)]))
    with pytest.raises(ValueError, match="no rows with model == 'base'"):
        S.robust_accuracy_table(frame, baseline="base")
    with pytest.raises(ValueError, match="empty"):
        S.robust_accuracy_table(frame.head(0))


def _per_example_frame(n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    rows = []
    for seed in (0, 1, 2):
        for eps in (0.1, 0.2):
            base = rng.random(n) < 0.5
            se = np.where(rng.random(n) < 0.2, ~base, base) | (rng.random(n) < 0.1)
            for model, flags in (("baseline", base), ("se", se)):
                rows.append(
                    pd.DataFrame(
                        {
                            "seed": seed,
                            "model": model,
                            "attack": "pgd",
                            "eps": eps,
                            "index": np.arange(n),
                            "robust_correct": flags,
                        }
                    )
                )
    return pd.concat(rows, ignore_index=True)


def test_pooled_mcnemar_pairs_examples_and_combines_seeds():
    frame = _per_example_frame()
    shuffled = frame.sample(frac=1.0, random_state=3)  # pairing must follow the example index, not row order
    out = S.pooled_mcnemar(shuffled)
    assert len(out) == 3 * 2
    for _, row in out.iterrows():
        cell = frame[(frame.seed == row.seed) & (frame.eps == row.eps)]
        a = cell[cell.model == "baseline"].sort_values("index")["robust_correct"].to_numpy()
        b = cell[cell.model == "se"].sort_values("index")["robust_correct"].to_numpy()
        ref = S.mcnemar(a, b)
        assert (row.b01, row.b10, row.n) == (int(np.sum(~a & b)), int(np.sum(a & ~b)), 120)
        assert row.p_value == pytest.approx(ref["p_value"])
        assert row["diff"] == pytest.approx(b.mean() - a.mean())
    for eps in (0.1, 0.2):
        sub = out[out.eps == eps]
        # Fisher by hand: X = -2 sum log p ~ chi2 with 2k df, whose tail is exp(-X/2) sum_{j<k} (X/2)^j / j!
        x = -2 * np.log(sub.p_value).sum()
        k = len(sub)
        tail = math.exp(-x / 2) * sum((x / 2) ** j / math.factorial(j) for j in range(k))
        assert sub.fisher_stat.iloc[0] == pytest.approx(x)
        assert list(sub.fisher_p) == pytest.approx([tail] * k) and list(sub.n_seeds) == [3] * k


def test_pooled_mcnemar_input_errors():
    frame = _per_example_frame()
    with pytest.raises(ValueError, match=r"missing column\(s\) \['index'\]"):
        S.pooled_mcnemar(frame.drop(columns="index"))
    moved = frame.copy()
    moved.loc[(moved.model == "se") & (moved["index"] == 5), "index"] = 999
    with pytest.raises(ValueError, match="different examples"):
        S.pooled_mcnemar(moved)
    nan = frame.astype({"robust_correct": float})
    nan.loc[0, "robust_correct"] = np.nan
    with pytest.raises(ValueError, match="'robust_correct' has 1 NaN"):
        S.pooled_mcnemar(nan)


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
    result = S.verdict(*_study())
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
    assert {c["outcome"] for c in result["criteria"]} <= set(S.OUTCOMES)
    # the robustness effect is the mean over seeds of the per-seed mean over eps > 0, with the t interval
    per_seed = np.array([0.05, 0.06, 0.04, 0.05])
    ci = sps.ttest_1samp(per_seed, 0.0).confidence_interval(0.95)
    rob = crit["robustness"]
    assert rob["effect"] == pytest.approx(per_seed.mean())
    assert (rob["ci_low"], rob["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert rob["n_seeds"] == 4 and result["n_seeds"] == 4
    assert [p["eps"] for p in rob["per_eps"]] == [0.1, 0.2, 0.3]  # eps = 0 is not a robustness budget
    assert result["summary"].startswith("H1 is supported")
    assert result["settings"]["se_model"] == "se" and result["hypothesis"] == S.H1


def test_verdict_mechanism_averages_within_seed_over_eps_and_blocks():
    robust, shift, diag = _study()
    extra = shift[
        (shift.seed == 0) & (shift.kind == "adversarial") & (shift.eps == 0.1) & (shift.block == "b0")
    ]
    shift = pd.concat([shift, extra.assign(damping_ratio=extra.damping_ratio + 0.3)])  # a repeated cell
    crit = _by_id(S.verdict(robust, shift, diag))
    adv = shift[(shift.kind == "adversarial") & (shift.eps > 0)]
    per_seed = adv.groupby(["seed", "eps", "block"])["damping_ratio"].mean().groupby("seed").mean()
    ci = sps.ttest_1samp(per_seed, 0.0).confidence_interval(0.95)
    assert crit["gate_damps"]["effect"] == pytest.approx(per_seed.mean())
    assert (crit["gate_damps"]["ci_low"], crit["gate_damps"]["ci_high"]) == pytest.approx((ci.low, ci.high))


def test_verdict_not_supported_when_se_is_less_robust():
    result = S.verdict(*_study(gains=(-0.05, -0.04, -0.06, -0.05)))
    assert _by_id(result)["robustness"]["outcome"] == "not supported"
    assert result["outcome"] == "not supported"
    assert "below 0" in _by_id(result)["robustness"]["detail"]


def test_verdict_inconclusive_when_interval_straddles_zero():
    result = S.verdict(*_study(gains=(0.04, -0.03, 0.02, -0.01)))
    assert _by_id(result)["robustness"]["outcome"] == "inconclusive"
    assert result["outcome"] == "inconclusive"


def test_verdict_negligible_gain_is_not_supported():
    result = S.verdict(*_study(gains=(0.004, 0.0045, 0.0035, 0.004)), min_effect=0.01)
    rob = _by_id(result)["robustness"]
    assert rob["ci_low"] > 0 and rob["outcome"] == "not supported" and "practical size" in rob["detail"]
    assert S.verdict(*_study(gains=(0.004, 0.0045, 0.0035, 0.004)), min_effect=0.0)["outcome"] == "supported"


def test_verdict_per_eps_outcomes():
    result = S.verdict(*_study(eps_gain={0.1: 0.0, 0.2: 1.0, 0.3: 2.0}, gains=(0.05, 0.03, 0.04, 0.06)))
    per_eps = {p["eps"]: p["outcome"] for p in _by_id(result)["robustness"]["per_eps"]}
    # no gain at all at eps 0.1: the interval [0, 0] lies below min_effect
    assert per_eps == {0.1: "not supported", 0.2: "supported", 0.3: "supported"}
    assert "0.1: +0 (not supported); 0.2: +0.045 (supported)" in _by_id(result)["robustness"]["detail"]
    # the masking guard applies per eps too, whatever the overall robustness outcome
    masked = S.verdict(
        *_study(
            eps_gain={0.1: 0.0, 0.2: 1.0, 0.3: 2.0},
            gains=(0.05, 0.03, 0.04, 0.06),
            failed=[("se", "more_steps")],
        )
    )
    per_eps = {p["eps"]: p["outcome"] for p in _by_id(masked)["robustness"]["per_eps"]}
    assert per_eps == {0.1: "not supported", 0.2: "inconclusive", 0.3: "inconclusive"}


def test_verdict_masking_failure_downgrades_robustness():
    result = S.verdict(*_study(failed=[("se", "square_vs_pgd")]))
    crit = _by_id(result)
    assert crit["gradient_masking"]["outcome"] == "not supported"
    assert crit["robustness"]["outcome"] == "inconclusive"
    assert "se: square_vs_pgd" in crit["robustness"]["detail"]
    assert all(p["outcome"] != "supported" for p in crit["robustness"]["per_eps"])
    assert result["outcome"] == "inconclusive"
    # a failure of the baseline also blocks support, and no diagnostics at all blocks it too
    assert S.verdict(*_study(failed=[("baseline", "more_steps")]))["outcome"] == "inconclusive"
    robust, shift, _ = _study()
    none = S.verdict(robust, shift, None)
    assert none["outcome"] == "inconclusive" and _by_id(none)["gradient_masking"]["outcome"] == "inconclusive"


def test_verdict_masked_baseline_voids_a_loss_but_masked_se_does_not():
    loss = (-0.05, -0.04, -0.06, -0.05)
    assert S.verdict(*_study(gains=loss, failed=[("baseline", "more_steps")]))["outcome"] == "inconclusive"
    assert S.verdict(*_study(gains=loss, failed=[("se", "more_steps")]))["outcome"] == "not supported"


def test_verdict_mechanism_failures():
    undamped = S.verdict(*_study(damping=1.3, noise_damping=1.3))
    assert _by_id(undamped)["gate_damps"]["outcome"] == "not supported"
    assert undamped["outcome"] == "not supported"  # robust but the mechanism is refuted
    like_noise = S.verdict(*_study(noise_damping=0.7))
    assert _by_id(like_noise)["beyond_noise"]["outcome"] == "inconclusive"
    assert like_noise["outcome"] == "inconclusive"
    less_than_noise = S.verdict(*_study(noise_damping=0.5))
    assert _by_id(less_than_noise)["beyond_noise"]["outcome"] == "not supported"
    no_noise = S.verdict(*_study(with_noise=False))
    assert _by_id(no_noise)["beyond_noise"]["outcome"] == "inconclusive"
    assert "sign_noise" in _by_id(no_noise)["beyond_noise"]["detail"]
    stable_z = S.verdict(*_study(z_over_u=1.4))
    assert _by_id(stable_z)["global_state_stable"]["outcome"] == "not supported"
    s_moves = S.verdict(*_study(s_change=0.3))
    assert _by_id(s_moves)["excitation_stable"]["outcome"] == "not supported"
    skipped = S.verdict(*_study(s_change=0.3), max_s_change=None)
    assert "excitation_stable" not in _by_id(skipped) and skipped["outcome"] == "supported"


def test_verdict_single_seed_is_inconclusive():
    result = S.verdict(*_study(gains=(0.05,)))
    assert result["outcome"] == "inconclusive"
    assert all(c["outcome"] == "inconclusive" for c in result["criteria"] if c["role"] != "guard")


def test_verdict_input_errors():
    robust, shift, diag = _study()
    with pytest.raises(ValueError, match=r"missing column\(s\) \['damping_ratio'\]"):
        S.verdict(robust, shift.drop(columns="damping_ratio"), diag)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['passed'\]"):
        S.verdict(robust, shift, diag.drop(columns="passed"))
    with pytest.raises(ValueError, match="'robust_acc' has 1 NaN"):
        S.verdict(
            robust.assign(robust_acc=robust.robust_acc.where(robust.index != 3)), shift, diag
        )  # pgd, eps 0.1
    bad = shift.copy()
    bad.loc[(bad.kind == "adversarial") & (bad.eps == 0.2), "z_over_u"] = np.nan
    with pytest.raises(ValueError, match="'z_over_u' has"):
        S.verdict(robust, bad, diag)
    with pytest.raises(ValueError, match="attacks present: \\['fgsm', 'pgd'\\]"):
        S.verdict(robust, shift, diag, attack="apgd")
    with pytest.raises(ValueError, match="kinds present"):
        S.verdict(robust, shift, diag, adversarial_kind="pgd")
    several = pd.concat([robust, robust[robust.model == "se"].assign(model="se_r4")])
    with pytest.raises(ValueError, match="se_model="):
        S.verdict(several, shift, diag)
    assert S.verdict(several, shift, diag, se_model="se_r4")["settings"]["se_model"] == "se_r4"
    with pytest.raises(ValueError, match="empty"):
        S.verdict(robust.head(0), shift, diag)
    with pytest.raises(ValueError, match="alpha"):
        S.verdict(robust, shift, diag, alpha=5)
    with pytest.raises(ValueError, match="max_s_change"):
        S.verdict(robust, shift, diag, max_s_change=-1)
