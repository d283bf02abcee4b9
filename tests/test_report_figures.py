"""Report figures and their pieces: one colour per member everywhere, intervals from the tables, labels.

``synthetic_study()`` builds the tables and results of a small study in the pipeline's contract (three
seeds, a baseline and two SE twins, budgets written as k/255) without running one; the page tests in
test_report_page.py import it too.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from serobust.names import ADVERSARIAL, BASELINE, GAUSSIAN, SIGN_NOISE
from serobust.report import figures
from serobust.report.figures import FigureStyle
from serobust.report.labels import EpsLabeler, attack_name, block_label, percent, points
from serobust.report.palette import BASELINE_COLOR, TWIN_COLORS, member_palette
from serobust.report.plan import PlanInput, plan_figures
from serobust.stats.intervals import mean_ci_by
from serobust.stats.summaries import summarize, with_summaries

MEMBERS = ("baseline", "se_r4", "se_r16")
TWINS = MEMBERS[1:]
SEEDS = (0, 1, 2)
PGD = "pgd(random_start=True, steps=10)"
EPS = (0.0, 4 / 255, 8 / 255, 16 / 255, 0.3)
EPS_LABELS = {str(4 / 255): "4/255", str(8 / 255): "8/255", str(16 / 255): "16/255", "0.3": "0.3", "0.0": "0"}
BLOCKS = ("features.0.se", "features.2.se", "features.10.se")  # features.10 sorts before features.2 as text


def _robust(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for seed in SEEDS:
        for i, model in enumerate(MEMBERS):
            clean = 0.97 - 0.01 * i + 0.005 * rng.standard_normal()
            for attack, k in (("fgsm", 8.0), (PGD, 14.0), ("worst_case", 15.0)):
                for eps in EPS:
                    # se_r16 loses 6 points at the small budgets: an "opposite" twin
                    acc = clean * math.exp(-k * eps) - (0.06 if model == "se_r16" and 0 < eps < 0.1 else 0.0)
                    acc = float(np.clip(acc + 0.01 * rng.standard_normal() * (eps > 0), 0, clean))
                    rows.append({"seed": seed, "model": model, "attack": attack, "eps": eps, "clean_acc": clean,
                                 "robust_acc": clean if eps == 0 else acc, "n": 200})
    return pd.DataFrame(rows)


def _shift(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, channels = [], []
    for seed in SEEDS:
        for model in TWINS:
            for kind, gain in ((ADVERSARIAL, 2.0), (SIGN_NOISE, 1.0), (GAUSSIAN, 0.9)):
                for eps in EPS[1:4]:
                    for depth, block in enumerate(BLOCKS):
                        u = gain * eps * (1 + depth) * (1 + 0.1 * rng.standard_normal())
                        rows.append({"seed": seed, "model": model, "perturbation": PGD if kind == ADVERSARIAL else kind,
                                     "kind": kind, "eps": eps, "block": block, "depth": depth,
                                     "u_rel_change": u, "z_rel_change": 0.8 * u, "s_rel_change": 0.05 * u,
                                     "g_rel_change": 0.9 * u,
                                     "damping_ratio": 1 + 0.02 * rng.standard_normal(),
                                     "z_over_u": 0.8 + 0.05 * rng.standard_normal(),
                                     "absorb_ratio": 1 - 0.05 * gain + 0.01 * rng.standard_normal()})
            for depth, block in enumerate(BLOCKS):
                for c in range(8 * (depth + 1)):
                    channels.append({"seed": seed, "model": model, "eps": 8 / 255, "block": block, "depth": depth,
                                     "channel": c, "s_abs_change": abs(0.01 * (depth + 1) * rng.standard_normal())})
    return pd.DataFrame(rows), pd.DataFrame(channels)


def _mechanism(rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    sens, inter, hist = [], [], []
    for seed in SEEDS:
        for twin in TWINS:
            for member in (BASELINE, twin):
                for eps in EPS[2:4]:
                    for depth, block in enumerate(BLOCKS):
                        sens.append({"seed": seed, "twin": twin, "member": member, "eps": eps,
                                     "layer": block_label(block), "depth": depth,
                                     "rel_change": eps * (1 + depth) * (1 + 0.1 * rng.standard_normal())})
            accs = {("clean", None): 0.97, ("adversarial", None): 0.05, ("excitation_swap", "all"): 0.30,
                    ("frozen_gate", "all"): 0.08, ("clean_frozen_gate", "all"): 0.95}
            accs.update({("block_swap", b): 0.05 + 0.05 * d for d, b in enumerate(BLOCKS)})
            for (cond, block), acc in accs.items():
                inter.append({"seed": seed, "model": twin, "condition": cond, "block": block,
                              "accuracy": acc + 0.01 * rng.standard_normal(), "n": 200})
        for model in MEMBERS:
            for epoch in (1, 2, 3):
                hist.append({"seed": seed, "model": model, "epoch": epoch, "train_loss": 2.0 / epoch,
                             "test_acc": 0.6 + 0.1 * epoch + 0.01 * rng.standard_normal()})
    diagnostics = pd.DataFrame([{"seed": 0, "model": m, "check": "large_eps_accuracy_near_zero", "passed": True,
                                 "detail": "0.0% accuracy at eps=0.6"} for m in MEMBERS])
    mcnemar = pd.DataFrame([{"model": t, "attack": PGD, "eps": 8 / 255, "seed": s, "n": 200, "n11": 150, "b01": 3,
                             "b10": 12, "n00": 35, "p_value": 0.035, "fisher_p": 0.01} for t in TWINS for s in SEEDS])
    return {"sensitivity": pd.DataFrame(sens), "interventions": pd.DataFrame(inter), "history": pd.DataFrame(hist),
            "diagnostics": diagnostics, "mcnemar": mcnemar}


def _verdict(twin: str, robust_stats: pd.DataFrame) -> dict:
    """A verdict in the contract of serobust.verdict (headline, per-budget labels, dropped budgets)."""
    st = robust_stats[(robust_stats["model"] == twin) & (robust_stats["attack"] == PGD)]
    tested = [4 / 255, 8 / 255]
    sub = st[st["eps"].isin(tested)]
    effect, low, high = float(sub["mean_diff"].mean()), float(sub["ci_low"].mean()), float(sub["ci_high"].mean())
    outcome = "opposite" if twin == "se_r16" else "inconclusive"
    per_eps = [{"eps": float(r.eps), "outcome": outcome if r.eps in tested else "inconclusive",
                "effect": float(r.mean_diff), "ci_low": float(r.ci_low), "ci_high": float(r.ci_high), "n_seeds": 3,
                "t_p": float(r.t_p) if pd.notna(r.t_p) else None, "informative": bool(r.eps in tested),
                "reason": None if r.eps in tested else "baseline at the floor (<= 2%)"} for r in st.itertuples()]
    direction = "less" if effect < 0 else "more"
    return {
        "hypothesis": "SE twins lose less accuracy under attack than their baselines.",
        "outcome": outcome,
        "headline": f"At the informative budgets (eps 4/255, 8/255), {twin} is {abs(100 * effect):.1f} percentage "
                    f"points {direction} robust than baseline under {PGD} (95% CI {100 * low:.1f} to "
                    f"{100 * high:.1f}, 3 seeds).",
        "summary": f"H1 is {outcome} for {twin}.",
        "criteria": [
            {"id": "robustness", "role": "robustness", "statement": f"{twin} keeps more robust accuracy.",
             "outcome": outcome, "effect": effect, "ci_low": low, "ci_high": high, "n_seeds": 3, "detail": "...",
             "per_eps": per_eps, "budgets_tested": tested,
             "budgets_dropped": [{"eps": e, "reason": "baseline at the floor (<= 2%)"} for e in (16 / 255, 0.3)]},
            {"id": "gate_damps", "role": "mechanism", "statement": "damping ratio < 1", "outcome": "inconclusive",
             "effect": 1.01, "ci_low": 0.99, "ci_high": 1.03, "n_seeds": 3, "detail": "interval contains 1"},
            {"id": "gradient_masking", "role": "guard", "statement": "no masking", "outcome": "supported",
             "effect": 0.0, "ci_low": None, "ci_high": None, "n_seeds": 0, "detail": "all checks passed"},
        ],
        "n_seeds": 3,
    }


def synthetic_study(*, new_format: bool = True) -> tuple[dict, dict[str, pd.DataFrame], dict]:
    """(results, tables, examples) of a small study; ``new_format=False`` mimics results of older runs."""
    from serobust.stats.differences import robust_accuracy_table

    rng = np.random.default_rng(0)
    robust = _robust(rng)
    shift, channels = _shift(rng)
    tables = {"robust": robust, "shift": shift, "shift_channels": channels, **_mechanism(rng),
              "robust_stats": robust_accuracy_table(robust[["seed", "model", "attack", "eps", "robust_acc"]],
                                                    n_resamples=1000)}
    verdicts = {t: _verdict(t, tables["robust_stats"]) for t in TWINS}
    meta = {"study": "synthetic", "description": "A made-up study for the report tests.", "config_file": "x.toml",
            "members": list(MEMBERS), "seeds": list(SEEDS), "main_attack": PGD, "time_s": 123.4,
            "dataset": {"name": "digits", "train": 1400, "test": 397, "eval": 200, "num_classes": 10,
                        "image_size": [8, 8]}}
    if new_format:
        meta.update(run_id="r1", started="2026-01-01T00:00:00", finished="2026-01-01T00:02:03",
                    versions={"python": "3.11", "torch": "2.14"}, git={"commit": "abc123", "dirty": True},
                    device={"type": "cpu", "name": "x86_64", "threads": 2}, executor={"name": "serial", "jobs": 1},
                    params={"baseline": 52000, "se_r4": 52800, "se_r16": 52200},
                    attacks=[{"label": PGD, "norm": "Linf", "budget": "10 steps, alpha=2.5*eps/steps, 1 restart(s)"}],
                    diagnostics={"seeds": [0], "n_images": 100}, eps_labels=EPS_LABELS)
        for name, by, value, src in (("robust_summary", ["model", "attack", "eps"], "robust_acc", "robust"),
                                     ("interventions_summary", ["model", "condition", "block"], "accuracy",
                                      "interventions"),
                                     ("sensitivity_summary", ["member", "eps", "layer"], "rel_change", "sensitivity")):
            frame = tables[src].assign(block=tables[src]["block"].fillna("none")) if "block" in tables[src] \
                else tables[src]
            tables[name] = mean_ci_by(frame, by=by, value=value, unit="seed", n_resamples=1000)
        head = []
        for model in MEMBERS:
            mine = robust[(robust["model"] == model) & (robust["attack"] == PGD)]
            row = {"model": model, "n_seeds": 3, "params": meta["params"][model], "clean_acc": mine["clean_acc"].mean()}
            for eps, label in ((4 / 255, "4/255"), (8 / 255, "8/255")):
                row[f"robust_acc@{label}"] = mine[np.isclose(mine["eps"], eps)]["robust_acc"].mean()
            if model != BASELINE:
                crit = verdicts[model]["criteria"][0]
                row.update(diff=crit["effect"], diff_ci_low=crit["ci_low"], diff_ci_high=crit["ci_high"])
            head.append(row)
        tables["headline"] = pd.DataFrame(head)
    else:
        for v in verdicts.values():
            del v["headline"]
            crit = v["criteria"][0]
            for p in crit["per_eps"]:
                del p["informative"], p["reason"]
            del crit["budgets_tested"], crit["budgets_dropped"]
        meta.update(device="cpu (2 threads)", torch="2.14", python="3.11", serobust="0.1.0")
    results = {"meta": meta, "config": {"stats": {"confidence": 0.95, "n_resamples": 1000}, "report": {"example_eps": 0.1}},
               "verdict": verdicts, "tables": {name: f"tables/{name}.csv" for name in tables}}
    x = rng.random((4, 1, 8, 8)).astype("float32")
    y = np.arange(4)
    examples = {"x": x, "y": y, "eps": 8 / 255, "attack": "pgd",
                "models": {m: {"x_adv": np.clip(x + 8 / 255 * np.sign(rng.standard_normal(x.shape)), 0, 1),
                               "pred_clean": y, "pred_adv": (y + i) % 10} for i, m in enumerate(MEMBERS)}}
    return results, tables, examples


# ------------------------------------------------------------------------------------------------ palette

def test_palette_gives_each_member_one_fixed_colour_whatever_the_order():
    a = member_palette(["se_r16", "baseline", "se_r4"])
    b = member_palette(["se_r4", "se_r16", "baseline", "se_r4"])
    assert a == b == {"baseline": BASELINE_COLOR, "se_r4": TWIN_COLORS[0], "se_r16": TWIN_COLORS[1]}
    assert len(set(a.values())) == 3
    assert member_palette(["baseline", "se_r8", "custom"])["custom"] == TWIN_COLORS[1]  # non-twins after twins


def _rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))


def _pixels(path, color: str) -> int:
    import matplotlib.image

    img = matplotlib.image.imread(path)
    rgb = np.round(img[..., :3] * 255).astype(int)
    return int(np.all(rgb == np.array(_rgb(color)), axis=-1).sum())


#: which members each figure draws in its member colour (None: the figure shows no member colours)
SHOWS = {"robust_accuracy": MEMBERS, "paired_differences": TWINS, "examples": None, "excitation_shift": TWINS,
         "damping": TWINS, "noise_relative": TWINS, "channel_heatmap": None, "sensitivity": MEMBERS,
         "interventions": TWINS, "training": MEMBERS}


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """Every figure of the plan drawn once from the synthetic study, with the shared palette."""
    results, tables, examples = synthetic_study()
    style = FigureStyle(palette=member_palette(MEMBERS), eps_label=EpsLabeler(EPS_LABELS), attack="PGD-10")
    specs = plan_figures(PlanInput(results, tables, examples, style, 1000))
    out = tmp_path_factory.mktemp("figures")
    return {s.name: (s, s.draw(out / f"{s.name}.png")) for s in specs}, style


def test_the_plan_has_every_figure_of_the_registry(drawn):
    specs, _ = drawn
    assert set(specs) == set(SHOWS)


@pytest.mark.parametrize("name", list(SHOWS))
def test_each_figure_draws_its_members_in_their_palette_colour_and_nothing_in_foreign_ones(drawn, name):
    specs, style = drawn
    spec, path = specs[name]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert spec.alt and spec.caption and spec.title
    if SHOWS[name] is None:  # images or a colour map: member colours only in text
        return
    for m in SHOWS[name]:
        assert _pixels(path, style.palette[m]) >= 15, (name, m)
    for m in set(MEMBERS) - set(SHOWS[name]):  # the baseline's blue never appears in a twins-only figure
        assert _pixels(path, style.palette[m]) < 5, (name, m)
    # matplotlib's and seaborn's own colour cycles must not decide a colour
    for default in ("#1f77b4", "#ff7f0e", "#2ca02c", "#4c72b0", "#dd8452", "#55a868"):
        assert _pixels(path, default) < 5, (name, default)


def test_captions_state_the_interval_and_the_number_of_seeds(drawn):
    specs, _ = drawn
    for name in ("robust_accuracy", "paired_differences", "excitation_shift", "damping", "noise_relative",
                 "sensitivity", "interventions", "training"):
        caption = specs[name][0].caption
        assert "95%" in caption and "n = 3" in caption, (name, caption)


def test_drawn_error_bars_are_exactly_the_tables_intervals():
    import matplotlib.pyplot as plt

    summary = pd.DataFrame({"mean": [0.5, 0.2], "ci_low": [0.4, 0.05], "ci_high": [0.65, 0.3]})
    fig, ax = plt.subplots()
    figures._common.interval_bars(ax, [0, 1], summary, color="#000000", scale=100)
    segments = ax.collections[0].get_segments()
    plt.close(fig)
    assert [tuple(np.round(s[:, 1], 9)) for s in segments] == [(40.0, 65.0), (5.0, 30.0)]


def test_per_block_shift_intervals_are_student_t_across_seeds():
    _, tables, _ = synthetic_study()
    shift = tables["shift"]
    summary = summarize(shift, by=["model", "kind", "eps", "block"], value=["u_rel_change", "z_over_u"],
                        n_resamples=1000)
    row = summary[(summary["model"] == "se_r4") & (summary["kind"] == ADVERSARIAL) & (summary["quantity"] == "z_over_u")
                  & np.isclose(summary["eps"], 8 / 255) & (summary["block"] == "features.10.se")].iloc[0]
    values = shift[(shift["model"] == "se_r4") & (shift["kind"] == ADVERSARIAL) & np.isclose(shift["eps"], 8 / 255)
                   & (shift["block"] == "features.10.se")].sort_values("seed")["z_over_u"].to_numpy()
    half = sps.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    assert row["n"] == 3 and row["ci_method"] == "t"
    assert row["ci_low"] == pytest.approx(values.mean() - half) and row["ci_high"] == pytest.approx(values.mean() + half)


def test_missing_summary_tables_are_made_with_the_pipelines_call():
    results, tables, _ = synthetic_study()
    made = with_summaries({k: v for k, v in tables.items() if not k.endswith("_summary")}, n_resamples=1000)
    pd.testing.assert_frame_equal(made["robust_summary"], tables["robust_summary"])
    pd.testing.assert_frame_equal(made["sensitivity_summary"], tables["sensitivity_summary"])


def test_blocks_are_ordered_by_depth_not_by_text():
    _, tables, _ = synthetic_study()
    assert figures.ordered(tables["shift"], "block") == list(BLOCKS)


def test_the_shift_figure_has_tick_labels_on_every_panel(tmp_path):
    import matplotlib.pyplot as plt

    _, tables, _ = synthetic_study()
    summary = summarize(tables["shift"], by=["model", "kind", "eps", "block"],
                        value=list(figures.SHIFT_PANELS), n_resamples=1000)
    style = FigureStyle.for_members(MEMBERS)
    seen = []
    real = plt.Figure.savefig

    def spy(fig, *args, **kwargs):
        seen.extend([t.get_text() for t in ax.get_xticklabels()] for ax in fig.axes)
        return real(fig, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plt.Figure, "savefig", spy)
        figures.excitation_shift(summary, tmp_path / "s.png", style=style, blocks=list(BLOCKS))
    assert len(seen) == 9 and all(labels == ["features.0", "features.2", "features.10"] for labels in seen)


def test_examples_grid_says_how_much_the_perturbation_is_amplified(drawn):
    specs, _ = drawn
    spec = specs["examples"][0]
    assert figures.amplification(8 / 255) == 16.0 and figures.amplification(0.2) == 2.5
    assert "\u00d716" in spec.caption and "PGD-10" in spec.caption and "8/255" in spec.caption


# ------------------------------------------------------------------------------------------------ labels

@pytest.mark.parametrize("label, name", [
    (PGD, "PGD-10"), ("pgd(steps=20)", "PGD-20"), ("pgd(random_start=False, steps=20)", "PGD-20 (no random start)"),
    ("pgd(n_restarts=2, steps=20)", "PGD-20, 2 restarts"), ("fgsm", "FGSM"), ("square(n_queries=100)",
    "Square (100 queries)"), ("apgd_ce(loss='dlr', steps=20)", "APGD-DLR-20"), ("worst_case", "worst case (every attack)"),
    ("my_attack(x=1)", "my_attack(x=1)"), ("apgd_ce", "APGD-CE-100"), ("pgd_l2(steps=5)", "PGD-L2-5"),
    ("autoattack(version='fast')", "AutoAttack (fast)"), ("autoattack", "AutoAttack"), ("cw(steps=8)", "CW-L2"),
    ("noise(n_samples=2)", "random sign noise"), ("pgd(n_restarts=3, random_start=False)",
    "PGD-10, 3 restarts (no random start)"),
    # another version's options, text that is no label, a noise kind: shown as they are
    ("pgd(stepz=3)", "pgd(stepz=3)"), ("pgd(steps=0)", "pgd(steps=0)"), ("PGD 10 (", "PGD 10 ("), ("sign_noise", "sign_noise"),
])
def test_attack_names_read_like_the_literature(label, name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a wasteful combination was reported when the attack ran: not again here
        assert attack_name(label) == name


def test_every_registered_attack_has_a_display_name():
    import serobust as sr

    for name in sr.ATTACKS:
        assert attack_name(name) != name, name


def test_budgets_are_written_as_the_config_wrote_them():
    label = EpsLabeler({"0.03137254901960784": "8/255", "0.1": "0.1", "oops": "x"})
    assert label(8 / 255) == "8/255" and label(0.1) == "0.1" and label(0.05) == "0.05"
    assert EpsLabeler(None)(8 / 255) == f"{8 / 255:g}"
    assert label.many([8 / 255, 0.1]) == "8/255, 0.1"


def test_numbers_are_percentages_and_signed_points():
    assert percent(0.9783) == "97.8%" and percent(float("nan")) == "" and percent(None) == ""
    assert points(-0.0235) == "\u22122.4 pp" and points(0.02, unit=False) == "+2.0"
    assert block_label("features.0.se") == "features.0" and block_label("layer1.0") == "layer1.0"


def test_noise_ratios_divide_attack_by_gaussian_on_matched_cells_then_average_budgets():
    """Independent: per (seed, model, block), the mean over eps of adversarial / gaussian of the same cell."""
    _, tables, _ = synthetic_study()
    shift = tables["shift"]
    ratios = figures.noise_ratios(shift, ["u_rel_change", "absorb_ratio"])
    seed, model, block = SEEDS[1], TWINS[0], BLOCKS[2]
    cell = shift[(shift["seed"] == seed) & (shift["model"] == model) & (shift["block"] == block)]
    adv = cell[cell["kind"] == ADVERSARIAL].set_index("eps")["absorb_ratio"]
    noise = cell[cell["kind"] == GAUSSIAN].set_index("eps")["absorb_ratio"]
    expected = float((adv / noise).mean())
    got = ratios[(ratios["seed"] == seed) & (ratios["model"] == model) & (ratios["block"] == block)
                 & (ratios["quantity"] == "absorb_ratio")]["ratio"]
    assert len(got) == 1 and got.iloc[0] == pytest.approx(expected)
    u = ratios[ratios["quantity"] == "u_rel_change"]["ratio"]
    assert u.between(1.5, 3.0).all()  # the synthetic attack moves u about 2 / 0.9 times as much as noise
