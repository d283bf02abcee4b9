"""serobust.stats.robust_accuracy: budget labels, informative budgets, and the headline table against pandas."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

import serobust as sr
from serobust.stats import robust_accuracy as R

PGD = "pgd(random_start=True, steps=10)"
MEMBERS = ("baseline", "se_r4", "se_r16")
EPS = (0.0, 2 / 255, 4 / 255, 8 / 255, 16 / 255)


def _sweep(n_seeds: int = 4, seed: int = 3) -> pd.DataFrame:
    """A per-seed robust table like evaluate()'s summary: three members, pgd and fgsm, eps 0 = clean."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_seeds):
        for model in MEMBERS:
            clean = 0.9 + rng.uniform(-0.02, 0.02)
            for attack in (PGD, "fgsm"):
                for eps in EPS:
                    acc = clean if eps == 0 else max(0.0, clean - 16 * eps + rng.normal(0, 0.03))
                    rows.append(
                        {"seed": s, "model": model, "attack": attack, "eps": eps, "clean_acc": clean, "robust_acc": acc}
                    )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "eps, per_255, text",
    [
        (8 / 255, True, "8/255"),
        (8 / 255, False, "0.0313725"),
        (0.1, True, "0.1"),  # 25.5/255 is not a whole number of levels
        (0.2, True, "51/255"),  # it is, and the caller asked
        (0.0, True, "0"),
        (0.05, False, "0.05"),
    ],
)
def test_eps_label(eps, per_255, text):
    assert R.eps_label(eps, per_255=per_255) == text


def test_informative_budgets_floor_ceiling_and_switches():
    rows = []
    for s in range(3):
        for eps, acc in ((0.0, 0.9), (0.01, 0.89), (0.05, 0.5), (0.1, 0.02), (0.2, 0.0)):
            rows += [{"seed": s, "model": "baseline", "attack": "pgd", "eps": eps, "robust_acc": acc}]
            rows += [{"seed": s, "model": "se", "attack": "pgd", "eps": eps, "robust_acc": acc}]
    table = sr.informative_budgets(pd.DataFrame(rows), attack="pgd")
    assert table.columns.tolist() == ["eps", "baseline_robust_acc", "se_robust_acc", "pair_robust_acc",
                                      "pair_clean_acc", "informative", "reason"]
    assert table.eps.tolist() == [0.01, 0.05, 0.1, 0.2]  # eps = 0 is the clean accuracy, not a budget
    assert table.informative.tolist() == [False, True, False, False]
    assert table.reason[0].startswith("at the ceiling") and table.reason[1] is None
    assert table.reason[2].startswith("at the floor: the pair keeps 2.0%")  # exactly at the floor counts
    assert table.pair_clean_acc.tolist() == pytest.approx([0.9] * 4)
    off = sr.informative_budgets(pd.DataFrame(rows), attack="pgd", floor=None, ceiling_gap=None)
    assert off.informative.all() and off.reason.isna().all()
    # without eps = 0 rows the clean accuracy comes from a clean_acc column, else the ceiling is not applied
    no_clean = pd.DataFrame(rows).query("eps > 0")
    assert math.isnan(sr.informative_budgets(no_clean, attack="pgd").pair_clean_acc[0])
    assert sr.informative_budgets(no_clean, attack="pgd").informative.tolist() == [True, True, False, False]
    with_col = no_clean.assign(clean_acc=0.9)
    assert sr.informative_budgets(with_col, attack="pgd").informative.tolist() == [False, True, False, False]
    with pytest.raises(ValueError, match=r"attacks present: \['pgd'\]"):
        sr.informative_budgets(pd.DataFrame(rows), attack="fgsm")


def test_informative_budgets_use_the_pairs_mean_not_the_baseline():
    # the baseline at the floor, the SE twin at 50%: the pair's mean (25%) is informative, so it is tested
    rows = []
    for s in range(3):
        for model, accs in (("baseline", (0.9, 0.6, 0.0)), ("se", (0.9, 0.6, 0.5))):
            rows += [{"seed": s, "model": model, "attack": "pgd", "eps": e, "robust_acc": a}
                     for e, a in zip((0.0, 0.1, 0.3), accs)]
    table = sr.informative_budgets(pd.DataFrame(rows), attack="pgd").set_index("eps")
    assert bool(table.loc[0.3, "informative"]) and table.loc[0.3, "pair_robust_acc"] == pytest.approx(0.25)
    # the array rule the verdict and the calibration benchmark run gives the same answer
    mask = R.informative_mask(np.array([0.6, 0.25, 0.01, 0.89]), 0.9)
    assert mask.tolist() == [True, True, False, False]
    several = pd.concat([pd.DataFrame(rows), pd.DataFrame(rows).query("model == 'se'").assign(model="se_r8")])
    with pytest.raises(ValueError, match="se_model="):
        sr.informative_budgets(several, attack="pgd")
    assert sr.informative_budgets(several, attack="pgd", se_model="se_r8").informative.tolist() == [True, True]


def _independent_headline(frame: pd.DataFrame, budgets: list[float]) -> pd.DataFrame:
    """The headline table recomputed with plain pandas and scipy's paired t interval."""
    pgd = frame[frame.attack == PGD]
    clean = pgd[pgd.eps == 0].pivot(index="seed", columns="model", values="robust_acc")
    at = pgd[pgd.eps.isin(budgets)].pivot_table(index="seed", columns=["model", "eps"], values="robust_acc")
    out = []
    for model in MEMBERS:
        row = {"model": model, "n_seeds": clean[model].notna().sum(), "clean_acc": clean[model].mean()}
        for eps in budgets:
            row[f"robust_acc@{R.eps_label(eps, per_255=True)}"] = at[(model, eps)].mean()
        if model == "baseline":
            row.update(diff=np.nan, diff_ci_low=np.nan, diff_ci_high=np.nan)
        else:
            d = (at[model] - at["baseline"]).mean(axis=1)  # per seed, mean over the budgets
            ci = sps.ttest_1samp(d, 0.0).confidence_interval(0.95)
            row.update(diff=d.mean(), diff_ci_low=ci.low, diff_ci_high=ci.high)
        out.append(row)
    return pd.DataFrame(out)


def test_headline_table_matches_an_independent_pandas_computation():
    frame = _sweep()
    budgets = [4 / 255, 8 / 255]
    table = sr.headline_table(frame, attack=PGD, budgets=["4/255", 8 / 255], per_255=True)
    shuffled = sr.headline_table(frame.sample(frac=1.0, random_state=0), attack=PGD, budgets=budgets, per_255=True)
    order = shuffled.model.map(MEMBERS.index).argsort()  # members in order of appearance, the baseline first
    last = frame.sort_values("model", key=lambda m: m == "baseline", kind="stable")  # the baseline's rows last
    assert sr.headline_table(last, attack=PGD, budgets=budgets).model.tolist() == ["baseline", "se_r4", "se_r16"]
    pd.testing.assert_frame_equal(shuffled.iloc[order].reset_index(drop=True), table, rtol=1e-12)
    assert table.columns.tolist() == [
        "model", "n_seeds", "clean_acc", "robust_acc@4/255", "robust_acc@8/255", "diff", "diff_ci_low", "diff_ci_high"
    ]  # fmt: skip
    assert table.model.tolist() == list(MEMBERS) and table.n_seeds.tolist() == [4, 4, 4]
    pd.testing.assert_frame_equal(table, _independent_headline(frame, budgets), check_dtype=False, rtol=1e-12)
    assert table.diff_ci_low.iloc[1] < table["diff"].iloc[1] < table.diff_ci_high.iloc[1]
    values = table.drop(columns=["model", "n_seeds"]).to_numpy(dtype=float)
    assert np.nanmin(values[:, :3]) >= 0 and np.nanmax(values[:, :3]) <= 1  # fractions
    # %g labels unless asked, and the clean accuracy from the clean_acc column when there are no eps = 0 rows
    plain = sr.headline_table(frame[frame.eps > 0], attack=PGD, budgets=budgets)
    assert "robust_acc@0.0156863" in plain.columns
    assert plain.clean_acc.tolist() == pytest.approx(table.clean_acc.tolist())


def test_headline_table_diff_is_the_verdicts_effect_at_its_tested_budgets():
    frame = _sweep()
    pair = frame[frame.model.isin(["baseline", "se_r4"])][["seed", "model", "attack", "eps", "robust_acc"]]
    verdict = sr.verdict(pair, None, None, attack=PGD, se_model="se_r4").to_dict()
    rob = next(c for c in verdict["criteria"] if c["id"] == "robustness")
    assert 1 <= len(rob["budgets_tested"]) < len(EPS) - 1  # the sweep reaches the floor at 16/255
    table = sr.headline_table(frame, attack=PGD, budgets=rob["budgets_tested"]).set_index("model")
    assert table.loc["se_r4", "diff"] == pytest.approx(rob["effect"], abs=1e-15)
    assert (table.loc["se_r4", "diff_ci_low"], table.loc["se_r4", "diff_ci_high"]) == pytest.approx(
        (rob["ci_low"], rob["ci_high"])
    )


def test_headline_table_input_errors():
    frame = _sweep()
    with pytest.raises(ValueError, match=r"budgets\[1\] = 0.07 has no .* rows; budgets present"):
        sr.headline_table(frame, attack=PGD, budgets=[4 / 255, 0.07])
    with pytest.raises(ValueError, match="budgets must be attack budgets > 0"):
        sr.headline_table(frame, attack=PGD, budgets=[0, 4 / 255])
    with pytest.raises(ValueError, match="same budget twice"):
        sr.headline_table(frame, attack=PGD, budgets=["4/255", 4 / 255])
    with pytest.raises(ValueError, match=r"attacks present: \['fgsm', 'pgd\(random_start=True, steps=10\)'\]"):
        sr.headline_table(frame, attack="pgd", budgets=[4 / 255])
    with pytest.raises(ValueError, match="no clean accuracy for 'baseline'"):
        sr.headline_table(frame[frame.eps > 0].drop(columns="clean_acc"), attack=PGD, budgets=[4 / 255])
    with pytest.raises(ValueError, match="model == 'base'"):
        sr.headline_table(frame, attack=PGD, budgets=[4 / 255], baseline="base")
    with pytest.raises(ValueError, match="'robust_acc' has 1 NaN"):
        sr.headline_table(frame.assign(robust_acc=frame.robust_acc.where(frame.index != 2)), attack=PGD, budgets=[4 / 255])


def test_headline_table_with_per_image_results_gives_the_verdicts_crossed_interval():
    rng = np.random.default_rng(4)
    rows, per = [], []
    for seed in range(3):
        base = rng.random(100) < 0.5
        se = np.where(rng.random(100) < 0.7, base, rng.random(100) < 0.55)
        for model, flags in (("baseline", base), ("se", se)):
            rows += [{"seed": seed, "model": model, "attack": "pgd", "eps": 0.0, "robust_acc": 0.97},
                     {"seed": seed, "model": model, "attack": "pgd", "eps": 0.1, "robust_acc": flags.mean()}]
            per += [{"seed": seed, "model": model, "attack": "pgd", "eps": 0.1, "index": i, "robust_correct": f}
                    for i, f in enumerate(flags)]
    robust, per_example = pd.DataFrame(rows), pd.DataFrame(per)
    rob = next(c for c in sr.verdict(robust, None, None, per_example=per_example).criteria if c.id == "robustness")
    table = sr.headline_table(robust, attack="pgd", budgets=[0.1], per_example=per_example).set_index("model")
    assert (table.loc["se", "diff"], table.loc["se", "diff_ci_low"], table.loc["se", "diff_ci_high"]) == \
        pytest.approx((rob.effect, rob.ci_low, rob.ci_high))
    seed_only = sr.headline_table(robust, attack="pgd", budgets=[0.1]).set_index("model")
    assert seed_only.loc["se", "diff"] == pytest.approx(rob.effect)
