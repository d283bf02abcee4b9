"""serobust.stats.summaries: the one table of summary recipes gives, through the results and through the
report, exactly the tables the two hand-written recipes gave (same columns, order, dtypes, rows, numbers)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serobust.config import study_config_from_dict
from serobust.errors import InputError
from serobust.names import ADVERSARIAL, BASELINE, GAUSSIAN
from serobust.stats.intervals import mean_ci_by
from serobust.stats.summaries import SUMMARIES, summary_table, with_summaries
from serobust.study.results import statistics

CI = {"confidence": 0.9, "n_resamples": 1000}
SEEDS = (0, 1, 2)


def _study_tables() -> dict[str, pd.DataFrame]:
    """The source tables of a small study with three seeds, as :func:`serobust.study.results.collect` gives them."""
    rng = np.random.default_rng(7)
    robust, shift, interventions, sensitivity, autoattack, detection = [], [], [], [], [], []
    for seed in SEEDS:
        for model in (BASELINE, "se"):
            gain = 0.05 if model == "se" else 0.0
            for eps in (0.0, 0.1, 0.2, 0.3):
                acc = 0.95 - 2.5 * eps + gain * (eps > 0) + rng.normal(0, 0.01)
                robust.append({"seed": seed, "model": model, "attack": "pgd", "eps": eps, "robust_acc": acc,
                               "clean_acc": 0.95})
            for condition, block in (("clean", None), ("frozen", "b0"), ("frozen", "b1"), ("noise", None)):
                for _ in range(2):  # two rows per seed and group: averaged within the seed first
                    interventions.append({"seed": seed, "model": model, "condition": condition, "block": block,
                                          "accuracy": rng.uniform(0.5, 0.9)})
            for eps in (0.1, 0.3):
                for step in (1, 2):
                    autoattack.append({"seed": seed, "model": model, "eps": eps, "step": step,
                                       "component": "apgd-ce" if step == 1 else "square",
                                       "robust_acc": rng.uniform(0.0, 0.6)})
                for layer in ("conv1", "conv2"):
                    sensitivity.append({"seed": seed, "twin": "se", "member": model, "eps": eps, "layer": layer,
                                        "rel_change": rng.uniform(0.1, 1.0)})
        for kind in (ADVERSARIAL, GAUSSIAN):
            for eps in (0.0, 0.1, 0.2):
                for block in ("b0", "b1", "b2"):  # several blocks per seed: averaged within the seed first
                    row = {"seed": seed, "model": "se", "kind": kind, "eps": eps, "block": block}
                    row.update({q: rng.uniform(0.2, 1.2) for q in ("damping_ratio", "z_over_u", "s_rel_change",
                                                                    "z_rel_change", "u_rel_change", "absorb_ratio")})
                    shift.append(row)
        for features in ("excitation", "pooled"):
            for perturbation in ("pgd", "adaptive"):
                for eps in (0.1, 0.2):
                    auroc = np.nan if (seed, eps, perturbation) == (1, 0.2, "adaptive") else rng.uniform(0.5, 1.0)
                    detection.append({"seed": seed, "model": "se", "features": features,
                                      "perturbation": perturbation, "eps": eps, "auroc": auroc})
    frames = {"robust": robust, "shift": shift, "interventions": interventions, "sensitivity": sensitivity,
              "autoattack": autoattack, "detection": detection}
    return {name: pd.DataFrame(rows) for name, rows in frames.items()}


def _old_recipes(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The summaries as results.statistics wrote them out by hand before the table of recipes (the reference)."""
    out = {"robust_summary": mean_ci_by(tables["robust"], by=["model", "attack", "eps"], value="robust_acc",
                                        unit="seed", **CI)}
    parts = []
    for q in ("damping_ratio", "z_over_u", "s_rel_change", "z_rel_change", "u_rel_change", "absorb_ratio"):
        part = mean_ci_by(tables["shift"], by=["model", "kind", "eps"], value=q, unit="seed", **CI).copy()
        part.insert(0, "quantity", q)
        parts.append(part)
    out["shift_stats"] = pd.concat(parts, ignore_index=True)
    iv = tables["interventions"].assign(block=tables["interventions"]["block"].fillna("none"))
    out["interventions_summary"] = mean_ci_by(iv, by=["model", "condition", "block"], value="accuracy", unit="seed",
                                              **CI)
    out["sensitivity_summary"] = mean_ci_by(tables["sensitivity"], by=["member", "eps", "layer"], value="rel_change",
                                            unit="seed", **CI)
    out["autoattack_summary"] = mean_ci_by(tables["autoattack"], by=["model", "eps", "step", "component"],
                                           value="robust_acc", unit="seed", **CI)
    scored = tables["detection"].dropna(subset=["auroc"])
    out["detection_summary"] = mean_ci_by(scored, by=["model", "features", "perturbation", "eps"], value="auroc",
                                          unit="seed", **CI)
    return out


@pytest.fixture(scope="module")
def study() -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    tables = _study_tables()
    return tables, _old_recipes(tables)


def _assert_same(made: pd.DataFrame, expected: pd.DataFrame, name: str) -> None:
    assert list(made.columns) == list(expected.columns), name
    assert list(made.dtypes) == list(expected.dtypes), name
    pd.testing.assert_frame_equal(made, expected, check_exact=True, obj=name)


def test_the_table_of_recipes_covers_every_summary_of_a_study(study):
    _, expected = study
    assert set(SUMMARIES) == set(expected)


@pytest.mark.parametrize("name", sorted(SUMMARIES))
def test_each_summary_equals_the_hand_written_recipe(study, name):
    tables, expected = study
    made = summary_table(name, tables, **CI)
    _assert_same(made, expected[name], name)
    assert made["n"].max() == len(SEEDS)  # the seed is the unit: rows within a seed count once


def test_the_results_and_the_report_make_the_same_summaries_as_before(study):
    tables, expected = study
    cfg = study_config_from_dict({"study": {"name": "summaries"}, "stats": CI})
    made, verdicts = statistics({k: v.copy() for k, v in tables.items()}, cfg, main_attack="pgd", twins=["se"])
    assert set(verdicts) == {"se"}
    filled = with_summaries(tables, **CI)
    for name, frame in expected.items():
        _assert_same(made[name], frame, f"results {name}")
        _assert_same(filled[name], frame, f"report {name}")
    shown = with_summaries({**tables, "robust_summary": expected["robust_summary"].head(1)}, **CI)
    assert len(shown["robust_summary"]) == 1  # a summary the run has is never remade


def test_a_summary_without_its_source_or_rows_is_absent_and_bad_inputs_say_why(study):
    tables, _ = study
    assert summary_table("shift_stats", {"robust": tables["robust"]}) is None
    unscored = tables["detection"].assign(auroc=np.nan)
    assert summary_table("detection_summary", {"detection": unscored}) is None
    assert "detection_summary" not in with_summaries({"detection": unscored})
    with pytest.raises(KeyError, match="no summary table 'robust_stats'; summaries:"):
        summary_table("robust_stats", tables)
    with pytest.raises(InputError, match=r"lacks the group column\(s\) \['layer'\] of 'sensitivity_summary'"):
        summary_table("sensitivity_summary", {"sensitivity": tables["sensitivity"].drop(columns="layer")})
    with pytest.raises(InputError, match="NaN"):  # only the detection summary leaves rows without a value out
        summary_table("robust_summary", {"robust": tables["robust"].assign(robust_acc=np.nan)})
