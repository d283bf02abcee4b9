"""Gradient-masking diagnostics: a standard model passes, deliberately masked models fail the right checks."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from serobust.attacks import Attack, attack, evaluate, register_attack, unregister_attack
from serobust.diagnostics import DIAGNOSTIC_COLUMNS, masking_diagnostics

EPS = [0.05, 0.1, 0.2]
FAST_CHECKS = dict(attack_steps=(5, 20), restarts=(1, 3), square_queries=150, noise_samples=5)
ALL_CHECKS = [
    "outputs_are_logits", "input_gradients_nonzero", "accuracy_decreases_with_eps", "large_eps_accuracy_near_zero",
    "more_steps_do_not_help_model", "more_restarts_do_not_help_model", "iterative_beats_single_step",
    "blackbox_not_stronger", "noise_not_stronger", "transfer_not_stronger",
]


@pytest.fixture(scope="module")
def data(digits_xy):
    _, (x, y) = digits_xy
    return x[:150], y[:150]


@pytest.fixture(scope="module")
def standard_result(trained_digits_pair, data):
    base, se = trained_digits_pair
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = masking_diagnostics(base, data, EPS, transfer_from=se, **FAST_CHECKS)
    return frame, [str(w.message) for w in caught]


class Quantized(nn.Module):
    """Rounds the input to the 17 levels the digits use: clean accuracy unchanged, input gradient zero."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * 16) / 16)


class Saturated(nn.Module):
    """Logits x 1e4: float32 softmax saturates, the CE gradient underflows to exactly zero."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * 1e4


class _Shatter(torch.autograd.Function):
    """Identity whose gradient is true on the clean digits' pixel grid and reversed anywhere else."""

    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205
        ctx.save_for_backward(x)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001, ANN205
        (x,) = ctx.saved_tensors
        on_grid = ((x * 16 - torch.round(x * 16)).abs() < 1e-4).flatten(1).all(1)  # (B,)
        return torch.where(on_grid[:, None, None, None], g, -g)


class Shattered(nn.Module):
    """FGSM from clean x sees the true gradient; PGD (random start, iterates off the grid) is misled."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(_Shatter.apply(x))


def test_standard_model_passes_every_check(standard_result):
    frame, messages = standard_result
    assert list(frame.columns) == DIAGNOSTIC_COLUMNS
    assert frame["check"].tolist() == ALL_CHECKS
    failed = frame.loc[~frame["passed"], ["check", "detail"]].to_dict("records")
    assert not failed, failed
    assert not [m for m in messages if "masking diagnostic" in m]
    assert frame["passed"].map(type).eq(bool).all()


def test_values_are_the_evaluated_numbers(standard_result, trained_digits_pair, data):
    frame, _ = standard_result
    values = frame.set_index("check")["values"]
    # recomputed independently: the same PGD run through evaluate() directly
    direct = evaluate(trained_digits_pair[0], data, attack("pgd", steps=20), [0, *EPS]).summary
    expected = direct[direct["attack"] != "worst_case"]["robust_acc"].round(6).tolist()
    assert values["accuracy_decreases_with_eps"]["robust_acc"] == expected
    table = values["more_steps_do_not_help_model"]["robust_acc"]
    assert set(table) == {5, 20} and all(len(v) == len(EPS) for v in table.values())
    assert table[20] == expected[1:]
    assert values["large_eps_accuracy_near_zero"]["eps"] == 0.5  # max(2 * 0.2, 0.5)
    summary = frame.attrs["summary"]
    assert {"fgsm", "pgd(steps=5)", "pgd(steps=20)", "pgd(n_restarts=3, steps=5)"} <= set(summary["attack"])


@pytest.mark.parametrize("wrapper, must_fail", [
    (Quantized, {"input_gradients_nonzero", "large_eps_accuracy_near_zero", "blackbox_not_stronger"}),
    (Saturated, {"input_gradients_nonzero", "blackbox_not_stronger"}),  # DLR defeats logit scaling at large eps
    (Shattered, {"iterative_beats_single_step", "blackbox_not_stronger"}),
])
def test_masked_models_fail_with_warnings(wrapper, must_fail, trained_digits_pair, data):
    masked = wrapper(trained_digits_pair[0])
    x, y = data
    with torch.no_grad():  # the masking leaves clean accuracy intact: only the diagnostics can tell
        assert (masked(x).argmax(1) == y).float().mean() > 0.9
    with pytest.warns(UserWarning, match="masking diagnostic") as record:
        frame = masking_diagnostics(masked, data, EPS, **FAST_CHECKS)
    failed = set(frame.loc[~frame["passed"], "check"])
    assert must_fail <= failed
    warned = " ".join(str(w.message) for w in record)
    for check in failed:
        assert check in warned
    assert len(frame) == len(ALL_CHECKS) - 1  # every check still reported (no transfer_from here)


def test_bad_settings_raise(trained_digits_pair, data):
    base = trained_digits_pair[0]
    with pytest.raises(ValueError, match="eps > 0"):
        masking_diagnostics(base, data, [0])
    with pytest.raises(ValueError, match="tolerance"):
        masking_diagnostics(base, data, EPS, tolerance=2)
    with pytest.raises(ValueError, match="attack_steps"):
        masking_diagnostics(base, data, EPS, attack_steps=(0, 10))
    with pytest.raises(ValueError, match="<= 1"):
        masking_diagnostics(base, data, [1.5])


def test_softmax_outputs_fail_outputs_are_logits(trained_digits_pair, data):
    soft = nn.Sequential(trained_digits_pair[0], nn.Softmax(dim=1))
    x, y = data
    with pytest.warns(UserWarning, match="outputs_are_logits"):
        frame = masking_diagnostics(soft, (x[:40], y[:40]), [0.1], attack_steps=(2, 4), restarts=1,
                                    square_queries=10, noise_samples=2, batch_size=16)
    row = frame.set_index("check").loc["outputs_are_logits"]
    assert not row["passed"] and "softmax" in row["detail"]
    assert row["values"] == {"probability_rows": 1.0, "n": 16}
    plain = masking_diagnostics(trained_digits_pair[0], (x[:40], y[:40]), [0.1], attack_steps=(2, 4), restarts=1,
                                square_queries=10, noise_samples=2, batch_size=16)
    assert plain.set_index("check").loc["outputs_are_logits", "passed"]


class UniformStart(Attack):
    """A random start only: x + uniform(-eps, eps), no gradient step (registered by the test)."""

    name = "uniform_start"

    def budget(self, config, *, eps, num_classes):
        return "uniform noise in the Linf ball"

    def runner(self, model, config, *, eps, num_classes, seed):
        return (lambda x, y: (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)), []


@pytest.fixture
def uniform_start():
    register_attack(UniformStart)
    yield UniformStart.name
    unregister_attack(UniformStart.name)


def test_extra_attacks_join_the_audit(uniform_start, trained_digits_pair, data):
    base = trained_digits_pair[0]
    x, y = data[0][:60], data[1][:60]
    cw = attack("cw", steps=10, c=5.0, lr=0.05)
    settings = dict(attack_steps=(3, 6), restarts=(1, 2), square_queries=20, noise_samples=2, batch_size=32)
    frame = masking_diagnostics(base, (x, y), [0.1, 0.2], extra_attacks=[uniform_start, cw], l2_eps=[0.5, 1.5],
                                **settings)
    checks = frame.set_index("check")
    assert frame["check"].tolist()[-2:] == ["uniform_start_not_stronger", "cw_not_stronger"]
    assert checks.loc["uniform_start_not_stronger", "passed"] and checks.loc["cw_not_stronger", "passed"]
    assert checks.loc["uniform_start_not_stronger", "values"]["eps"] == [0.1, 0.2]
    cw_values = checks.loc["cw_not_stronger", "values"]
    assert cw_values["eps"] == [0.5, 1.5]
    # recomputed: examples CW fools that no pgd_l2 run (3 and 6 steps, 2 restarts at 3 steps) fools
    refs = [attack("pgd_l2", steps=3), attack("pgd_l2", steps=6), attack("pgd_l2", steps=3, n_restarts=2)]
    per_ex = evaluate(base, (x, y), [*refs, cw], [0.5, 1.5], per_example=True, batch_size=32).per_example
    for e, got in zip([0.5, 1.5], cw_values["fraction_beyond_pgd"]):
        at = per_ex[per_ex["eps"] == e]
        flags = {lab: at[at["attack"] == lab].sort_values("index")["robust_correct"].to_numpy()
                 for lab in [r.label for r in refs] + [cw.label]}
        clean = at[at["attack"] == cw.label].sort_values("index")["clean_correct"].to_numpy()
        pgd_robust = flags[refs[0].label] & flags[refs[1].label] & flags[refs[2].label]
        assert got == pytest.approx((clean & ~flags[cw.label] & pgd_robust).mean(), abs=1e-6)
    assert {"uniform_start", cw.label, "pgd_l2(steps=3)"} <= set(frame.attrs["summary"]["attack"])


def test_an_extra_attack_catches_masking(trained_digits_pair, data):
    # Shattered misleads PGD off the pixel grid; FGSM from clean x sees the true gradient
    masked = Shattered(trained_digits_pair[0])
    x, y = data[0][:80], data[1][:80]
    with pytest.warns(UserWarning, match="fgsm_not_stronger"):
        frame = masking_diagnostics(masked, (x, y), [0.1, 0.2], extra_attacks="fgsm", attack_steps=(5, 10),
                                    restarts=1, square_queries=20, noise_samples=2, batch_size=40)
    row = frame.set_index("check").loc["fgsm_not_stronger"]
    assert not row["passed"] and max(row["values"]["fraction_beyond_pgd"]) > 0.01


def test_extra_attack_settings_raise(trained_digits_pair, data):
    with pytest.raises(ValueError, match="unknown attack"):
        masking_diagnostics(trained_digits_pair[0], data, EPS, extra_attacks=["nope"])
    with pytest.raises(ValueError, match="radius > 0"):
        masking_diagnostics(trained_digits_pair[0], data, EPS, extra_attacks=["cw"], l2_eps=[0])


# ------------------------------------------------------------------ AutoAttack never weaker than PGD, per image
def _rows(label: str, eps: float, clean: list[bool], robust: list[bool]) -> pd.DataFrame:
    return pd.DataFrame({"attack": label, "eps": eps, "index": range(len(clean)), "clean_correct": clean,
                         "robust_correct": robust})


def test_per_image_not_weaker_counts_images_only_the_reference_breaks():
    from serobust.diagnostics import per_image_not_weaker

    clean = [True] * 9 + [False]
    pgd = _rows("pgd", 0.1, clean, [True, True, False, False, False, True, True, True, True, False])
    aa_ok = _rows("aa", 0.1, clean, [True, False, False, False, False, True, False, True, True, False])
    frame = per_image_not_weaker(pd.concat([pgd, aa_ok]), strong="aa", reference="pgd")
    assert list(frame.columns) == DIAGNOSTIC_COLUMNS
    row = frame.iloc[0]
    assert row["check"] == "aa_not_weaker_than_pgd" and bool(row["passed"])
    assert row["values"]["count"] == [0] and row["values"]["n"] == [10]
    # image 2: PGD fools it, AutoAttack does not (1 of 10 images > 1%): fails; image 9 is clean-wrong, ignored
    aa_bad = _rows("aa", 0.1, clean, [True, False, True, False, False, True, False, True, True, True])
    with pytest.warns(UserWarning, match="aa_not_weaker_than_pgd"):
        bad = per_image_not_weaker(pd.concat([pgd, aa_bad]), strong="aa", reference="pgd").iloc[0]
    assert not bad["passed"] and bad["values"]["count"] == [1] and bad["values"]["fraction_beyond"] == [0.1]
    assert "1 of 10 at eps 0.1" in bad["detail"]
    within = per_image_not_weaker(pd.concat([pgd, aa_bad]), strong="aa", reference="pgd", tolerance=0.1)
    assert bool(within["passed"].iloc[0])  # exactly at the stated tolerance: allowed
    with pytest.raises(ValueError, match="different"):
        per_image_not_weaker(pd.concat([pgd, aa_ok.assign(index=aa_ok["index"] + 1)]), strong="aa", reference="pgd")
    with pytest.raises(ValueError, match="no rows"):
        per_image_not_weaker(pgd, strong="aa", reference="pgd")


@pytest.mark.usefixtures("one_thread")
def test_autoattack_stage_writes_the_check_on_the_same_images(trained_digits_pair, data):
    """The study's AutoAttack stage runs PGD on the same images and emits a diagnostics row the guard reads."""
    from types import SimpleNamespace

    from serobust.study.stages import STAGES
    from serobust.study.stages.autoattack import AutoAttackBudgets, AutoAttackParams

    base, _ = trained_digits_pair
    x, y = data
    ctx = SimpleNamespace(eval_set=lambda d: (x, y), device=torch.device("cpu"),
                          dataset=lambda d: SimpleNamespace(num_classes=10))
    params = AutoAttackParams(member="baseline", seed=0, data={}, numerics={}, batch_size=64,
                              autoattack=AutoAttackBudgets(eps=(0.1, 0.2), size=24),
                              attack={"name": "autoattack", "apgd_steps": 5, "apgdt_steps": 3, "n_target_classes": 2,
                                      "fab_steps": 2, "square_queries": 10},
                              pgd={"name": "pgd", "steps": 5}, implementations={})
    out = STAGES["autoattack"].run(ctx, params, {"model": base}, None)
    assert set(out["summary"]["attack"]) == {attack("autoattack", apgd_steps=5, apgdt_steps=3, n_target_classes=2,
                                                    fab_steps=2, square_queries=10).label}
    row = out["checks"].iloc[0]
    assert row["check"] == "autoattack_not_weaker_than_pgd" and row["values"]["eps"] == [0.1, 0.2]
    assert row["values"]["n"] == [24, 24]
    # independently: AutoAttack's and PGD's per-image results on these 40 images
    per = evaluate(base, (x[:24], y[:24]), [attack("pgd", steps=5)], [0.1, 0.2], per_example=True, seed=0).per_example
    pgd_fooled = per[per["attack"] == attack("pgd", steps=5).label].groupby("eps").apply(
        lambda f: int((f["clean_correct"] & ~f["robust_correct"]).sum()), include_groups=False)
    aa = out["per_example"]
    aa_fooled = aa[aa["eps"] > 0].groupby("eps").apply(
        lambda f: int((f["clean_correct"] & ~f["robust_correct"]).sum()), include_groups=False)
    assert (aa_fooled.to_numpy() >= pgd_fooled.to_numpy() - np.array(row["values"]["count"])).all()
    assert bool(row["passed"]) == all(c == 0 for c in row["values"]["count"])
