"""excitation_shift and shift_analysis against independent numpy/scipy computations on a trained SE twin."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from se_reference import reference_pgd
from torch import nn

from serobust import build_model, register_shift_metric
from serobust.excitation.shift import excitation_shift, shift_analysis
from serobust.excitation.shift_metrics import POOLED_METRICS, SHIFT_METRICS, average_ranks
from serobust.models.se import SqueezeExcite
from serobust.names import KINDS

pytestmark = pytest.mark.usefixtures("one_thread")


BLOCKS = ["features.0.se", "features.1.se", "features.3.se", "features.4.se", "features.6.se"]


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 10) -> torch.Tensor:
    """A small hand-written Linf PGD with a seeded random start (independent of serobust.attacks)."""
    gen = torch.Generator().manual_seed(1)
    start = (x + eps * (2 * torch.rand(x.shape, generator=gen) - 1)).clamp(0, 1)
    return reference_pgd(model, x, y, eps, eps / 4, steps, start=start)


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
    np.testing.assert_allclose(average_ranks(x).numpy(), expected)


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
    # kind is a serobust.names kind: the attack's rows are "adversarial", a control's rows its own name
    assert set(frame.loc[frame["perturbation"] == "pgd", "kind"]) == {"adversarial"}
    controls = frame[frame["perturbation"] != "pgd"]
    assert (controls["kind"] == controls["perturbation"]).all() and set(frame["kind"]) == set(KINDS)


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


# ------------------------------------------------------------------------------- registering a metric
@pytest.fixture
def registered_metrics():
    """Register metrics for one test; the table is restored afterwards, also when the test fails."""
    before_metrics, before_pooled = dict(SHIFT_METRICS), dict(POOLED_METRICS)
    yield register_shift_metric
    SHIFT_METRICS.clear()
    SHIFT_METRICS.update(before_metrics)
    POOLED_METRICS.clear()
    POOLED_METRICS.update(before_pooled)


def test_registered_metric_is_a_column_everywhere(trained_digits_pair, digits_attack, registered_metrics):
    _, se = trained_digits_pair
    x, x_adv, y = digits_attack
    x, x_adv, y = x[:40], x_adv[:40], y[:40]
    registered_metrics("s_l1_change", lambda p: (p.s_adv - p.s_clean).abs().sum(1))
    registered_metrics("u_max_change", lambda p: (p.u_adv - p.u_clean).flatten(1).abs().amax(1),
                       pooled=lambda group: float(np.max(group.samples["u_max_change"])))
    per_sample = excitation_shift(se, x, x_adv, per_sample=True, batch_size=16, y=y)
    blocks = excitation_shift(se, x, x_adv, batch_size=16)
    split = excitation_shift(se, x, x_adv, batch_size=16, y=y, split_success=True)
    shift = shift_analysis(se, x, y, 0.1, attack=lambda *_: x_adv, batch_size=16)
    assert list(per_sample.columns)[-2:] == ["s_l1_change", "u_max_change"]
    for frame in (blocks, split, shift):
        assert {"s_l1_change", "u_max_change"} <= set(frame.columns)
    # values against an independent computation: s from the SE weights, u from a plain hook
    clean, adv = _reference(se, x), _reference(se, x_adv)
    for name in BLOCKS:
        rows = per_sample[per_sample["block"] == name].sort_values("sample")
        l1 = np.abs(adv[name]["s"] - clean[name]["s"]).sum(1)
        umax = np.abs(adv[name]["u"] - clean[name]["u"]).reshape(len(x), -1).max(1)
        np.testing.assert_allclose(rows["s_l1_change"], l1, rtol=2e-4, atol=1e-6)
        np.testing.assert_allclose(rows["u_max_change"], umax, rtol=2e-4, atol=1e-6)
        row = blocks[blocks["block"] == name].iloc[0]
        np.testing.assert_allclose(row["s_l1_change"], l1.mean(), rtol=2e-4)  # block rows: the mean ...
        np.testing.assert_allclose(row["u_max_change"], umax.max(), rtol=2e-4)  # ... or the pooled value
    adv_rows = shift[shift["kind"] == "adversarial"].set_index("block")
    np.testing.assert_allclose(adv_rows["s_l1_change"], blocks.set_index("block")["s_l1_change"], rtol=1e-6)


def test_register_shift_metric_rejects_misuse(trained_digits_pair, digits_attack, registered_metrics):
    _, se = trained_digits_pair
    x, x_adv, _ = digits_attack
    with pytest.raises(ValueError, match="already registered"):
        registered_metrics("s_cosine", lambda p: p.s_clean.sum(1))
    with pytest.raises(ValueError, match="bookkeeping"):
        registered_metrics("block", lambda p: p.s_clean.sum(1))
    with pytest.raises(ValueError, match="summary"):
        registered_metrics("damping_ratio_of_means", lambda p: p.s_clean.sum(1))
    with pytest.raises(TypeError, match="callable"):
        registered_metrics("not_a_function", 3)
    registered_metrics("per_channel_by_mistake", lambda p: p.s_clean)  # (B, C), not (B,)
    with pytest.raises(ValueError, match="per_channel_by_mistake.*one value per sample"):
        excitation_shift(se, x[:8], x_adv[:8])
