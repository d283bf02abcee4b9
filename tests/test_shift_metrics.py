"""Every entry of the shift-metric tables against an independent float64 computation.

A tiny hand-built SE model (one conv, one SqueezeExcite with large random gate weights, so that gates
saturate and cross 0.5) is probed through excitation_shift; the references recompute u with the
conv, z, s and g from the SE weights in numpy (float64), and each metric from its definition.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from serobust.excitation.shift import excitation_shift
from serobust.excitation.shift_metrics import (
    CHANNEL_COLUMNS,
    POOLED_METRICS,
    SAT_HIGH,
    SAT_LOW,
    SHIFT_METRICS,
    BlockPair,
)
from serobust.models.se import SqueezeExcite

pytestmark = pytest.mark.usefixtures("one_thread")

C, K, N = 12, 3, 40  # channels, top-k (max(1, C // 4)), samples


class TinySE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, C, 3, padding=1)
        self.se = SqueezeExcite(C, reduction=2, min_hidden=4)
        self.head = nn.Linear(C, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.se(self.conv(x)).mean((2, 3)))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = TinySE().eval()
    with torch.no_grad():
        model.se.fc2.weight.normal_(0, 3.0)
        model.se.fc2.bias.normal_(0, 2.0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(N, 2, 6, 6, generator=g)
    x_adv = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    frames = {
        "sample": excitation_shift(model, x, x_adv, per_sample=True, batch_size=16),
        "block": excitation_shift(model, x, x_adv, batch_size=16),
        "channel": excitation_shift(model, x, x_adv, per_channel=True, batch_size=16),
    }
    return model, x, x_adv, frames


def _side(model: TinySE, x: torch.Tensor) -> dict[str, np.ndarray]:
    """u, z, s, g of the SE block in float64, from the weights (not from serobust's hooks)."""
    w = {k: v.detach().double().numpy() for k, v in model.se.state_dict().items()}
    with torch.no_grad():
        u = model.conv(x).double().numpy()  # (N, C, H, W)
    z = u.mean((2, 3))
    s = 1 / (1 + np.exp(-(np.maximum(z @ w["fc1.weight"].T + w["fc1.bias"], 0) @ w["fc2.weight"].T
                          + w["fc2.bias"])))
    return {"u": u, "z": z, "s": s, "g": u * s[:, :, None, None]}


@pytest.fixture(scope="module")
def ref(setup):
    model, x, x_adv, _ = setup
    return _side(model, x), _side(model, x_adv)


def _norm(q: np.ndarray) -> np.ndarray:
    return np.sqrt((q.reshape(q.shape[0], -1) ** 2).sum(1))


def _rel(name: str):
    return lambda c, a: _norm(a[name] - c[name]) / _norm(c[name])


def _top(s: np.ndarray) -> list[set[int]]:
    return [set(np.argsort(-row)[:K].tolist()) for row in s]


def _mag(name: str, side: int):
    return lambda c, a: np.abs((c, a)[side][name]).mean((2, 3))  # (N, C)


def _cv(m: np.ndarray) -> np.ndarray:
    return m.std(1) / m.mean(1)


def _passed(c, a) -> np.ndarray:
    """What a frozen gate passes: s * (u' - u), (N, C, H, W)."""
    return c["s"][:, :, None, None] * (a["u"] - c["u"])


def _added(c, a) -> np.ndarray:
    """What the excitation's own change adds: (s' - s) * u', (N, C, H, W)."""
    return (a["s"] - c["s"])[:, :, None, None] * a["u"]


# per-sample references, name -> f(clean, adv) -> (N,)
SAMPLE_REF = {
    "s_rel_change": _rel("s"),
    "s_cosine": lambda c, a: (c["s"] * a["s"]).sum(1) / (_norm(c["s"]) * _norm(a["s"])),
    "s_spearman": lambda c, a: np.array([stats.spearmanr(p, q).statistic for p, q in zip(c["s"], a["s"])]),
    "s_topk_jaccard": lambda c, a: np.array([len(p & q) / len(p | q) for p, q in zip(_top(c["s"]), _top(a["s"]))]),
    "s_max_abs_change": lambda c, a: np.abs(a["s"] - c["s"]).max(1),
    "z_rel_change": _rel("z"),
    "u_rel_change": _rel("u"),
    "g_rel_change": _rel("g"),
    "damping_ratio": lambda c, a: _rel("g")(c, a) / _rel("u")(c, a),
    "z_over_u": lambda c, a: _rel("z")(c, a) / _rel("u")(c, a),
    "absorb_ratio": lambda c, a: _norm(a["g"] - c["g"]) / _norm(_passed(c, a)),
    "gate_passed_rel": lambda c, a: _norm(_passed(c, a)) / _norm(c["g"]),
    "gate_added_rel": lambda c, a: _norm(_added(c, a)) / _norm(c["g"]),
    "gate_added_cos": lambda c, a: ((_passed(c, a) * _added(c, a)).reshape(len(c["s"]), -1).sum(1)
                                    / (_norm(_passed(c, a)) * _norm(_added(c, a)))),
    "sat_low_clean": lambda c, a: (c["s"] < SAT_LOW).mean(1),
    "sat_low_adv": lambda c, a: (a["s"] < SAT_LOW).mean(1),
    "sat_high_clean": lambda c, a: (c["s"] > SAT_HIGH).mean(1),
    "sat_high_adv": lambda c, a: (a["s"] > SAT_HIGH).mean(1),
    "crossings": lambda c, a: ((c["s"] > 0.5) != (a["s"] > 0.5)).mean(1),
    **{f"{m}_mag_{side}": (lambda c, a, m=m, i=i: _mag(m, i)(c, a).mean(1))
       for m in ("u", "g") for i, side in enumerate(("clean", "adv"))},
    **{f"{m}_mag_cv_{side}": (lambda c, a, m=m, i=i: _cv(_mag(m, i)(c, a)))
       for m in ("u", "g") for i, side in enumerate(("clean", "adv"))},
}


def _pooled_cv(m: str, i: int):
    def ref(c, a):
        mean = _mag(m, i)(c, a).mean(0)  # (C,): sample-averaged channel magnitudes
        return mean.std() / mean.mean()

    return ref


# block-row references of the pooled columns, name -> f(clean, adv) -> float
POOLED_REF = {
    "damping_ratio_of_means": lambda c, a: _rel("g")(c, a).mean() / _rel("u")(c, a).mean(),
    "z_over_u_of_means": lambda c, a: _rel("z")(c, a).mean() / _rel("u")(c, a).mean(),
    "absorb_ratio_of_means": lambda c, a: (_rel("g")(c, a).mean()
                                           / (_norm(_passed(c, a)) / _norm(c["g"])).mean()),
    **{f"{m}_mag_cv_{side}": _pooled_cv(m, i) for m in ("u", "g") for i, side in enumerate(("clean", "adv"))},
}


def _channel_norms(c, a, name):
    return np.sqrt(((a[name] - c[name]) ** 2).sum((2, 3))).sum(0), np.sqrt((c[name] ** 2).sum((2, 3))).sum(0)


def _ch_rel(name: str):
    if name == "z":
        return lambda c, a: np.abs(a["z"] - c["z"]).sum(0) / np.abs(c["z"]).sum(0)
    return lambda c, a: np.divide(*_channel_norms(c, a, name))


def _in_top(s: np.ndarray) -> np.ndarray:
    mask = np.zeros_like(s)
    np.put_along_axis(mask, np.argsort(-s, axis=1)[:, :K], 1.0, axis=1)
    return mask


# per-channel references, name -> f(clean, adv) -> (C,)
CHANNEL_REF = {
    "s_clean": lambda c, a: c["s"].mean(0),
    "s_adv": lambda c, a: a["s"].mean(0),
    "s_change": lambda c, a: (a["s"] - c["s"]).mean(0),
    "s_abs_change": lambda c, a: np.abs(a["s"] - c["s"]).mean(0),
    "s_rel_change": lambda c, a: (np.abs(a["s"] - c["s"]) / c["s"]).mean(0),
    "z_clean": lambda c, a: c["z"].mean(0),
    "z_adv": lambda c, a: a["z"].mean(0),
    "z_abs_change": lambda c, a: np.abs(a["z"] - c["z"]).mean(0),
    "z_rel_change": _ch_rel("z"),
    "u_rel_change": _ch_rel("u"),
    "g_rel_change": _ch_rel("g"),
    "damping_ratio": lambda c, a: _ch_rel("g")(c, a) / _ch_rel("u")(c, a),
    "z_over_u": lambda c, a: _ch_rel("z")(c, a) / _ch_rel("u")(c, a),
    "absorb_ratio": lambda c, a: (np.sqrt(((a["g"] - c["g"]) ** 2).sum((2, 3))).sum(0)
                                  / np.sqrt((_passed(c, a) ** 2).sum((2, 3))).sum(0)),
    "sat_low_clean": lambda c, a: (c["s"] < SAT_LOW).mean(0),
    "sat_low_adv": lambda c, a: (a["s"] < SAT_LOW).mean(0),
    "sat_high_clean": lambda c, a: (c["s"] > SAT_HIGH).mean(0),
    "sat_high_adv": lambda c, a: (a["s"] > SAT_HIGH).mean(0),
    "crossings": lambda c, a: ((c["s"] > 0.5) != (a["s"] > 0.5)).mean(0),
    "topk_clean": lambda c, a: _in_top(c["s"]).mean(0),
    "topk_adv": lambda c, a: _in_top(a["s"]).mean(0),
    **{f"{m}_mag_{side}": (lambda c, a, m=m, i=i: _mag(m, i)(c, a).mean(0))
       for m in ("u", "g") for i, side in enumerate(("clean", "adv"))},
}


def test_every_entry_has_a_reference():
    """A metric added to the built-in tables without a reference here fails this test."""
    assert set(SHIFT_METRICS) == set(SAMPLE_REF)
    assert set(POOLED_METRICS) == set(POOLED_REF)
    assert set(CHANNEL_COLUMNS) == set(CHANNEL_REF)


def test_the_gates_exercise_every_metric(ref):
    clean, adv = ref
    assert (clean["s"] < SAT_LOW).any() and (clean["s"] > SAT_HIGH).any()
    assert ((clean["s"] > 0.5) != (adv["s"] > 0.5)).any()
    assert (clean["u"] < 0).any()  # magnitudes take |u|, not u


@pytest.mark.parametrize("name", list(SHIFT_METRICS))
def test_shift_metric_matches_reference(name, setup, ref):
    *_, frames = setup
    clean, adv = ref
    expected = SAMPLE_REF[name](clean, adv)
    got = frames["sample"].sort_values("sample")[name].to_numpy()
    # a cosine near 0 is a float32 sum with cancellation: absolute error ~1e-4 of its [-1, 1] range
    atol = 2e-4 if name == "gate_added_cos" else 2e-6
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=atol, err_msg=name)
    block = frames["block"].iloc[0][name]
    pooled = POOLED_REF.get(name)
    np.testing.assert_allclose(block, pooled(clean, adv) if pooled else np.nanmean(expected), rtol=2e-4,
                               err_msg=name)


@pytest.mark.parametrize("name", [n for n in POOLED_METRICS if n not in SHIFT_METRICS])
def test_block_summary_matches_reference(name, setup, ref):
    *_, frames = setup
    np.testing.assert_allclose(frames["block"].iloc[0][name], POOLED_REF[name](*ref), rtol=2e-4)


@pytest.mark.parametrize("name", list(CHANNEL_COLUMNS))
def test_channel_column_matches_reference(name, setup, ref):
    *_, frames = setup
    got = frames["channel"].sort_values("channel")[name].to_numpy()
    np.testing.assert_allclose(got, CHANNEL_REF[name](*ref), rtol=2e-4, atol=2e-6, err_msg=name)


def test_frames_keep_their_column_order(setup):
    """The column order of each view, as the pipeline and the report read it."""
    *_, frames = setup
    metrics = list(SHIFT_METRICS)
    pooled_only = [n for n in POOLED_METRICS if n not in SHIFT_METRICS]
    assert list(frames["sample"].columns) == ["block", "depth", "channels", "sample", "pred_clean", "pred_adv",
                                              *metrics]
    averaged = [n for n in metrics if n not in POOLED_METRICS]
    assert list(frames["block"].columns) == ["block", "depth", "channels", "n_samples", *averaged, *pooled_only,
                                             *[n for n in POOLED_METRICS if n in SHIFT_METRICS], "topk"]
    assert list(frames["channel"].columns) == ["block", "depth", "channels", "n_samples", "channel",
                                               *CHANNEL_COLUMNS]


# ------------------------------------------------------------------- the gate's own part: dg = s du + ds u'
def _pair(u: torch.Tensor, u_adv: torch.Tensor, s: torch.Tensor, s_adv: torch.Tensor) -> BlockPair:
    """A BlockPair built by hand: g = s * u on both sides."""
    return BlockPair(z_clean=u.mean((2, 3)), z_adv=u_adv.mean((2, 3)), s_clean=s, s_adv=s_adv, u_clean=u,
                     u_adv=u_adv, g_clean=s[:, :, None, None] * u, g_adv=s_adv[:, :, None, None] * u_adv, topk=1)


def test_absorb_ratio_of_a_frozen_gate_is_one_where_the_damping_ratio_is_not():
    """A gate that ignores z (fc2 weights 0) passes s * du exactly: absorb ratio 1. Its s is uneven across
    channels (different biases), so the damping ratio is not 1: damping alone does not show absorption."""
    torch.manual_seed(1)
    model = TinySE().eval()
    with torch.no_grad():
        model.se.fc2.weight.zero_()
        model.se.fc2.bias.copy_(torch.linspace(-4, 4, C))
    g = torch.Generator().manual_seed(1)
    x = torch.rand(N, 2, 6, 6, generator=g)
    x_adv = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    frame = excitation_shift(model, x, x_adv, per_sample=True, batch_size=16)
    np.testing.assert_allclose(frame["absorb_ratio"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(frame["gate_added_rel"], 0.0, atol=1e-7)
    np.testing.assert_allclose(frame["gate_passed_rel"], frame["g_rel_change"], rtol=1e-5)
    assert (frame["damping_ratio"] - 1).abs().min() > 0.01
    block = excitation_shift(model, x, x_adv, batch_size=16).iloc[0]
    assert block["absorb_ratio"] == pytest.approx(1.0, rel=1e-5)
    assert block["absorb_ratio_of_means"] == pytest.approx(1.0, rel=1e-5)


def test_absorb_ratio_of_an_opposing_gate_is_below_one():
    """Hand-built: u' = 1.1 u and s' = 0.95 s, so dg = (1.1 * 0.95 - 1) s u = 0.045 s u while a frozen gate
    would pass s du = 0.1 s u: absorb ratio 0.45; the parts point in opposite directions (cosine -1)."""
    g = torch.Generator().manual_seed(2)
    u = torch.rand(5, 4, 3, 3, generator=g) + 0.1
    s = torch.rand(5, 4, generator=g) * 0.8 + 0.1
    pair = _pair(u, 1.1 * u, s, 0.95 * s)
    torch.testing.assert_close(SHIFT_METRICS["absorb_ratio"](pair), torch.full((5,), 0.45), rtol=1e-4, atol=0)
    torch.testing.assert_close(SHIFT_METRICS["gate_passed_rel"](pair), torch.full((5,), 0.1), rtol=1e-4, atol=0)
    torch.testing.assert_close(SHIFT_METRICS["gate_added_rel"](pair), torch.full((5,), 0.055), rtol=1e-4, atol=0)
    torch.testing.assert_close(SHIFT_METRICS["gate_added_cos"](pair), torch.full((5,), -1.0), rtol=1e-4, atol=0)
    amplifying = _pair(u, 1.1 * u, s, 1.05 * s)  # the excitation grows with the features: ratio 1.55
    torch.testing.assert_close(SHIFT_METRICS["absorb_ratio"](amplifying), torch.full((5,), 1.55), rtol=1e-4, atol=0)


def test_the_two_parts_sum_to_the_gated_change():
    """s * du + ds * u' is dg, element by element; the metrics' norms and cosine are those of the two maps."""
    g = torch.Generator().manual_seed(3)
    u, u_adv = torch.randn(6, 5, 4, 4, generator=g).double(), torch.randn(6, 5, 4, 4, generator=g).double()
    s, s_adv = torch.rand(6, 5, generator=g).double(), torch.rand(6, 5, generator=g).double()
    pair = _pair(u, u_adv, s, s_adv)
    un, uan, sn, san = u.numpy(), u_adv.numpy(), s.numpy(), s_adv.numpy()
    passed = sn[:, :, None, None] * (uan - un)
    added = (san - sn)[:, :, None, None] * uan
    dg = san[:, :, None, None] * uan - sn[:, :, None, None] * un
    np.testing.assert_allclose(passed + added, dg, atol=1e-12)
    parts = pair.gate_parts
    np.testing.assert_allclose(parts["passed"].numpy(), _norm(passed), rtol=1e-10)
    np.testing.assert_allclose(parts["added"].numpy(), _norm(added), rtol=1e-10)
    cos = (passed * added).reshape(6, -1).sum(1) / (_norm(passed) * _norm(added))
    np.testing.assert_allclose(parts["cos"].numpy(), cos, rtol=1e-10)
    np.testing.assert_allclose(SHIFT_METRICS["absorb_ratio"](pair).numpy(), _norm(dg) / _norm(passed), rtol=1e-10)
