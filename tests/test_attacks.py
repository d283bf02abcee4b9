"""Tests of the attack harness against independent computations (plain PyTorch loops, recomputed accuracies).

Registry and extension tests (runtime registration, a dropped-in attack file) are in test_attacks_registry.py.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from serobust.attacks import (
    ATTACKS,
    PER_EXAMPLE_COLUMNS,
    SUMMARY_COLUMNS,
    AttackSpec,
    Evaluation,
    attack,
    evaluate,
    evaluate_transfer,
    generate,
)
from serobust.attacks.base import implementation
from serobust.attacks.cw import _CW
from serobust.attacks.restarts import best_of
from serobust.errors import InputError

#: attacks that need more than a classifier: the SE gate attacks an SE model, detector_pgd the classifier with
#: its fitted detector (DetectedClassifier); the generic tests run them on such a model (:func:`_model_for`)
SE_ATTACKS = ("excitation_pgd", "frozen_gate_pgd")
EPS = {"Linf": 0.1, "L2": 0.5}


def cheap(name: str, **extra: object) -> AttackSpec:
    """Attack ``name`` with its own cheap test options (``Attack.cheap``), ``extra`` on top."""
    return attack(name, **{**implementation(name).cheap, **extra})


# every registered attack with its cheap options (the invariants below run each on two models), and variants
# that reach more code: restarts (best of several runs) and APGD in the L2 ball
CASES = {**{name: (name, {}) for name in ATTACKS},
         "pgd_restarts": ("pgd", {"steps": 2, "n_restarts": 2}), "apgd_ce_l2": ("apgd_ce", {"norm": "L2"})}


@pytest.fixture(scope="module")
def digits_small(digits_xy):
    _, (x, y) = digits_xy
    return x[:96], y[:96]


@pytest.fixture(scope="module")
def base(trained_digits_pair):
    return trained_digits_pair[0]


@pytest.fixture(scope="module")
def mobilenet():
    from torchvision.models import mobilenet_v3_small

    torch.manual_seed(1)
    model = mobilenet_v3_small(num_classes=10).eval()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(6, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (6,), generator=g)
    return model, (x, y)


@pytest.fixture(params=["cnn", "mobilenet_v3_small"])
def model_and_data(request, base, digits_small, mobilenet):
    if request.param == "cnn":
        return base, digits_small
    return mobilenet


_DETECTED: dict[int, nn.Module] = {}


def _model_for(name: str, model: nn.Module, se_twin: nn.Module) -> nn.Module:
    """The model a generic test attacks with ``name``: ``model``, but the digits SE twin in place of the
    baseline cnn for the SE gate attacks, and for ``detector_pgd`` the SE model with a Mahalanobis detector
    fitted on random images (every class present; the invariants need a fitted detector, not a good one)."""
    from serobust.attacks.detector_pgd import DetectedClassifier
    from serobust.detect import MahalanobisDetector
    from serobust.excitation.adapters import find_se_modules

    if name not in SE_ATTACKS and name != "detector_pgd":
        return model
    try:
        find_se_modules(model)
    except ValueError:
        model = se_twin
    if name in SE_ATTACKS:
        return model
    if id(model) not in _DETECTED:
        g = torch.Generator().manual_seed(3)
        shape = (1, 8, 8) if model is se_twin else (3, 32, 32)
        x_fit, y_fit = torch.rand(60, *shape, generator=g), torch.arange(60) % 10
        _DETECTED[id(model)] = DetectedClassifier(MahalanobisDetector(model).fit(x_fit, y_fit))
    return _DETECTED[id(model)]


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).double().mean().item()


# --------------------------------------------------------------------------------------------------------
# independent reference implementations
# --------------------------------------------------------------------------------------------------------

def _plain_pgd(model, x, y, eps, alpha, steps):
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (g,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + alpha * g.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv


def test_pgd_without_random_start_equals_plain_pytorch(base, digits_small):
    x, y = digits_small
    eps, steps = 0.1, 5
    ref = _plain_pgd(base, x, y, eps, alpha=2.5 * eps / steps, steps=steps)  # the documented default alpha
    spec = attack("pgd", steps=steps, random_start=False)
    out = generate(base, x, y, spec, eps, batch_size=len(x))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    assert not torch.equal(out, x)
    # and evaluate scored exactly those examples
    examples = evaluate(base, (x, y), spec, eps, batch_size=len(x), return_examples=True).examples
    torch.testing.assert_close(examples[(spec.label, eps)], ref, rtol=0, atol=1e-6)


def test_pgd_explicit_alpha_equals_plain_pytorch(base, digits_small):
    x, y = digits_small
    ref = _plain_pgd(base, x, y, 0.08, alpha=0.01, steps=4)
    out = generate(base, x, y, attack("pgd", steps=4, alpha=0.01, random_start=False), "0.08")
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_fgsm_equals_plain_pytorch(base, digits_small):
    x, y = digits_small
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(base(xr), y), xr)
    ref = (x + 0.1 * g.sign()).clamp(0, 1)
    out = generate(base, x, y, "fgsm", 0.1, batch_size=40)  # batches: per-batch mean loss, same sign
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------------------------
# invariants over every attack and two models
# --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", list(CASES))
def test_invariants(key, model_and_data, trained_digits_pair):
    model, (x, y) = model_and_data
    name, extra = CASES[key]
    spec = cheap(name, **extra)
    model = _model_for(spec.name, model, trained_digits_pair[1])
    eps = EPS[spec.norm]
    # mixed modes, a frozen parameter and existing .grad: all must come back untouched
    model.train()
    first_bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    first_bn.eval()
    params = list(model.parameters())
    params[0].requires_grad_(False)
    for p in params[1:3]:
        p.grad = torch.full_like(p, 7.0)
    params[3].grad = None
    grads = [None if p.grad is None else p.grad.clone() for p in params]
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in params]
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        result = evaluate(model, (x, y), spec, [0, eps], batch_size=32, per_example=True, return_examples=True,
                          progress=False)
        summary, per_ex, examples = result.summary, result.per_example, result.examples
        assert [m.training for m in model.modules()] == modes
        assert [p.requires_grad for p in params] == flags
        for p, g in zip(params, grads):
            assert (p.grad is None) if g is None else torch.equal(p.grad, g)
        for k, v in model.state_dict().items():  # BatchNorm statistics included
            assert torch.equal(v, buffers[k]), k
    finally:
        model.eval()
        params[0].requires_grad_(True)

    assert list(summary.columns) == SUMMARY_COLUMNS
    assert list(per_ex.columns) == PER_EXAMPLE_COLUMNS
    assert summary["attack"].tolist() == [spec.label, spec.label, "worst_case", "worst_case"]
    clean = _accuracy(model.eval(), x, y)
    assert summary["clean_acc"].tolist() == pytest.approx([clean] * 4, abs=1e-12)
    row0 = summary.iloc[0]
    assert row0["robust_acc"] == pytest.approx(clean, abs=1e-12) and row0["linf_max"] == 0.0

    x_adv = examples[(spec.label, eps)]
    assert x_adv.shape == x.shape and x_adv.dtype == torch.float32
    assert not torch.isnan(x_adv).any()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    delta = (x_adv - x).flatten(1)
    if spec.norm == "Linf":
        assert delta.abs().amax(1).max() <= eps + 1e-6
    else:
        assert delta.norm(dim=1).max() <= eps * (1 + 1e-5) + 1e-6
    # robust accuracy recomputed from the returned examples
    with torch.no_grad():
        robust = (model(x).argmax(1) == y) & (model(x_adv).argmax(1) == y)
    row = summary.iloc[1]
    assert row["robust_acc"] == pytest.approx(robust.double().mean().item(), abs=1e-12)
    assert row["robust_acc"] <= row["clean_acc"]
    assert row["linf_max"] == pytest.approx(delta.abs().amax(1).max().item(), abs=1e-7)
    assert row["l2_mean"] == pytest.approx(delta.norm(dim=1).mean().item(), rel=1e-5, abs=1e-7)
    assert row["n"] == len(y)
    # per-example rows agree with the summary
    for _, r in summary.iterrows():
        sub = per_ex[(per_ex["attack"] == r["attack"]) & (per_ex["eps"] == r["eps"])]
        assert len(sub) == len(y)
        assert sub["robust_correct"].mean() == pytest.approx(r["robust_acc"])
        assert sub["clean_correct"].mean() == pytest.approx(r["clean_acc"])
        assert sub["linf"].mean() == pytest.approx(r["linf_mean"], rel=1e-6, abs=1e-9)
    assert np.array_equal(per_ex.loc[per_ex["eps"] == eps, "label"].to_numpy()[: len(y)], y.numpy())


@pytest.mark.parametrize("key", ["pgd", "square", "apgd_ce", "noise"])
def test_reproducible_with_seed(key, base, digits_small):
    spec = cheap(key)
    a = evaluate(base, digits_small, spec, 0.1, seed=3, return_examples=True)
    b = evaluate(base, digits_small, spec, 0.1, seed=3, return_examples=True)
    pd.testing.assert_frame_equal(a.summary, b.summary)
    ex_a, ex_b = a.examples, b.examples
    assert torch.equal(ex_a[(spec.label, 0.1)], ex_b[(spec.label, 0.1)])
    if key in ("pgd", "noise"):  # random starts: another seed gives other examples
        ex_c = evaluate(base, digits_small, spec, 0.1, seed=4, return_examples=True).examples
        assert not torch.equal(ex_a[(spec.label, 0.1)], ex_c[(spec.label, 0.1)])


def test_result_does_not_depend_on_other_attacks_in_the_call(base, digits_small):
    alone = evaluate(base, digits_small, "pgd", [0.05, 0.1]).summary
    together = evaluate(base, digits_small, ["fgsm", "pgd"], [0.05, 0.1]).summary
    pd.testing.assert_frame_equal(alone.iloc[:2].reset_index(drop=True),
                                  together[together["attack"] == "pgd"].reset_index(drop=True))


def test_generate_reproduces_evaluate_examples(base, digits_small):
    x, y = digits_small
    examples = evaluate(base, (x, y), "pgd", 0.1, batch_size=40, seed=5, return_examples=True).examples
    out = generate(base, x, y, "pgd", 0.1, batch_size=40, seed=5)
    assert torch.equal(out, examples[("pgd", 0.1)])


def test_generate_eps_zero_returns_a_copy(base, digits_small):
    x, y = digits_small
    out = generate(base, x, y, "pgd", 0)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()


def test_worst_case_is_every_attack_failing(base, digits_small):
    specs = ["fgsm", cheap("pgd"), cheap("noise")]
    result = evaluate(base, digits_small, specs, [0.05, 0.15], per_example=True)
    summary, per_ex = result.summary, result.per_example
    for e in (0.05, 0.15):
        at = per_ex[per_ex["eps"] == e]
        flags = [at[at["attack"] == lab].sort_values("index")["robust_correct"].to_numpy()
                 for lab in ("fgsm", cheap("pgd").label, cheap("noise").label)]
        worst = at[at["attack"] == "worst_case"].sort_values("index")["robust_correct"].to_numpy()
        assert np.array_equal(worst, np.logical_and.reduce(flags))
        rows = summary[summary["eps"] == e].set_index("attack")["robust_acc"]
        assert rows["worst_case"] <= rows.drop("worst_case").min()
    assert (per_ex.groupby(["attack", "eps"]).size() == len(digits_small[1])).all()


def test_input_types_give_the_same_numbers(base, digits_small):
    x, y = digits_small
    kw = dict(batch_size=32, per_example=True)
    spec = attack("pgd", steps=3)
    ref = evaluate(base, (x, y), spec, [0.05, 0.1], **kw)
    ds = TensorDataset(x, y)
    for data in (ds, DataLoader(ds, batch_size=7, shuffle=False)):
        got = evaluate(base, data, spec, [0.05, 0.1], **kw)
        pd.testing.assert_frame_equal(got.summary, ref.summary)
        pd.testing.assert_frame_equal(got.per_example, ref.per_example)


def test_shuffling_loader_warns_when_indices_matter(base, digits_small):
    loader = DataLoader(TensorDataset(*digits_small), batch_size=32, shuffle=True)
    with pytest.warns(UserWarning, match="shuffles"):
        evaluate(base, loader, "fgsm", 0.1, per_example=True)


def test_pgd_accuracy_falls_with_eps_to_zero(base, digits_xy):
    _, (x, y) = digits_xy
    eps = [0, 0.05, 0.1, 0.2, 0.3]
    summary = evaluate(base, (x[:200], y[:200]), attack("pgd", steps=10), eps).summary
    acc = summary[summary["attack"] != "worst_case"]["robust_acc"].to_numpy()
    assert acc[0] > 0.9
    assert np.all(np.diff(acc) <= 0)
    assert acc[-1] <= 0.02
    assert acc[2] < acc[0] - 0.2  # eps = 0.1 already hurts an undefended model


def test_eps_strings_and_l2_radius(base, digits_small):
    summary = evaluate(base, digits_small, ["fgsm"], ["8/255"]).summary
    assert summary["eps"].iloc[0] == pytest.approx(8 / 255)
    # an L2 radius may exceed 1 (up to sqrt(C*H*W) = 8 for 1x8x8)
    summary = evaluate(base, digits_small, cheap("pgd_l2"), [1.5]).summary
    assert summary["l2_mean"].iloc[0] <= 1.5 + 1e-5 and summary["norm"].iloc[0] == "L2"
    with pytest.raises(ValueError, match="diameter"):
        evaluate(base, digits_small, cheap("pgd_l2"), [9.0])


@pytest.mark.parametrize("bad, match", [(-0.1, ">= 0"), (1.5, "<= 1"), (float("nan"), "NaN"), ("8/0", "not a number"),
                                        ([], "empty"), ([0.1, 0.1], "duplicates")])
def test_bad_eps_raises(base, digits_small, bad, match):
    with pytest.raises(ValueError, match=match):
        evaluate(base, digits_small, "pgd", bad)


def test_bad_attack_names_and_options():
    with pytest.raises(ValueError, match="valid names: fgsm, pgd"):
        attack("pgdd")
    with pytest.raises(TypeError, match="valid options: steps, alpha, random_start, n_restarts"):
        attack("pgd", stepz=3)
    with pytest.raises(TypeError, match="valid options: none"):
        attack("fgsm", steps=3)
    with pytest.raises(ValueError, match=">= 1"):
        attack("pgd", steps=0)
    with pytest.raises(TypeError, match="int"):
        attack("pgd", steps=2.5)
    with pytest.raises(ValueError, match="one of"):
        attack("square", norm="L1")
    with pytest.raises(ValueError, match="one of"):
        attack("autoattack", version="plus")
    with pytest.raises(TypeError, match="name"):
        evaluate(nn.Linear(2, 2), (torch.zeros(1, 1, 1, 2), torch.zeros(1, dtype=torch.long)), 3, 0.1)


def test_spec_label_norm_budget_and_hashing():
    spec = attack("pgd", steps=50, n_restarts=2)
    assert spec.label == "pgd(n_restarts=2, steps=50)"
    assert spec == AttackSpec("PGD", {"steps": 50, "n_restarts": 2})
    assert len({spec, attack("pgd", n_restarts=2, steps=50)}) == 1
    assert attack("pgd").label == "pgd" and attack("pgd_l2").norm == "L2"
    assert attack("square", norm="L2").norm == "L2"
    with pytest.raises(Exception):  # frozen  # noqa: B017
        spec.name = "fgsm"  # type: ignore[misc]
    aa = attack("autoattack")
    assert aa.budget == ("standard (APGD-CE 100 steps, APGD-T 100 steps x 9 targets, FAB-T 100 steps x 9 targets, "
                         "Square 5000 queries)")
    assert attack("autoattack", version="fast").budget.startswith("fast (")
    assert attack("autoattack", fab_steps=0).budget.startswith("custom from standard")
    with pytest.warns(UserWarning, match="random_start=False"):
        attack("pgd", random_start=False, n_restarts=3)


def test_duplicate_attacks_raise(base, digits_small):
    with pytest.raises(ValueError, match="twice"):
        evaluate(base, digits_small, ["pgd", attack("pgd")], 0.1)


def test_autoattack_standard_budget_reported(base, digits_small):
    # few examples so that the full standard budget runs quickly; the budget column says what ran
    x, y = digits_small
    summary = evaluate(base, (x[:4], y[:4]), "autoattack", [0, 0.3]).summary
    row = summary.iloc[1]
    assert row["budget"].startswith("standard (APGD-CE 100 steps, APGD-T 100 steps x 9 targets")
    assert row["robust_acc"] == 0.0


def test_bad_data_raises(base, digits_small):
    x, y = digits_small
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluate(base, (x * 255, y), "fgsm", 0.1)
    with pytest.raises(TypeError, match="uint8"):
        evaluate(base, ((x * 255).to(torch.uint8), y), "fgsm", 0.1)
    with pytest.raises(ValueError, match="labels"):
        evaluate(base, (x, y + 10), "fgsm", 0.1)
    with pytest.raises(TypeError, match="Dataset"):
        evaluate(base, [1, 2, 3], "fgsm", 0.1)
    with pytest.raises(ValueError, match="move it"):
        evaluate(base, (x, y), "fgsm", 0.1, device="meta")


def test_probability_outputs_warn(base, digits_small):
    soft = nn.Sequential(base, nn.Softmax(dim=1))
    with pytest.warns(UserWarning, match="probabilities") as caught:
        evaluate(soft, digits_small, "fgsm", 0.1)
    # every entry point warns at its caller's line (through the session), not inside serobust
    x, y = digits_small
    with pytest.warns(UserWarning, match="probabilities") as more:
        generate(soft, x, y, "fgsm", 0.1)
    with pytest.warns(UserWarning, match="the source model's outputs look like probabilities") as more_t:
        evaluate_transfer(soft, base, digits_small, "fgsm", 0.1)
    assert {w.filename for w in [*caught, *more, *more_t]} == {__file__}


def test_evaluate_returns_one_result_type_whatever_the_flags(base, digits_small):
    x, y = digits_small[0][:40], digits_small[1][:40]
    plain = evaluate(base, (x, y), "fgsm", [0, 0.1], batch_size=16)
    full = evaluate(base, (x, y), "fgsm", [0, 0.1], batch_size=16, per_example=True, return_examples=True)
    assert type(plain) is type(full) is Evaluation
    assert plain.per_example is None and plain.examples is None  # not asked for
    pd.testing.assert_frame_equal(plain.summary, full.summary)  # the flags change what is kept, not the numbers
    assert list(full.per_example.columns) == PER_EXAMPLE_COLUMNS and len(full.per_example) == 2 * 2 * len(x)  # (fgsm, worst_case) x 2 eps
    assert set(full.examples) == {("fgsm", 0.0), ("fgsm", 0.1), ("worst_case", 0.0), ("worst_case", 0.1)}
    # not a frame and not a tuple: the old spellings fail loudly, naming the fix
    with pytest.raises(TypeError, match=r"\.summary"):
        summary, per_ex = full
    with pytest.raises(TypeError, match=r"\.summary"):
        plain["robust_acc"]
    assert repr(full) == f"Evaluation(summary: 4 rows, per_example: {4 * len(x)} rows, examples: 4 tensors)"


def test_autocast_on_cpu_is_ignored_with_a_note(base, digits_small):
    plain = evaluate(base, digits_small, cheap("pgd"), 0.1).summary
    cast = evaluate(base, digits_small, cheap("pgd"), 0.1, autocast=True).summary
    assert cast["notes"].str.contains("autocast ignored").all()
    pd.testing.assert_frame_equal(plain.drop(columns="notes"), cast.drop(columns="notes"))


def test_progress_bar(base, digits_small, capsys):
    evaluate(base, digits_small, "fgsm", 0.1, progress=True)
    assert "attacks" in capsys.readouterr().err
    evaluate(base, digits_small, "fgsm", 0.1)  # pytest's stderr is not a terminal: quiet
    assert capsys.readouterr().err == ""


def test_transfer_matches_independent_runs(trained_digits_pair, digits_small):
    base, se = trained_digits_pair
    x, y = digits_small
    spec = cheap("pgd")
    result = evaluate_transfer(base, se, (x, y), spec, [0, 0.1], batch_size=40, per_example=True)
    summary, per_ex = result.summary, result.per_example
    assert result.examples is None  # a transfer keeps no examples
    src = evaluate(base, (x, y), spec, [0, 0.1], batch_size=40).summary
    tgt = evaluate(se, (x, y), spec, [0, 0.1], batch_size=40).summary
    assert summary["source_robust_acc"].tolist() == src["robust_acc"].iloc[:2].tolist()
    assert summary["target_whitebox_robust_acc"].tolist() == tgt["robust_acc"].iloc[:2].tolist()
    x_adv = generate(base, x, y, spec, 0.1, batch_size=40)
    with torch.no_grad():
        transferred = ((se(x).argmax(1) == y) & (se(x_adv).argmax(1) == y)).double().mean().item()
    assert summary["transfer_robust_acc"].iloc[1] == pytest.approx(transferred, abs=1e-12)
    assert summary["transfer_robust_acc"].iloc[0] == pytest.approx(_accuracy(se, x, y), abs=1e-12)
    assert len(per_ex) == 2 * len(y)
    assert per_ex.loc[per_ex["eps"] == 0.1, "transfer_robust_correct"].mean() == pytest.approx(transferred)


def test_model_without_parameters_works(digits_small):
    x, y = digits_small

    class Fixed(nn.Module):  # a linear classifier with its weights as a buffer: no parameters at all
        def __init__(self):
            super().__init__()
            self.register_buffer("w", torch.randn(64, 10, generator=torch.Generator().manual_seed(0)))

        def forward(self, x):
            return x.flatten(1) @ self.w

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = evaluate(Fixed(), (x, y), cheap("pgd"), 0.1).summary
    assert math.isfinite(summary["robust_acc"].iloc[0])


def test_randomized_model_warns(base, digits_small):
    class Noisy(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x) + torch.randn(len(x), 10)

    with pytest.warns(UserWarning, match="randomized"):
        evaluate(Noisy(base), digits_small, "fgsm", 0.1)


def test_restarts_keep_the_first_success_else_the_highest_loss():
    # logits are the inputs themselves (3 classes, label 0); each "run" returns the next candidate
    wm = nn.Flatten()
    y = torch.tensor([0, 0])
    fooled = [1.0, 1.1, -10.0]  # wrong argmax, CE about 0.74
    high_loss_correct = [1.0, 0.9, 0.9]  # right argmax, CE about 1.03: higher loss but not a success
    low, mid = [3.0, 0.0, 0.0], [2.0, 0.0, 1.0]  # right argmax, CE about 0.10 and 0.42
    runs = iter([
        torch.tensor([fooled, low]),
        torch.tensor([high_loss_correct, mid]),
        torch.tensor([high_loss_correct, low]),
    ])
    run = best_of(wm, lambda x, y: next(runs).view(2, 1, 1, 3), 3)
    best = run(torch.zeros(2, 1, 1, 3), y).view(2, 3)
    assert torch.equal(best[0], torch.tensor(fooled))  # the first success is never replaced
    assert torch.equal(best[1], torch.tensor(mid))  # no success: the highest loss wins


def test_input_gradient_diagnostics_can_be_skipped(base, digits_small):
    spec = attack("pgd", steps=3)
    with_grad = evaluate(base, digits_small, spec, [0.0, 0.1], progress=False).summary
    without = evaluate(base, digits_small, spec, [0.0, 0.1], progress=False, input_gradients=False).summary
    pd.testing.assert_series_equal(with_grad["robust_acc"], without["robust_acc"])
    assert without["grad_norm"].isna().all() and without["zero_grad_frac"].isna().all()
    assert (with_grad["grad_norm"] > 0).all()


# --------------------------------------------------------------------------------------------------------
# every registered attack, by name: budget in its norm, [0, 1], deterministic, generate == evaluate
# --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_registered_attack_is_reproducible_and_generate_matches(name, base, digits_small, trained_digits_pair):
    x, y = digits_small[0][:40], digits_small[1][:40]
    spec = cheap(name)
    base = _model_for(name, base, trained_digits_pair[1])
    eps = EPS[spec.norm]
    result = evaluate(base, (x, y), spec, eps, batch_size=16, seed=7, per_example=True, return_examples=True)
    per_ex, ex_a = result.per_example, result.examples
    ex_b = evaluate(base, (x, y), spec, eps, batch_size=16, seed=7, return_examples=True).examples
    x_adv = ex_a[(spec.label, eps)]
    assert torch.equal(x_adv, ex_b[(spec.label, eps)])  # deterministic for a seed
    assert torch.equal(generate(base, x, y, spec, eps, batch_size=16, seed=7), x_adv)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if spec.norm == "Linf" else delta.norm(dim=1)
    assert size.max() <= eps * (1 + 1e-5) + 1e-6
    rows = per_ex[per_ex["attack"] == spec.label]
    np.testing.assert_allclose(rows["l2"].to_numpy(), delta.norm(dim=1).numpy(), rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------------------------------------
# minimum-norm attacks: Carlini-Wagner L2, scored per eps
# --------------------------------------------------------------------------------------------------------

def test_cw_is_scored_within_eps(base, digits_small):
    x, y = digits_small[0][:48], digits_small[1][:48]
    spec = attack("cw", steps=30, c=5.0, lr=0.05)
    radii = [0.25, 0.75, 1.5]
    result = evaluate(base, (x, y), spec, [0, *radii], batch_size=len(x), per_example=True, return_examples=True)
    summary, per_ex, examples = result.summary, result.per_example, result.examples
    # independent: the unbounded CW examples, their L2 norms and whether they fool, compared with eps by hand
    raw = _CW(base, c=5.0, kappa=0.0, steps=30, lr=0.05)(x, y)
    with torch.no_grad():
        clean = base(x).argmax(1) == y
        fooled = base(raw).argmax(1) != y
    l2 = (raw - x).flatten(1).norm(dim=1)
    assert (fooled & (l2 > radii[0])).any() and (fooled & (l2 <= radii[0])).any()  # the scoring has teeth
    for e in radii:
        within = fooled & (l2 <= e)
        expected = torch.where(within[:, None, None, None], raw, x)
        torch.testing.assert_close(examples[(spec.label, e)], expected, rtol=0, atol=1e-6)
        rows = per_ex[(per_ex["attack"] == spec.label) & (per_ex["eps"] == e)]
        assert np.array_equal(rows["robust_correct"].to_numpy(), (clean & ~within).numpy())
        assert rows["l2"].max() <= e
    acc = summary[summary["attack"] == spec.label]["robust_acc"].to_numpy()
    assert acc[0] == pytest.approx(clean.double().mean().item()) and np.all(np.diff(acc) <= 0)
    assert summary["norm"].iloc[1] == "L2" and "minimum-norm" in summary["budget"].iloc[1]


class _Brightness(nn.Module):
    """Class 0 unless the mean pixel exceeds 0.05: only raising pixels fools it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 0.5 - 10 * x.flatten(1).mean(1)
        return torch.stack([score, torch.zeros_like(score)], 1)


def test_transfer_of_a_minimum_norm_attack_matches_independent_runs(trained_digits_pair, digits_small):
    base, se = trained_digits_pair
    x, y = digits_small[0][:40], digits_small[1][:40]
    spec, radii = cheap("cw"), [0, 0.5, 1.5]
    summary = evaluate_transfer(base, se, (x, y), spec, radii, batch_size=20).summary
    src = evaluate(base, (x, y), spec, radii, batch_size=20).summary
    tgt = evaluate(se, (x, y), spec, radii, batch_size=20).summary
    assert summary["source_robust_acc"].tolist() == src["robust_acc"].iloc[:3].tolist()
    assert summary["target_whitebox_robust_acc"].tolist() == tgt["robust_acc"].iloc[:3].tolist()
    x_adv = generate(base, x, y, spec, 1.5, batch_size=20)
    with torch.no_grad():
        transferred = ((se(x).argmax(1) == y) & (se(x_adv).argmax(1) == y)).double().mean().item()
    assert summary["transfer_robust_acc"].iloc[2] == pytest.approx(transferred, abs=1e-12)


def test_cw_can_move_pixels_at_zero(digits_small):
    # torchattacks' tanh mapping freezes pixels at exactly 0 or 1 (atanh(+-1) is infinite), so on a black
    # image its CW cannot do anything; ours, like the paper's reference code, shrinks the box by 1e-6 first
    import torchattacks

    x, y = torch.zeros(4, 1, 4, 4), torch.zeros(4, dtype=torch.long)
    model = _Brightness()
    assert torch.equal(torchattacks.CW(model, c=5.0, steps=40, lr=0.5)(x, y), x)
    result = evaluate(model, (x, y), attack("cw", steps=40, c=5.0, lr=0.5), [0.1, 3.0], per_example=True)
    summary, per_ex = result.summary, result.per_example
    assert summary["robust_acc"].tolist()[:2] == [1.0, 0.0]  # fooled, with an L2 norm between 0.1 and 3
    assert ((per_ex["l2"] > 0.1) == (per_ex["eps"] == 3.0)).all()


# --------------------------------------------------------------------------------------------------------
# every batch's input is checked: a bad later batch is the input's fault, not a harness bug
# --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", ["evaluate", "generate"])
@pytest.mark.parametrize("bad, match", [("nan", "NaN"), ("255", "divide by 255")])
def test_a_bad_later_batch_raises_input_error_naming_it(fn, bad, match, base, digits_small):
    x, y = digits_small[0][:80].clone(), digits_small[1][:80]
    if bad == "nan":
        x[70, 0, 3, 3] = float("nan")  # batch 2 of 32
    else:
        x[64:] = x[64:] * 255
    with pytest.raises(InputError, match=rf"batch 2, examples 64\.\.95.*{match}|{match}.*batch 2"):
        if fn == "evaluate":
            evaluate(base, (x, y), ["fgsm", cheap("pgd")], 0.1, batch_size=32)
        else:
            generate(base, x, y, cheap("pgd"), 0.1, batch_size=32)


def test_a_bad_later_label_raises_input_error_naming_it(base, digits_small):
    x, y = digits_small[0][:80], digits_small[1][:80].clone()
    y[75] = 10  # the model has 10 outputs: 0..9
    with pytest.raises(InputError, match=r"labels \(batch 2, .*\[0, 9\]"):
        evaluate(base, (x, y), "fgsm", 0.1, batch_size=32)
    y[75] = -1
    with pytest.raises(InputError, match=r"batch 2"):
        generate(base, x, y, "fgsm", 0.1, batch_size=32)


def test_a_bad_batch_from_a_loader_is_named(base, digits_small):
    x, y = digits_small[0][:64].clone(), digits_small[1][:64]
    x[40] = float("nan")
    loader = DataLoader(TensorDataset(x, y), batch_size=10)  # re-chunked into batches of 16: example 40 in batch 2
    with pytest.raises(InputError, match="batch 2"):
        evaluate(base, loader, "fgsm", 0.1, batch_size=16)
