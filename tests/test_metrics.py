"""Excitation-shift metrics against independent numpy/scipy computations, and the random controls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from serobust import build_model
from serobust.metrics import (
    _average_ranks,
    excitation_shift,
    feature_sensitivity,
    matched_gaussian_noise,
    matched_layers,
    shift_analysis,
    sign_noise,
)
from serobust.models.se import SqueezeExcite

pytestmark = pytest.mark.usefixtures("one_thread")


BLOCKS = ["features.0.se", "features.1.se", "features.3.se", "features.4.se", "features.6.se"]


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 10) -> torch.Tensor:
    """A small hand-written Linf PGD with a seeded random start (independent of serobust.attacks)."""
    gen = torch.Generator().manual_seed(1)
    x_adv = (x + eps * (2 * torch.rand(x.shape, generator=gen) - 1)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
        x_adv = x_adv.detach() + (eps / 4) * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def _reference(model: nn.Module, x: torch.Tensor) -> dict[str, dict[str, np.ndarray]]:
    """u from a plain hook, then z, s and g recomputed from the SE weights, per block (float64)."""
    seen, handles = {}, []
    for name, m in model.named_modules():
        if isinstance(m, SqueezeExcite):
            handles.append(m.register_forward_hook(
                lambda mod, args, out, name=name: seen.__setitem__(name, args[0].detach().clone())))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    modules = dict(model.named_modules())
    out = {}
    for name, u in seen.items():
        m = modules[name]
        with torch.no_grad():
            z = u.mean((2, 3))
            s = torch.sigmoid(m.fc2(torch.relu(m.fc1(z))))
        u64, s64 = u.double().numpy(), s.double().numpy()
        out[name] = {"u": u64, "z": z.double().numpy(), "s": s64, "g": u64 * s64[:, :, None, None]}
    return out


@pytest.fixture(scope="module")
def digits_attack(trained_digits_pair, digits_xy):
    """A slice of test digits, their PGD adversarials at eps 0.1 on the SE twin, labels."""
    _, se = trained_digits_pair
    _, (x, y) = digits_xy
    x, y = x[:96], y[:96]
    return x, pgd(se, x, y, 0.1), y


def test_metrics_equal_independent_computation(trained_digits_pair, digits_attack):
    _, se = trained_digits_pair
    x, x_adv, y = digits_attack
    frame = excitation_shift(se, x, x_adv, per_sample=True, batch_size=40, y=y)
    blocks = excitation_shift(se, x, x_adv, batch_size=40)
    clean, adv = _reference(se, x), _reference(se, x_adv)
    assert list(blocks["block"]) == BLOCKS and list(blocks["depth"]) == [0, 1, 2, 3, 4]
    assert list(blocks["channels"]) == [16, 16, 32, 32, 64]
    n = len(x)
    for name in BLOCKS:
        rows = frame[frame["block"] == name].sort_values("sample")
        assert list(rows["sample"]) == list(range(n))
        c, a = clean[name], adv[name]
        norm = lambda q: np.sqrt((q.reshape(n, -1) ** 2).sum(1))  # noqa: E731
        s_rel = norm(a["s"] - c["s"]) / norm(c["s"])
        z_rel = norm(a["z"] - c["z"]) / norm(c["z"])
        u_rel = norm(a["u"] - c["u"]) / norm(c["u"])
        g_rel = norm(a["g"] - c["g"]) / norm(c["g"])
        cos = (c["s"] * a["s"]).sum(1) / (norm(c["s"]) * norm(a["s"]))
        rho = [stats.spearmanr(c["s"][i], a["s"][i]).statistic for i in range(n)]
        k = max(1, c["s"].shape[1] // 4)
        jac = []
        for i in range(n):
            top_c = set(np.argsort(-c["s"][i])[:k].tolist())
            top_a = set(np.argsort(-a["s"][i])[:k].tolist())
            jac.append(len(top_c & top_a) / len(top_c | top_a))
        mag = np.abs(c["u"]).mean((2, 3))  # (N, C)
        expected = {
            "s_rel_change": s_rel, "z_rel_change": z_rel, "u_rel_change": u_rel, "g_rel_change": g_rel,
            "s_cosine": cos, "s_spearman": rho, "s_topk_jaccard": jac,
            "s_max_abs_change": np.abs(a["s"] - c["s"]).max(1),
            "damping_ratio": g_rel / u_rel, "z_over_u": z_rel / u_rel,
            "sat_low_clean": (c["s"] < 0.05).mean(1), "sat_high_adv": (a["s"] > 0.95).mean(1),
            "crossings": ((c["s"] > 0.5) != (a["s"] > 0.5)).mean(1),
            "u_mag_clean": mag.mean(1), "u_mag_cv_clean": mag.std(1) / mag.mean(1),
        }
        assert s_rel.mean() > 1e-4 and u_rel.mean() > 1e-2  # the attack moved something
        for key, value in expected.items():
            np.testing.assert_allclose(rows[key].to_numpy(), value, rtol=2e-4, atol=2e-6, err_msg=key)
        row = blocks[blocks["block"] == name].iloc[0]
        np.testing.assert_allclose(row["damping_ratio"], np.mean(g_rel / u_rel), rtol=2e-4)
        np.testing.assert_allclose(row["damping_ratio_of_means"], g_rel.mean() / u_rel.mean(), rtol=2e-4)
        np.testing.assert_allclose(row["z_over_u"], np.mean(z_rel / u_rel), rtol=2e-4)
        np.testing.assert_allclose(row["s_spearman"], np.mean(rho), rtol=2e-4)
        np.testing.assert_allclose(row["s_topk_jaccard"], np.mean(jac), rtol=1e-6)
        mean_mag = mag.mean(0)  # dataset-level CV across channels (Bai et al.)
        np.testing.assert_allclose(row["u_mag_cv_clean"], mean_mag.std() / mean_mag.mean(), rtol=2e-4)
    # per-sample predictions and the success split
    with torch.no_grad():
        pc, pa = se(x).argmax(1).numpy(), se(x_adv).argmax(1).numpy()
    first = frame[frame["block"] == BLOCKS[0]].sort_values("sample")
    np.testing.assert_array_equal(first["success"].to_numpy(), (pc == y.numpy()) & (pa != y.numpy()))


def test_identical_inputs_give_zero_change(trained_digits_pair, digits_xy):
    _, se = trained_digits_pair
    _, (x, _) = digits_xy
    x = x[:50]
    frame = excitation_shift(se, x, x.clone(), per_sample=True)
    for key in ("s_rel_change", "z_rel_change", "u_rel_change", "g_rel_change", "s_max_abs_change", "crossings"):
        np.testing.assert_allclose(frame[key], 0.0, atol=1e-6, err_msg=key)
    for key in ("s_cosine", "s_spearman", "s_topk_jaccard"):
        np.testing.assert_allclose(frame[key], 1.0, atol=1e-5, err_msg=key)
    assert frame["damping_ratio"].isna().all()  # 0 / 0: no change to damp


def test_constant_gate_has_damping_ratio_one(digits_xy):
    model = build_model("cnn", num_classes=10, in_channels=1, se=True, reduction=4, seed=3).eval()
    for m in model.modules():
        if isinstance(m, SqueezeExcite):
            nn.init.zeros_(m.fc2.weight)
            nn.init.constant_(m.fc2.bias, 0.7)  # s = sigmoid(0.7) for every channel: g = c * u
    _, (x, _) = digits_xy
    x = x[:40]
    noise = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    frame = excitation_shift(model, x, noise)
    assert (frame["u_rel_change"] > 1e-3).all()
    np.testing.assert_allclose(frame["damping_ratio"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(frame["damping_ratio_of_means"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(frame["s_rel_change"], 0.0, atol=1e-7)
    assert frame["s_spearman"].isna().all()  # ranks of a constant vector are undefined


def test_average_ranks_match_scipy_with_ties():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 5, (20, 11), generator=gen).float()  # many ties
    expected = np.stack([stats.rankdata(row) for row in x.numpy()])
    np.testing.assert_allclose(_average_ranks(x).numpy(), expected)


def test_per_channel_rows_and_means(trained_digits_pair, digits_attack):
    _, se = trained_digits_pair
    x, x_adv, _ = digits_attack
    frame = excitation_shift(se, x, x_adv, per_channel=True, batch_size=64)
    assert len(frame) == 16 + 16 + 32 + 32 + 64
    clean, adv = _reference(se, x), _reference(se, x_adv)
    for name in BLOCKS:
        rows = frame[frame["block"] == name]
        assert list(rows["channel"]) == list(range(clean[name]["s"].shape[1]))
        c, a = clean[name], adv[name]
        np.testing.assert_allclose(rows["s_clean"], c["s"].mean(0), rtol=1e-5)
        np.testing.assert_allclose(rows["s_abs_change"], np.abs(a["s"] - c["s"]).mean(0), rtol=1e-4, atol=1e-7)
        du = np.sqrt(((a["u"] - c["u"]) ** 2).sum((2, 3))).sum(0)
        uu = np.sqrt((c["u"] ** 2).sum((2, 3))).sum(0)
        np.testing.assert_allclose(rows["u_rel_change"], du / uu, rtol=1e-4)
        k = max(1, c["s"].shape[1] // 4)
        in_top = np.zeros_like(c["s"])
        np.put_along_axis(in_top, np.argsort(-c["s"], axis=1)[:, :k], 1.0, axis=1)
        np.testing.assert_allclose(rows["topk_clean"], in_top.mean(0), atol=1e-6)


def test_split_success_groups(trained_digits_pair, digits_attack):
    _, se = trained_digits_pair
    x, x_adv, y = digits_attack
    with torch.no_grad():
        pc, pa = se(x).argmax(1), se(x_adv).argmax(1)
    n_success = int(((pc == y) & (pa != y)).sum())
    n_failed = int(((pc == y) & (pa == y)).sum())
    assert n_success > 0 and n_failed > 0
    frame = excitation_shift(se, x, x_adv, y=y, split_success=True)
    assert len(frame) == 2 * len(BLOCKS)
    assert set(frame.loc[frame["success"], "n_samples"]) == {n_success}
    assert set(frame.loc[~frame["success"], "n_samples"]) == {n_failed}
    per_sample = excitation_shift(se, x, x_adv, y=y, per_sample=True)
    ok = per_sample[per_sample["correct_clean"]]
    expected = ok.groupby(["block", "success"])["s_rel_change"].mean()
    got = frame.set_index(["block", "success"])["s_rel_change"]
    np.testing.assert_allclose(got.loc[expected.index], expected, rtol=1e-6)


def test_shift_analysis_against_controls(trained_digits_pair, digits_xy):
    _, se = trained_digits_pair
    _, (x, y) = digits_xy
    x, y = x[:128], y[:128]
    eps = (0.05, 0.1, 0.2)
    frame = shift_analysis(se, x, y, eps, attack="pgd", seed=0, batch_size=64)  # serobust.attacks.generate
    assert len(frame) == 3 * len(eps) * len(BLOCKS)
    for e in eps:
        at = frame[frame["eps"] == e]
        assert set(at["perturbation"]) == {"pgd", "sign_noise", "gaussian"}
        first = at.groupby("perturbation").first()
        # the Gaussian control's applied L2 norm matches the adversarial one, sign noise stays in Linf eps
        np.testing.assert_allclose(first.loc["gaussian", "pert_l2"], first.loc["pgd", "pert_l2"], rtol=1e-3)
        assert first.loc["sign_noise", "pert_linf"] <= e + 1e-6
        assert first.loc["pgd", "accuracy"] < first.loc["sign_noise", "accuracy"]
        assert first.loc["pgd", "accuracy"] < first.loc["gaussian", "accuracy"]
        assert len(set(first["clean_accuracy"])) == 1
    assert set(frame.loc[frame["perturbation"] == "pgd", "kind"]) == {"adversarial"}


def test_shift_analysis_custom_attack_and_success_split(trained_digits_pair, digits_xy):
    _, se = trained_digits_pair
    _, (x, y) = digits_xy
    x, y = x[:64], y[:64]
    frame = shift_analysis(se, x, y, "0.1", attack=pgd, controls="sign_noise", split_success=True)
    assert set(frame["perturbation"]) == {"pgd", "sign_noise"} and set(frame["eps"]) == {0.1}
    assert len(frame) == 2 * 2 * len(BLOCKS)  # (pgd, sign_noise) x (success, failed) x blocks
    x_adv = pgd(se, x, y, 0.1)
    with torch.no_grad():
        pc, pa = se(x).argmax(1), se(x_adv).argmax(1)
    adv_rows = frame[(frame["perturbation"] == "pgd") & frame["success"]]
    assert set(adv_rows["n_samples"]) == {int(((pc == y) & (pa != y)).sum())}
    np.testing.assert_allclose(adv_rows["accuracy"], float((pa == y).float().mean()))


def test_matched_gaussian_noise_norms_per_sample(digits_xy):
    _, (x, y) = digits_xy
    x = x[:64]
    gen = torch.Generator().manual_seed(0)
    x_adv = (x + 0.1 * torch.randn(x.shape, generator=gen).sign()).clamp(0, 1)
    x_adv[0] = x[0]  # a zero perturbation stays zero
    noisy = matched_gaussian_noise(x, x_adv, generator=torch.Generator().manual_seed(1), batch_size=24)
    assert noisy.min() >= 0 and noisy.max() <= 1
    target = (x_adv - x).flatten(1).norm(dim=1)
    np.testing.assert_allclose((noisy - x).flatten(1).norm(dim=1), target, rtol=1e-4, atol=1e-6)
    assert not torch.equal(torch.sign(noisy - x)[1:], torch.sign(x_adv - x)[1:])  # a different direction
    signs = sign_noise(x, 0.1, generator=torch.Generator().manual_seed(0))
    assert (signs - x).abs().max() <= 0.1 + 1e-6 and signs.min() >= 0 and signs.max() <= 1


def test_feature_sensitivity_matched_layers(trained_digits_pair, digits_attack):
    base, se = trained_digits_pair
    x, x_adv, _ = digits_attack
    layers = matched_layers(base, se)
    assert layers == ["features.0", "features.1", "features.3", "features.4", "features.6"]
    with pytest.raises(ValueError, match="matched_layers"):
        feature_sensitivity(base, x, x_adv)
    frame = feature_sensitivity(base, x, x_adv, layers=layers, batch_size=50)
    assert list(frame["layer"]) == layers
    outs = {}
    handles = [dict(base.named_modules())[n].register_forward_hook(
        lambda m, a, o, n=n: outs.setdefault(n, []).append(o.detach().flatten(1))) for n in layers]
    with torch.no_grad():
        base(x)
        base(x_adv)
    for h in handles:
        h.remove()
    for name in layers:
        clean, adv = outs[name]
        rel = ((adv - clean).norm(dim=1) / clean.norm(dim=1)).numpy()
        row = frame[frame["layer"] == name].iloc[0]
        np.testing.assert_allclose(row["rel_change"], rel.mean(), rtol=1e-4)
        np.testing.assert_allclose(row["rel_change_median"], np.median(rel), rtol=1e-4)
    assert list(feature_sensitivity(se, x, x_adv)["layer"]) == layers  # default: the SE parents


def test_model_mode_restored_and_bad_input(trained_digits_pair, digits_attack):
    _, se = trained_digits_pair
    x, x_adv, y = digits_attack
    se.train()
    try:
        excitation_shift(se, x[:8], x_adv[:8])
        assert se.training and all(m.training for m in se.modules())
    finally:
        se.eval()
    with pytest.raises(ValueError, match="same shape"):
        excitation_shift(se, x[:8], x_adv[:7])
    with pytest.raises(ValueError, match="choose one"):
        excitation_shift(se, x, x_adv, per_sample=True, per_channel=True)
    with pytest.raises(ValueError, match="labels y"):
        excitation_shift(se, x, x_adv, split_success=True)
    with pytest.raises(ValueError, match="controls"):
        shift_analysis(se, x, y, 0.1, attack=pgd, controls=("uniform",))
