"""Class profiles and profile shift against pandas groupbys of hand-computed excitations."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from se_reference import block_names, digits_fixtures, manual_forward

from serobust.errors import InputError
from serobust.excitation.profiles import class_profiles, profile_shift

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = 0.1
N = 160


se_model, test_xy, x_adv_pgd = digits_fixtures(N, EPS)


def test_class_profiles_equal_groupby_of_manual_s(se_model, digits_xy):
    _, (x, y) = digits_xy
    frame = class_profiles(se_model, x, y, batch_size=100)
    assert list(frame.columns) == ["block", "class", "channel", "s_mean", "n"]
    with torch.no_grad():
        _, s_list, _ = manual_forward(se_model, x)
    rows = []
    for name, s in zip(block_names(se_model), s_list):
        c = s.shape[1]
        rows.append(pd.DataFrame({"block": name, "class": y.repeat_interleave(c).numpy(),
                                  "channel": torch.arange(c).repeat(len(y)).numpy(), "s": s.reshape(-1).numpy()}))
    ref = pd.concat(rows).groupby(["block", "class", "channel"], sort=False)["s"].agg(["mean", "size"])
    got = frame.set_index(["block", "class", "channel"]).loc[ref.index]
    assert len(frame) == len(ref)
    assert got.s_mean.to_numpy() == pytest.approx(ref["mean"].to_numpy(), abs=1e-5)
    assert (got.n.to_numpy() == (ref["size"].to_numpy())).all()


def test_class_profiles_skip_absent_classes_and_reject_negative_labels(se_model, digits_xy):
    _, (x, y) = digits_xy
    keep = y != 3
    frame = class_profiles(se_model, x[keep], y[keep])
    assert 3 not in set(frame["class"]) and set(frame["class"]) == set(range(10)) - {3}
    with pytest.raises(InputError, match="negative"):
        class_profiles(se_model, x[:4], torch.tensor([0, 1, -1, 2]))


def test_profile_shift_matches_manual(se_model, test_xy, x_adv_pgd):
    x, y = test_xy
    frame = profile_shift(se_model, x, y, x_adv_pgd, batch_size=64)
    with torch.no_grad():
        clean_logits, s_clean, _ = manual_forward(se_model, x)
        adv_logits, s_adv, _ = manual_forward(se_model, x_adv_pgd)
    pred = adv_logits.argmax(1)
    fooled = (clean_logits.argmax(1) == y) & (pred != y)
    assert fooled.sum() > 10
    assert list(frame.block) == block_names(se_model)
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
