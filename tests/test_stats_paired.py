"""serobust.stats.paired against hand computations and published tables: McNemar, per cell and pooled."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from serobust.stats import paired as P

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
    res = P.mcnemar(a, b)
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
    res = P.mcnemar(a, b, ci_method="wald")
    assert res["test"] == "chi2 (continuity-corrected)"
    stat = (abs(86 - 150) - 1) ** 2 / (86 + 150)  # statsmodels' mcnemar(exact=False, correction=True)
    assert res["statistic"] == pytest.approx(stat)
    assert res["p_value"] == pytest.approx(math.erfc(math.sqrt(stat / 2)), rel=1e-9)  # chi2(1) tail by hand
    assert res["diff"] == pytest.approx(-0.04)
    # Agresti: 0.04 +- 1.96 * 0.0095, i.e. (0.021, 0.059) for first minus second
    assert res["diff_ci_low"] == pytest.approx(-0.0587, abs=2e-4)
    assert res["diff_ci_high"] == pytest.approx(-0.0213, abs=2e-4)
    # with this many discordant pairs Newcombe's interval is close to Wald's
    newcombe = P.mcnemar(a, b)
    assert newcombe["diff_ci_low"] == pytest.approx(res["diff_ci_low"], abs=2e-3)
    assert newcombe["diff_ci_high"] == pytest.approx(res["diff_ci_high"], abs=2e-3)
    # forcing the exact test gives the two-sided binomial tail computed with integers
    exact = P.mcnemar(a, b, exact=True)
    hand = 2 * sum(math.comb(236, k) for k in range(87)) / 2**236
    assert exact["test"] == "exact binomial" and exact["p_value"] == pytest.approx(hand, rel=1e-9)


def test_mcnemar_forced_chi2_and_no_discordant_pairs():
    a, b = _paired_flags(n11=10, n10=2, n01=9, n00=4)
    res = P.mcnemar(a, b, exact=False)
    assert res["statistic"] == pytest.approx((7 - 1) ** 2 / 11)
    # Wald with the paired variance by hand: se = sqrt(b01 + b10 - (b01 - b10)^2 / n) / n
    wald = P.mcnemar(a, b, ci_method="wald", confidence=0.9)
    half = 1.644854 * math.sqrt(11 - 7**2 / 25) / 25
    assert (wald["diff_ci_low"], wald["diff_ci_high"]) == pytest.approx(
        (7 / 25 - half, 7 / 25 + half), abs=1e-6
    )
    same = P.mcnemar(a, a)
    assert same["p_value"] == 1.0 and same["diff"] == 0.0
    assert same["diff_ci_low"] < 0 < same["diff_ci_high"]  # Newcombe stays honest with 0 discordant pairs
    wald = P.mcnemar(a, a, ci_method="wald")
    assert wald["diff_ci_low"] == wald["diff_ci_high"] == 0.0


def test_mcnemar_rejects_bad_input():
    with pytest.raises(ValueError, match="same examples"):
        P.mcnemar([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="0/1"):
        P.mcnemar([1, 0, 2], [1, 0, 1])
    with pytest.raises(ValueError, match="NaN"):
        P.mcnemar([1.0, np.nan], [1.0, 0.0])
    with pytest.raises(ValueError, match="ci_method"):
        P.mcnemar([1, 0], [1, 0], ci_method="exact")



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
    out = P.pooled_mcnemar(shuffled)
    assert len(out) == 3 * 2
    for _, row in out.iterrows():
        cell = frame[(frame.seed == row.seed) & (frame.eps == row.eps)]
        a = cell[cell.model == "baseline"].sort_values("index")["robust_correct"].to_numpy()
        b = cell[cell.model == "se"].sort_values("index")["robust_correct"].to_numpy()
        ref = P.mcnemar(a, b)
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
        P.pooled_mcnemar(frame.drop(columns="index"))
    moved = frame.copy()
    moved.loc[(moved.model == "se") & (moved["index"] == 5), "index"] = 999
    with pytest.raises(ValueError, match="different examples"):
        P.pooled_mcnemar(moved)
    nan = frame.astype({"robust_correct": float})
    nan.loc[0, "robust_correct"] = np.nan
    with pytest.raises(ValueError, match="'robust_correct' has 1 NaN"):
        P.pooled_mcnemar(nan)


def test_pooled_mcnemar_leaves_out_one_sided_cells_with_a_warning():
    frame = _per_example_frame()
    lone = (frame.model == "se") & (frame.seed == 1) & (frame.eps == 0.2)
    with pytest.warns(UserWarning, match=r"1 \(attack, eps, seed\) cell\(s\) were evaluated for only one") as rec:
        out = P.pooled_mcnemar(frame[~lone])
    assert rec[0].filename == __file__  # the warning points at the caller's line
    assert len(out) == 5 and not ((out.seed == 1) & (out.eps == 0.2)).any()
    assert list(out[out.eps == 0.2].n_seeds) == [2, 2]
    only_base = frame[frame.model == "baseline"].assign(model="baseline")
    with pytest.raises(ValueError, match="no rows with model == 'base'"):
        P.pooled_mcnemar(only_base, baseline="base")
    assert P.pooled_mcnemar(only_base).empty  # nothing to compare against
