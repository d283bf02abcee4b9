"""Tests of serobust.mechanism: gate overrides, interventions, adaptive attacks, class profiles.

Every expected value is computed independently of the code under test: a hand-written forward pass of
the SmallCNN whose SE gates multiply by a given excitation, a hand-written PGD loop, torchattacks' PGD,
and pandas groupbys of manually computed excitations.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torchattacks
from torch import nn
from torch.nn import functional as F

from serobust.mechanism import (
    adaptive_attacks,
    capture_excitations,
    class_profiles,
    excitation_pgd,
    frozen_gate_pgd,
    gate_override,
    interventions,
    pgd,
    profile_shift,
)
from serobust.models.cnn import ConvBlock
from serobust.se_adapters import NoSEModuleError, find_se_modules

EPS = 0.1
N_ATTACK = 160  # examples attacked per test (8x8 digits; keeps the file well under a minute)


# ---------------------------------------------------------------------------------------------------
# independent references
# ---------------------------------------------------------------------------------------------------


def _manual_s(se: nn.Module, u: torch.Tensor) -> torch.Tensor:
    """The excitation of serobust's SqueezeExcite written out: sigmoid(W2 relu(W1 mean_hw(u)))."""
    z = u.mean((2, 3))  # (B, C)
    return torch.sigmoid(F.linear(torch.relu(F.linear(z, se.fc1.weight, se.fc1.bias)), se.fc2.weight, se.fc2.bias))


def _manual_forward(model: nn.Module, x: torch.Tensor, gate=None):
    """SmallCNN forward by hand; ``gate(k, u) -> s (B, C) or (C,)`` replaces block k's excitation.

    Returns (logits, list of the s used per block, list of u per block).
    """
    h = model.normalize(x)
    used_s, us, k = [], [], 0
    for layer in model.features:
        if isinstance(layer, ConvBlock):
            u = torch.relu(layer.bn(layer.conv(h)))
            s = _manual_s(layer.se, u) if gate is None else gate(k, u)
            s = s.expand(u.shape[0], u.shape[1])
            used_s.append(s)
            us.append(u)
            h = u * s[:, :, None, None]
            k += 1
        else:
            h = layer(h)
    return model.fc(torch.flatten(model.pool(h), 1)), used_s, us


def _reference_pgd(model, x, y, eps, alpha, steps):
    """Linf PGD without random start, written from the textbook definition."""
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (g,) = torch.autograd.grad(loss, x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def _acc(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(1) == y).float().mean().item()


@pytest.fixture(scope="module")
def se_model(trained_digits_pair):
    return trained_digits_pair[1]


@pytest.fixture(scope="module")
def test_xy(digits_xy):
    _, (x, y) = digits_xy
    return x[:N_ATTACK], y[:N_ATTACK]


@pytest.fixture(scope="module")
def x_adv_pgd(se_model, test_xy):
    x, y = test_xy
    return pgd(se_model, x, y, EPS, steps=10, seed=0, batch_size=64)


def _block_names(model):
    return [b.name for b in find_se_modules(model)]


# ---------------------------------------------------------------------------------------------------
# gate_override and capture
# ---------------------------------------------------------------------------------------------------


def test_capture_matches_manual_excitations(se_model, test_xy):
    x, _ = test_xy
    s, logits = capture_excitations(se_model, x, batch_size=50)
    with torch.no_grad():
        ref_logits, ref_s, _ = _manual_forward(se_model, x)
    assert list(s) == _block_names(se_model)
    for name, ref in zip(s, ref_s):
        torch.testing.assert_close(s[name], ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)


def test_override_with_own_clean_s_reproduces_clean_logits_exactly(se_model, test_xy):
    x, _ = test_xy
    s, _ = capture_excitations(se_model, x)
    with torch.no_grad():
        clean = se_model(x)
        with gate_override(se_model, s):
            overridden = se_model(x)
    assert torch.equal(overridden, clean)


def test_override_with_other_inputs_s_matches_manual_forward(se_model, test_xy):
    x, _ = test_xy
    a, b = x[:40], x[40:80]
    s_b, _ = capture_excitations(se_model, b)
    with torch.no_grad():
        _, ref_s_b, _ = _manual_forward(se_model, b)
        expected, _, _ = _manual_forward(se_model, a, gate=lambda k, u: ref_s_b[k])
        with gate_override(se_model, s_b):
            got = se_model(a)
        plain = se_model(a)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-3)  # the override really changed the forward pass


def test_override_callable_and_partial_dict(se_model, test_xy):
    x, _ = test_xy
    x = x[:30]
    names = _block_names(se_model)
    with torch.no_grad():
        with gate_override(se_model, lambda name, s: 1 - s if name == names[2] else None):
            got = se_model(x)
        expected, _, _ = _manual_forward(
            se_model, x, gate=lambda k, u: 1 - _manual_s(se_model.features[_conv_index(se_model, k)].se, u)
            if k == 2 else _manual_s(se_model.features[_conv_index(se_model, k)].se, u))
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        half = torch.full((se_model.features[0].se.channels,), 0.5)
        with gate_override(se_model, {names[0]: half}):
            got = se_model(x)
        expected, _, _ = _manual_forward(
            se_model, x, gate=lambda k, u: half if k == 0 else
            _manual_s(se_model.features[_conv_index(se_model, k)].se, u))
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def _conv_index(model, k):
    """Index in model.features of the k-th ConvBlock."""
    return [i for i, m in enumerate(model.features) if isinstance(m, ConvBlock)][k]


def test_override_hooks_removed_on_exit_and_on_exception(se_model, test_xy):
    x, _ = test_xy
    x = x[:20]
    gates = [b.gate for b in find_se_modules(se_model)]
    with torch.no_grad():
        before = se_model(x)
        zeros = {n: torch.zeros(g.channels) for n, g in
                 ((b.name, b.module) for b in find_se_modules(se_model))}
        with gate_override(se_model, zeros):
            assert all(len(g._forward_hooks) == 1 for g in gates)
            assert not torch.allclose(se_model(x), before)
        assert all(len(g._forward_hooks) == 0 for g in gates)
        assert torch.equal(se_model(x), before)
        with pytest.raises(RuntimeError, match="boom"), gate_override(se_model, zeros):
            raise RuntimeError("boom")
        assert all(len(g._forward_hooks) == 0 for g in gates)
        # an error raised by the hook itself (wrong width) also leaves no hook behind
        with pytest.raises(ValueError, match="expected"), gate_override(se_model, {_block_names(se_model)[0]:
                                                                                    torch.ones(3)}):
            se_model(x)
        assert all(len(g._forward_hooks) == 0 for g in gates)
        assert torch.equal(se_model(x), before)


def test_override_rejects_unknown_block_and_wrong_batch(se_model, test_xy):
    x, _ = test_xy
    name = _block_names(se_model)[0]
    channels = find_se_modules(se_model)[0].module.channels
    with pytest.raises(ValueError, match="unknown SE block"), gate_override(se_model, {"nope": torch.ones(4)}):
        pass
    with pytest.raises(ValueError, match="expected"), gate_override(se_model, {name: torch.ones(5, channels)}):
        se_model(x[:7])


def test_override_torchvision_gate_shape():
    """torchvision's SqueezeExcitation outputs s as (B, C, 1, 1); a (B, C) override is reshaped to it."""
    from torchvision.ops import SqueezeExcitation

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), SqueezeExcitation(8, 4), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 3)).eval()
    x = torch.rand(5, 1, 6, 6)
    s_new = torch.rand(5, 8)
    with torch.no_grad():
        with gate_override(model, {"1": s_new}):
            got = model(x)
        u = model[0](x)
        expected = model[4]((u * s_new[:, :, None, None]).mean((2, 3)))
        s, _ = capture_excitations(model, x)
        expected_s = torch.sigmoid(model[1].fc2(torch.relu(model[1].fc1(u.mean((2, 3), keepdim=True))))).flatten(1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert s["1"].shape == (5, 8)
    torch.testing.assert_close(s["1"], expected_s, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# interventions
# ---------------------------------------------------------------------------------------------------


def test_interventions_with_xadv_equal_x_give_clean_accuracy(se_model, test_xy):
    x, y = test_xy
    frame = interventions(se_model, x, y, x.clone(), batch_size=64)
    assert list(frame.columns) == ["condition", "block", "accuracy", "n"]
    with torch.no_grad():
        clean = _acc(se_model(x), y)
    acc = frame.set_index(["condition", "block"])["accuracy"]
    assert acc[("clean", "none")] == pytest.approx(clean)
    assert acc[("adversarial", "none")] == pytest.approx(clean)
    assert acc[("excitation_swap", "all")] == pytest.approx(clean)
    swaps = frame[frame.condition == "block_swap"]
    assert list(swaps.block) == _block_names(se_model)
    assert swaps.accuracy.to_list() == pytest.approx([clean] * len(swaps))
    assert acc[("frozen_gate", "all")] == pytest.approx(acc[("clean_frozen_gate", "all")])
    assert (frame.n == len(x)).all()


def test_interventions_match_manual_forward(se_model, test_xy, x_adv_pgd):
    """excitation_swap, block_swap and frozen_gate against hand-written forwards with the gates set."""
    x, y = test_xy
    names = _block_names(se_model)
    const = {n: torch.full((b.module.channels,), 0.3) for n, b in zip(names, find_se_modules(se_model))}
    frame = interventions(se_model, x, y, x_adv_pgd, mean_s=const, batch_size=64)
    acc = frame.set_index(["condition", "block"])["accuracy"]
    with torch.no_grad():
        _, s_clean, _ = _manual_forward(se_model, x)
        adv_logits, _, _ = _manual_forward(se_model, x_adv_pgd)
        swap, _, _ = _manual_forward(se_model, x_adv_pgd, gate=lambda k, u: s_clean[k])
        frozen_adv, _, _ = _manual_forward(se_model, x_adv_pgd, gate=lambda k, u: torch.full((u.shape[1],), 0.3))
        frozen_clean, _, _ = _manual_forward(se_model, x, gate=lambda k, u: torch.full((u.shape[1],), 0.3))
        swap_2, _, _ = _manual_forward(
            se_model, x_adv_pgd,
            gate=lambda k, u: s_clean[k] if k == 2 else _manual_s(se_model.features[_conv_index(se_model, k)].se, u))
    assert acc[("adversarial", "none")] == pytest.approx(_acc(adv_logits, y))
    assert acc[("excitation_swap", "all")] == pytest.approx(_acc(swap, y))
    assert acc[("frozen_gate", "all")] == pytest.approx(_acc(frozen_adv, y))
    assert acc[("clean_frozen_gate", "all")] == pytest.approx(_acc(frozen_clean, y))
    assert acc[("block_swap", names[2])] == pytest.approx(_acc(swap_2, y))
    # the attack works: adversarial accuracy is well below clean
    assert acc[("adversarial", "none")] < acc[("clean", "none")] - 0.1


def test_interventions_default_mean_s_and_batch_invariance(se_model, test_xy, x_adv_pgd):
    x, y = test_xy
    a = interventions(se_model, x, y, x_adv_pgd, batch_size=32)
    b = interventions(se_model, x, y, x_adv_pgd, batch_size=N_ATTACK)
    pd.testing.assert_frame_equal(a, b)
    s, _ = capture_excitations(se_model, x)
    mean_s = {n: v.mean(0) for n, v in s.items()}
    with torch.no_grad():
        frozen, _, _ = _manual_forward(se_model, x_adv_pgd, gate=lambda k, u: list(mean_s.values())[k])
    assert a.set_index(["condition", "block"]).loc[("frozen_gate", "all"), "accuracy"] == pytest.approx(
        _acc(frozen, y))


def test_interventions_restore_training_mode_and_validate(trained_digits_pair, test_xy, x_adv_pgd):
    x, y = test_xy
    model = trained_digits_pair[1]
    expected = interventions(model, x, y, x_adv_pgd)
    model.train()
    try:
        got = interventions(model, x, y, x_adv_pgd)
        assert model.training and all(m.training for m in model.modules())
    finally:
        model.eval()
    pd.testing.assert_frame_equal(got, expected)  # computed in eval mode regardless
    with pytest.raises(ValueError, match="same shape"):
        interventions(model, x, y, x_adv_pgd[:10])
    with pytest.raises(ValueError, match="mean_s lacks"):
        interventions(model, x, y, x_adv_pgd, mean_s={})
    with pytest.raises(ValueError, match="batch_size"):
        interventions(model, x, y, x_adv_pgd, batch_size=0)


# ---------------------------------------------------------------------------------------------------
# attacks
# ---------------------------------------------------------------------------------------------------


def test_pgd_without_random_start_equals_reference_and_torchattacks(se_model, test_xy):
    x, y = test_xy
    x, y = x[:64], y[:64]
    alpha, steps = 0.025, 8
    got = pgd(se_model, x, y, EPS, steps=steps, alpha=alpha, random_start=False, batch_size=64)
    ref = _reference_pgd(se_model, x, y, EPS, alpha, steps)
    ta = torchattacks.PGD(se_model, eps=EPS, alpha=alpha, steps=steps, random_start=False)(x, y)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(got, ta, rtol=0, atol=1e-6)


def test_pgd_with_random_start_matches_torchattacks_accuracy(se_model, test_xy):
    x, y = test_xy
    ours = pgd(se_model, x, y, EPS, steps=10, alpha=0.025, seed=0)
    torch.manual_seed(1)
    ta = torchattacks.PGD(se_model, eps=EPS, alpha=0.025, steps=10, random_start=True)(x, y)
    with torch.no_grad():
        acc_ours, acc_ta, clean = _acc(se_model(ours), y), _acc(se_model(ta), y), _acc(se_model(x), y)
    assert acc_ours < clean - 0.1
    assert abs(acc_ours - acc_ta) <= 0.04
    # seeded: the same seed gives the same x_adv, another seed a different random start
    assert torch.equal(ours, pgd(se_model, x, y, EPS, steps=10, alpha=0.025, seed=0))
    assert not torch.equal(ours, pgd(se_model, x, y, EPS, steps=10, alpha=0.025, seed=1))


@pytest.mark.parametrize("attack", [pgd, excitation_pgd, frozen_gate_pgd])
def test_attacks_respect_eps_and_range(attack, se_model, test_xy):
    x, y = test_xy
    x, y = x[:64], y[:64]
    x_adv = attack(se_model, x, y, "1/10", steps=5, batch_size=32)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert (x_adv - x).abs().max().item() <= EPS + 1e-6
    assert x_adv.min().item() >= 0 and x_adv.max().item() <= 1
    assert (x_adv - x).abs().max().item() > EPS / 2  # it moved
    with torch.no_grad():
        assert _acc(se_model(x_adv), y) <= _acc(se_model(x), y)


def test_excitation_pgd_weight_zero_equals_pgd_and_weight_pushes_excitations(se_model, test_xy):
    x, y = test_xy
    x, y = x[:64], y[:64]
    plain = pgd(se_model, x, y, EPS, steps=6, seed=3)
    zero = excitation_pgd(se_model, x, y, EPS, steps=6, seed=3, weight=0.0)
    assert torch.equal(zero, plain)
    heavy = excitation_pgd(se_model, x, y, EPS, steps=6, seed=3, weight=100.0)
    s0, _ = capture_excitations(se_model, x)

    def shift(xa):
        sa, _ = capture_excitations(se_model, xa)
        return torch.stack([((sa[n] - s0[n]).pow(2).sum(1) / s0[n].pow(2).sum(1)) for n in s0]).mean().item()

    assert shift(heavy) > shift(plain)


def test_frozen_gate_pgd_equals_pgd_on_manually_frozen_model(se_model, test_xy):
    """Gradients do not flow through s: same as PGD on a hand-written forward with s fixed at clean."""
    x, y = test_xy
    x, y = x[:48], y[:48]
    alpha, steps = 0.025, 6
    with torch.no_grad():
        _, s_clean, _ = _manual_forward(se_model, x)
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        logits, _, _ = _manual_forward(se_model, x_adv, gate=lambda k, u: s_clean[k])
        (g,) = torch.autograd.grad(F.cross_entropy(logits, y), x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + alpha * g.sign(), x - EPS), x + EPS).clamp(0, 1)
    got = frozen_gate_pgd(se_model, x, y, EPS, steps=steps, alpha=alpha, random_start=False)
    differ = ((got - x_adv).abs() > 1e-6).float().mean().item()
    assert differ < 0.002  # identical up to sign flips of gradients that are zero to rounding
    plain = pgd(se_model, x, y, EPS, steps=steps, alpha=alpha, random_start=False)
    assert not torch.equal(got, plain)  # freezing the gates changes the attack


def test_adaptive_attacks_frame(se_model, test_xy):
    x, y = test_xy
    frame = adaptive_attacks(se_model, x, y, [0.0, EPS], steps=8, batch_size=80, seed=0)
    assert list(frame.columns) == ["attack", "eps", "robust_acc", "n", "stronger_than_pgd", "clean_acc",
                                   "max_linf"]
    assert len(frame) == 6 and set(frame.attack) == {"pgd", "excitation_pgd", "frozen_gate_pgd"}
    with torch.no_grad():
        clean = _acc(se_model(x), y)
    assert frame.clean_acc.to_list() == pytest.approx([clean] * len(frame))
    zero = frame[frame.eps == 0]
    assert zero.robust_acc.to_list() == pytest.approx([clean] * 3) and (zero.max_linf == 0).all()
    attacked = frame[frame.eps == EPS].set_index("attack")
    assert (attacked.robust_acc <= clean).all()
    assert (attacked.max_linf <= EPS + 1e-6).all()
    assert attacked.loc["pgd", "robust_acc"] < clean - 0.1
    # the pgd row is the same attack as pgd() with the same seed and batching
    x_adv = pgd(se_model, x, y, EPS, steps=8, seed=0, batch_size=80)
    with torch.no_grad():
        assert attacked.loc["pgd", "robust_acc"] == pytest.approx(_acc(se_model(x_adv), y))
    x_fg = frozen_gate_pgd(se_model, x, y, EPS, steps=8, seed=0, batch_size=80)
    with torch.no_grad():
        assert attacked.loc["frozen_gate_pgd", "robust_acc"] == pytest.approx(_acc(se_model(x_fg), y))
    expected_flag = attacked.robust_acc < attacked.loc["pgd", "robust_acc"] - 0.02
    assert (attacked.stronger_than_pgd == expected_flag).all()
    assert not attacked.loc["pgd", "stronger_than_pgd"]


def test_attack_argument_validation(se_model, test_xy):
    x, y = test_xy
    with pytest.raises(ValueError, match="steps"):
        adaptive_attacks(se_model, x, y, EPS, steps=0)
    with pytest.raises(ValueError, match="alpha"):
        pgd(se_model, x, y, EPS, alpha=-1.0)
    with pytest.raises(ValueError, match="255"):
        adaptive_attacks(se_model, x, y, 8)
    with pytest.raises(ValueError, match="y must"):
        pgd(se_model, x, y[:5], EPS)


# ---------------------------------------------------------------------------------------------------
# class profiles
# ---------------------------------------------------------------------------------------------------


def test_class_profiles_equal_groupby_of_manual_s(se_model, digits_xy):
    _, (x, y) = digits_xy
    frame = class_profiles(se_model, x, y, batch_size=100)
    assert list(frame.columns) == ["block", "class", "channel", "s_mean", "n"]
    with torch.no_grad():
        _, s_list, _ = _manual_forward(se_model, x)
    rows = []
    for name, s in zip(_block_names(se_model), s_list):
        c = s.shape[1]
        rows.append(pd.DataFrame({"block": name, "class": y.repeat_interleave(c).numpy(),
                                  "channel": torch.arange(c).repeat(len(y)).numpy(), "s": s.reshape(-1).numpy()}))
    ref = pd.concat(rows).groupby(["block", "class", "channel"], sort=False)["s"].agg(["mean", "size"])
    got = frame.set_index(["block", "class", "channel"]).loc[ref.index]
    assert len(frame) == len(ref)
    assert got.s_mean.to_numpy() == pytest.approx(ref["mean"].to_numpy(), abs=1e-5)
    assert (got.n.to_numpy() == (ref["size"].to_numpy())).all()


def test_class_profiles_skip_absent_classes(se_model, digits_xy):
    _, (x, y) = digits_xy
    keep = y != 3
    frame = class_profiles(se_model, x[keep], y[keep])
    assert 3 not in set(frame["class"]) and set(frame["class"]) == set(range(10)) - {3}


def test_profile_shift_matches_manual(se_model, test_xy, x_adv_pgd):
    x, y = test_xy
    frame = profile_shift(se_model, x, y, x_adv_pgd, batch_size=64)
    with torch.no_grad():
        clean_logits, s_clean, _ = _manual_forward(se_model, x)
        adv_logits, s_adv, _ = _manual_forward(se_model, x_adv_pgd)
    pred = adv_logits.argmax(1)
    fooled = (clean_logits.argmax(1) == y) & (pred != y)
    assert fooled.sum() > 10
    assert list(frame.block) == _block_names(se_model)
    assert (frame.n_fooled == int(fooled.sum())).all()
    k = len(s_clean) - 1  # check the last (most class-specific) block by hand
    prof = torch.stack([s_clean[k][y == c].mean(0) for c in range(10)])  # (K, C)
    rms = lambda a, b: (a - b).pow(2).mean(1).sqrt()  # noqa: E731
    a_f = rms(s_adv[k], prof[pred])[fooled]
    c_f = rms(s_clean[k], prof[pred])[fooled]
    a_t = rms(s_adv[k], prof[y])[fooled]
    row = frame.iloc[k]
    assert row.adv_to_fooled == pytest.approx(a_f.mean().item(), rel=1e-4)
    assert row.clean_to_fooled == pytest.approx(c_f.mean().item(), rel=1e-4)
    assert row.adv_to_true == pytest.approx(a_t.mean().item(), rel=1e-4)
    assert row.share_closer_to_fooled == pytest.approx((a_f < c_f).float().mean().item())
    assert row.share_nearer_fooled_than_true == pytest.approx((a_f < a_t).float().mean().item())
    # profiles passed in as a frame give the same answer as profiles computed inside
    same = profile_shift(se_model, x, y, x_adv_pgd, profiles=class_profiles(se_model, x, y))
    pd.testing.assert_frame_equal(same, frame, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------
# baselines
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call", [
    lambda m, x, y: interventions(m, x, y, x),
    lambda m, x, y: adaptive_attacks(m, x, y, EPS, steps=1),
    lambda m, x, y: class_profiles(m, x, y),
    lambda m, x, y: profile_shift(m, x, y, x),
    lambda m, x, y: excitation_pgd(m, x, y, EPS, steps=1),
    lambda m, x, y: frozen_gate_pgd(m, x, y, EPS, steps=1),
    lambda m, x, y: capture_excitations(m, x),
    lambda m, x, y: gate_override(m, {}).__enter__(),
], ids=["interventions", "adaptive_attacks", "class_profiles", "profile_shift", "excitation_pgd",
        "frozen_gate_pgd", "capture_excitations", "gate_override"])
def test_baseline_raises_no_se_module_error(call, trained_digits_pair, test_xy):
    x, y = test_xy
    with pytest.raises(NoSEModuleError, match="SE twin"):
        call(trained_digits_pair[0], x[:8], y[:8])


def test_misuse_warnings(se_model, test_xy):
    x, y = test_xy
    x, y = x[:16], y[:16]
    with pytest.warns(UserWarning, match=r"outside \[0, 1\]"):
        class_profiles(se_model, (x - 0.5) / 0.5, y)
    with pytest.warns(UserWarning, match="repeated"):
        frame = adaptive_attacks(se_model, x, y, [EPS, EPS], steps=1)
    assert len(frame) == 3
