"""Adaptive attacks on the SE gates (the registered ``excitation_pgd`` and ``frozen_gate_pgd``, run through
the harness): against a textbook PGD, torchattacks, hand-written excitation and frozen-gate PGD, and numbers
pinned from the implementation before the shared PGD loop (serobust.linf_pgd) and before the registry."""

from __future__ import annotations

import pytest
import torch
import torchattacks
from se_reference import acc, digits_fixtures, manual_forward, probe_s, reference_pgd
from torch.nn import functional as F

from serobust import build_model
from serobust.attacks import attack, evaluate, generate
from serobust.excitation.adapters import NoSEModuleError
from serobust.excitation.adaptive import adaptive_attacks, adaptive_specs
from serobust.models.se import SqueezeExcite

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = 0.1
N = 160


se_model, test_xy, _ = digits_fixtures(N, EPS)


def _registered(name: str, **fixed):
    """``fn(model, x, y, eps, seed=0, batch_size=256, **options)``: the registered attack through
    :func:`generate`, with the seeded start stream (``start_seed=seed``) that ``adaptive_attacks`` uses;
    ``pgd`` is ``excitation_pgd`` at weight 0, the reference row of ``adaptive_attacks``."""

    def run(model, x, y, eps, *, seed=0, batch_size=256, **options):
        spec = attack(name, start_seed=seed, **{**options, **fixed})
        return generate(model, x, y, spec, eps, seed=seed, batch_size=batch_size)

    run.__name__ = "pgd" if fixed else name
    return run


pgd = _registered("excitation_pgd", weight=0.0)
excitation_pgd = _registered("excitation_pgd")
frozen_gate_pgd = _registered("frozen_gate_pgd")


def test_pgd_without_random_start_equals_reference_and_torchattacks(se_model, test_xy):
    x, y = test_xy
    x, y = x[:64], y[:64]
    alpha, steps = 0.025, 8
    got = pgd(se_model, x, y, EPS, steps=steps, alpha=alpha, random_start=False, batch_size=64)
    ref = reference_pgd(se_model, x, y, EPS, alpha, steps)
    ta = torchattacks.PGD(se_model, eps=EPS, alpha=alpha, steps=steps, random_start=False)(x, y)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(got, ta, rtol=0, atol=1e-6)


def test_pgd_random_start_is_the_seeded_uniform_start(se_model, test_xy):
    """The random start is U(-eps, eps) from a CPU generator seeded with ``seed``, batch by batch."""
    x, y = test_xy
    x, y = x[:48], y[:48]
    gen = torch.Generator().manual_seed(5)
    starts = [(xb + (2 * torch.rand(xb.shape, generator=gen) - 1) * EPS).clamp(0, 1) for xb in x.split(20)]
    expected = torch.cat([reference_pgd(se_model, xb, yb, EPS, 0.02, 4, start=st)
                          for xb, yb, st in zip(x.split(20), y.split(20), starts)])
    got = pgd(se_model, x, y, EPS, steps=4, alpha=0.02, seed=5, batch_size=20)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_pgd_with_random_start_matches_torchattacks_accuracy(se_model, test_xy):
    x, y = test_xy
    ours = pgd(se_model, x, y, EPS, steps=10, alpha=0.025, seed=0)
    torch.manual_seed(1)
    ta = torchattacks.PGD(se_model, eps=EPS, alpha=0.025, steps=10, random_start=True)(x, y)
    with torch.no_grad():
        acc_ours, acc_ta, clean = acc(se_model(ours), y), acc(se_model(ta), y), acc(se_model(x), y)
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
        assert acc(se_model(x_adv), y) <= acc(se_model(x), y)


def test_excitation_pgd_weight_zero_equals_pgd_and_weight_pushes_excitations(se_model, test_xy):
    x, y = test_xy
    x, y = x[:64], y[:64]
    plain = pgd(se_model, x, y, EPS, steps=6, seed=3)
    zero = excitation_pgd(se_model, x, y, EPS, steps=6, seed=3, weight=0.0)
    assert torch.equal(zero, plain)
    # ... and both are textbook PGD on the cross-entropy from the seeded uniform start
    start = (x + (2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) - 1) * EPS).clamp(0, 1)
    torch.testing.assert_close(zero, reference_pgd(se_model, x, y, EPS, 2.5 * EPS / 6, 6, start=start),
                               rtol=0, atol=1e-6)
    heavy = excitation_pgd(se_model, x, y, EPS, steps=6, seed=3, weight=100.0)
    s0 = probe_s(se_model, x)

    def shift(xa):
        sa = probe_s(se_model, xa)
        return torch.stack([((sa[n] - s0[n]).pow(2).sum(1) / s0[n].pow(2).sum(1)) for n in s0]).mean().item()

    assert shift(heavy) > shift(plain)


def test_excitation_pgd_equals_hand_written_excitation_loss(se_model, test_xy):
    """The loss CE + w * mean_blocks(||s' - s||^2 / ||s||^2), written with the manual forward."""
    x, y = test_xy
    x, y = x[:48], y[:48]
    alpha, steps, weight = 0.025, 5, 10.0
    with torch.no_grad():
        _, s_clean, _ = manual_forward(se_model, x)
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        logits, s_adv, _ = manual_forward(se_model, x_adv)
        shift = torch.stack([(sa - sc).pow(2).sum(1) / sc.pow(2).sum(1) for sa, sc in zip(s_adv, s_clean)])
        (g,) = torch.autograd.grad(F.cross_entropy(logits, y) + weight * shift.mean(), x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + alpha * g.sign(), x - EPS), x + EPS).clamp(0, 1)
    got = excitation_pgd(se_model, x, y, EPS, steps=steps, alpha=alpha, weight=weight, random_start=False)
    differ = ((got - x_adv).abs() > 1e-6).float().mean().item()
    assert differ < 0.002  # identical up to sign flips of gradients that are zero to rounding
    assert not torch.equal(got, pgd(se_model, x, y, EPS, steps=steps, alpha=alpha, random_start=False))


def test_frozen_gate_pgd_equals_pgd_on_manually_frozen_model(se_model, test_xy):
    """Gradients do not flow through s: same as PGD on a hand-written forward with s fixed at clean."""
    x, y = test_xy
    x, y = x[:48], y[:48]
    alpha, steps = 0.025, 6
    with torch.no_grad():
        _, s_clean, _ = manual_forward(se_model, x)
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        logits, _, _ = manual_forward(se_model, x_adv, gate=lambda k, u: s_clean[k])
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
        clean = acc(se_model(x), y)
    assert frame.clean_acc.to_list() == pytest.approx([clean] * len(frame))
    zero = frame[frame.eps == 0]
    assert zero.robust_acc.to_list() == pytest.approx([clean] * 3) and (zero.max_linf == 0).all()
    attacked = frame[frame.eps == EPS].set_index("attack")
    assert (attacked.robust_acc <= clean).all()
    assert (attacked.max_linf <= EPS + 1e-6).all()
    assert attacked.loc["pgd", "robust_acc"] < clean - 0.1
    # every row is the same attack as the function of its name with the same seed and batching
    for name, fn, kw in (("pgd", pgd, {}), ("frozen_gate_pgd", frozen_gate_pgd, {}),
                         ("excitation_pgd", excitation_pgd, {"weight": 1.0})):
        x_adv = fn(se_model, x, y, EPS, steps=8, seed=0, batch_size=80, **kw)
        with torch.no_grad():
            assert attacked.loc[name, "robust_acc"] == pytest.approx(acc(se_model(x_adv), y)), name
    expected_flag = attacked.robust_acc < attacked.loc["pgd", "robust_acc"] - 0.02
    assert (attacked.stronger_than_pgd == expected_flag).all()
    assert not attacked.loc["pgd", "stronger_than_pgd"]


def test_adaptive_attacks_numbers_pinned_before_the_shared_loop(digits_xy):
    """Hit counts computed with serobust before the refactor onto serobust.linf_pgd (one thread, CPU).

    A fixed model (random init, seeded SE and head weights) labelled by its own predictions, so the
    numbers depend on the attacks alone.
    """
    model = build_model("cnn", num_classes=10, in_channels=1, se=True, reduction=4, seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, SqueezeExcite):
                m.fc2.weight.normal_(0, 1, generator=g)
                m.fc2.bias.normal_(0, 1, generator=g)
        model.fc.weight.normal_(0, 1, generator=g)
    model.eval()
    _, (x, _) = digits_xy
    x = x[:96]
    with torch.no_grad():
        y = model(x).argmax(1)
    frame = adaptive_attacks(model, x, y, [0.01, 0.03], steps=5, weight=20.0, seed=0, batch_size=40)
    assert list(frame.attack) == ["pgd", "excitation_pgd", "frozen_gate_pgd"] * 2
    assert (frame.robust_acc * frame.n).round().astype(int).tolist() == [79, 79, 79, 52, 53, 53]


def test_attack_argument_validation(se_model, test_xy):
    x, y = test_xy
    with pytest.raises(ValueError, match="steps"):
        adaptive_attacks(se_model, x, y, EPS, steps=0)
    with pytest.raises(ValueError, match="alpha"):
        pgd(se_model, x, y, EPS, alpha=-1.0)
    with pytest.raises(ValueError, match="255"):
        adaptive_attacks(se_model, x, y, 8)
    with pytest.raises(ValueError, match="differ in length"):
        pgd(se_model, x, y[:5], EPS)
    with pytest.warns(UserWarning, match="repeated"):
        frame = adaptive_attacks(se_model, x[:16], y[:16], [EPS, EPS], steps=1)
    assert len(frame) == 3


# ---------------------------------------------------------------------------------------------- registered
@pytest.mark.parametrize("name", ["excitation_pgd", "frozen_gate_pgd"])
def test_gate_attacks_run_by_name_through_the_harness(name, se_model, test_xy):
    """By name in evaluate: seeded by the harness (start_seed None), generate reproduces evaluate, the robust
    accuracy is recomputed from the examples, another seed gives another random start."""
    x, y = test_xy
    x, y = x[:40], y[:40]
    spec = attack(name, steps=3)
    result = evaluate(se_model, (x, y), spec, [0.0, EPS], batch_size=16, seed=7, progress=False)
    summary = getattr(result, "summary", result)  # a frame, or evaluate's one result type after issue 19
    x_adv = generate(se_model, x, y, spec, EPS, batch_size=16, seed=7)
    assert torch.equal(generate(se_model, x, y, spec, EPS, batch_size=16, seed=7), x_adv)
    assert not torch.equal(generate(se_model, x, y, spec, EPS, batch_size=16, seed=8), x_adv)
    assert (x_adv - x).abs().max().item() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        robust = (se_model(x).argmax(1) == y) & (se_model(x_adv).argmax(1) == y)
    row = summary[(summary.attack == spec.label) & (summary.eps == EPS)].iloc[0]
    assert row.robust_acc == pytest.approx(robust.double().mean().item(), abs=1e-12)
    assert row.robust_acc < row.clean_acc


def test_gate_attacks_refuse_a_baseline_and_bad_options(test_xy):
    x, y = test_xy
    baseline = build_model("cnn", num_classes=10, in_channels=1, se=False, seed=0).eval()
    with pytest.raises(NoSEModuleError, match="SE twin"):
        evaluate(baseline, (x[:8], y[:8]), "frozen_gate_pgd", EPS, progress=False)
    with pytest.raises(ValueError, match="weight"):
        attack("excitation_pgd", weight=float("nan"))
    with pytest.raises(ValueError, match="start_seed"):
        attack("frozen_gate_pgd", start_seed=-1)


def test_adaptive_specs_differ_only_in_their_loss():
    specs = adaptive_specs(steps=7, weight=3.0, seed=2)
    assert list(specs) == ["pgd", "excitation_pgd", "frozen_gate_pgd"]
    assert specs["pgd"].name == specs["excitation_pgd"].name == "excitation_pgd"
    assert specs["pgd"].config["weight"] == 0.0 and specs["excitation_pgd"].config["weight"] == 3.0
    for spec in specs.values():
        assert (spec.config["steps"], spec.config["start_seed"]) == (7, 2)
