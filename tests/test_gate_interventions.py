"""gate_override and interventions against hand-written forwards with the SE gates set by hand."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from se_reference import acc, block_names, conv_index, digits_fixtures, manual_forward, manual_s, probe_s
from torch import nn

from serobust.excitation.adapters import find_se_modules
from serobust.excitation.interventions import gate_override, interventions

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = 0.1
N = 160


se_model, test_xy, x_adv_pgd = digits_fixtures(N, EPS)


# --------------------------------------------------------------------------------------- gate_override
def test_override_with_own_clean_s_reproduces_clean_logits_exactly(se_model, test_xy):
    x, _ = test_xy
    s = probe_s(se_model, x)
    with torch.no_grad():
        clean = se_model(x)
        with gate_override(se_model, s):
            overridden = se_model(x)
    assert torch.equal(overridden, clean)


def test_override_with_other_inputs_s_matches_manual_forward(se_model, test_xy):
    x, _ = test_xy
    a, b = x[:40], x[40:80]
    s_b = probe_s(se_model, b)
    with torch.no_grad():
        _, ref_s_b, _ = manual_forward(se_model, b)
        expected, _, _ = manual_forward(se_model, a, gate=lambda k, u: ref_s_b[k])
        with gate_override(se_model, s_b):
            got = se_model(a)
        plain = se_model(a)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-3)  # the override really changed the forward pass


def test_override_callable_and_partial_dict(se_model, test_xy):
    x, _ = test_xy
    x = x[:30]
    names = block_names(se_model)

    def own(k, u):
        return manual_s(se_model.features[conv_index(se_model, k)].se, u)

    with torch.no_grad():
        with gate_override(se_model, lambda name, s: 1 - s if name == names[2] else None):
            got = se_model(x)
        expected, _, _ = manual_forward(se_model, x, gate=lambda k, u: 1 - own(k, u) if k == 2 else own(k, u))
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        half = torch.full((se_model.features[0].se.channels,), 0.5)
        with gate_override(se_model, {names[0]: half}):
            got = se_model(x)
        expected, _, _ = manual_forward(se_model, x, gate=lambda k, u: half if k == 0 else own(k, u))
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_override_hooks_removed_on_exit_and_on_exception(se_model, test_xy):
    x, _ = test_xy
    x = x[:20]
    gates = [b.gate for b in find_se_modules(se_model)]
    with torch.no_grad():
        before = se_model(x)
        zeros = {b.name: torch.zeros(b.module.channels) for b in find_se_modules(se_model)}
        with gate_override(se_model, zeros):
            assert all(len(g._forward_hooks) == 1 for g in gates)
            assert not torch.allclose(se_model(x), before)
        assert all(len(g._forward_hooks) == 0 for g in gates)
        assert torch.equal(se_model(x), before)
        with pytest.raises(RuntimeError, match="boom"), gate_override(se_model, zeros):
            raise RuntimeError("boom")
        assert all(len(g._forward_hooks) == 0 for g in gates)
        # an error raised by the hook itself (wrong width) also leaves no hook behind
        with pytest.raises(ValueError, match="expected"), \
                gate_override(se_model, {block_names(se_model)[0]: torch.ones(3)}):
            se_model(x)
        assert all(len(g._forward_hooks) == 0 for g in gates)
        assert torch.equal(se_model(x), before)


def test_override_rejects_unknown_block_and_wrong_batch(se_model, test_xy):
    x, _ = test_xy
    name = block_names(se_model)[0]
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
        expected_s = torch.sigmoid(model[1].fc2(torch.relu(model[1].fc1(u.mean((2, 3), keepdim=True))))).flatten(1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    s = probe_s(model, x)
    assert s["1"].shape == (5, 8)
    torch.testing.assert_close(s["1"], expected_s, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------- interventions
def test_interventions_with_xadv_equal_x_give_clean_accuracy(se_model, test_xy):
    x, y = test_xy
    frame = interventions(se_model, x, y, x.clone(), batch_size=64)
    assert list(frame.columns) == ["condition", "block", "accuracy", "n"]
    with torch.no_grad():
        clean = acc(se_model(x), y)
    accuracy = frame.set_index(["condition", "block"])["accuracy"]
    assert accuracy[("clean", "none")] == pytest.approx(clean)
    assert accuracy[("adversarial", "none")] == pytest.approx(clean)
    assert accuracy[("excitation_swap", "all")] == pytest.approx(clean)
    swaps = frame[frame.condition == "block_swap"]
    assert list(swaps.block) == block_names(se_model)
    assert swaps.accuracy.to_list() == pytest.approx([clean] * len(swaps))
    assert accuracy[("frozen_gate", "all")] == pytest.approx(accuracy[("clean_frozen_gate", "all")])
    assert (frame.n == len(x)).all()


def test_interventions_match_manual_forward(se_model, test_xy, x_adv_pgd):
    """excitation_swap, block_swap and frozen_gate against hand-written forwards with the gates set."""
    x, y = test_xy
    names = block_names(se_model)
    const = {n: torch.full((b.module.channels,), 0.3) for n, b in zip(names, find_se_modules(se_model))}
    frame = interventions(se_model, x, y, x_adv_pgd, mean_s=const, batch_size=64)
    accuracy = frame.set_index(["condition", "block"])["accuracy"]
    with torch.no_grad():
        _, s_clean, _ = manual_forward(se_model, x)
        adv_logits, _, _ = manual_forward(se_model, x_adv_pgd)
        swap, _, _ = manual_forward(se_model, x_adv_pgd, gate=lambda k, u: s_clean[k])
        frozen_adv, _, _ = manual_forward(se_model, x_adv_pgd, gate=lambda k, u: torch.full((u.shape[1],), 0.3))
        frozen_clean, _, _ = manual_forward(se_model, x, gate=lambda k, u: torch.full((u.shape[1],), 0.3))
        swap_2, _, _ = manual_forward(
            se_model, x_adv_pgd,
            gate=lambda k, u: s_clean[k] if k == 2 else manual_s(se_model.features[conv_index(se_model, k)].se, u))
    assert accuracy[("adversarial", "none")] == pytest.approx(acc(adv_logits, y))
    assert accuracy[("excitation_swap", "all")] == pytest.approx(acc(swap, y))
    assert accuracy[("frozen_gate", "all")] == pytest.approx(acc(frozen_adv, y))
    assert accuracy[("clean_frozen_gate", "all")] == pytest.approx(acc(frozen_clean, y))
    assert accuracy[("block_swap", names[2])] == pytest.approx(acc(swap_2, y))
    # the attack works: adversarial accuracy is well below clean
    assert accuracy[("adversarial", "none")] < accuracy[("clean", "none")] - 0.1


def test_interventions_default_mean_s_and_batch_invariance(se_model, test_xy, x_adv_pgd):
    x, y = test_xy
    a = interventions(se_model, x, y, x_adv_pgd, batch_size=32)
    b = interventions(se_model, x, y, x_adv_pgd, batch_size=N)
    pd.testing.assert_frame_equal(a, b)
    with torch.no_grad():
        _, s_list, _ = manual_forward(se_model, x)
        mean_s = [s.mean(0) for s in s_list]
        frozen, _, _ = manual_forward(se_model, x_adv_pgd, gate=lambda k, u: mean_s[k])
    assert a.set_index(["condition", "block"]).loc[("frozen_gate", "all"), "accuracy"] == pytest.approx(
        acc(frozen, y))


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
