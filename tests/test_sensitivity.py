"""feature_sensitivity and matched_layers against plain forward hooks on a trained pair."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from se_reference import reference_pgd

from serobust.excitation.sensitivity import feature_sensitivity, matched_layers

pytestmark = pytest.mark.usefixtures("one_thread")

LAYERS = ["features.0", "features.1", "features.3", "features.4", "features.6"]


@pytest.fixture(scope="module")
def attacked(trained_digits_pair, digits_xy):
    """96 test digits and hand-written PGD adversarials on the baseline at eps 0.1."""
    base, _ = trained_digits_pair
    _, (x, y) = digits_xy
    x, y = x[:96], y[:96]
    return x, reference_pgd(base, x, y, 0.1, 0.025, 8)


def _outputs(model, layers, *inputs):
    outs = {}
    handles = [dict(model.named_modules())[n].register_forward_hook(
        lambda m, a, o, n=n: outs.setdefault(n, []).append(o.detach().flatten(1))) for n in layers]
    with torch.no_grad():
        for x in inputs:
            model(x)
    for h in handles:
        h.remove()
    return outs


@pytest.mark.parametrize("member", [0, 1], ids=["baseline", "se_twin"])
def test_feature_sensitivity_equals_plain_hooks(trained_digits_pair, attacked, member):
    model = trained_digits_pair[member]
    x, x_adv = attacked
    layers = matched_layers(*trained_digits_pair)
    assert layers == LAYERS
    frame = feature_sensitivity(model, x, x_adv, layers=layers, batch_size=50)
    per_sample = feature_sensitivity(model, x, x_adv, layers=layers, batch_size=50, per_sample=True)
    assert list(frame["layer"]) == layers and list(frame["depth"]) == list(range(len(layers)))
    outs = _outputs(model, layers, x, x_adv)
    for name in layers:
        clean, adv = outs[name]
        rel = ((adv - clean).norm(dim=1) / clean.norm(dim=1)).numpy()
        row = frame[frame["layer"] == name].iloc[0]
        np.testing.assert_allclose(row["rel_change"], rel.mean(), rtol=1e-4)
        np.testing.assert_allclose(row["rel_change_median"], np.median(rel), rtol=1e-4)
        np.testing.assert_allclose(row["norm_adv"], adv.norm(dim=1).mean().item(), rtol=1e-4)
        rows = per_sample[per_sample["layer"] == name]
        np.testing.assert_allclose(rows["rel_change"], rel, rtol=1e-4)
        assert list(rows["sample"]) == list(range(len(x)))


def test_default_layers_and_errors(trained_digits_pair, attacked):
    base, se = trained_digits_pair
    x, x_adv = attacked
    assert list(feature_sensitivity(se, x, x_adv)["layer"]) == LAYERS  # default: the SE parents
    with pytest.raises(ValueError, match="matched_layers"):
        feature_sensitivity(base, x, x_adv)
    with pytest.raises(ValueError, match="not modules"):
        feature_sensitivity(base, x, x_adv, layers=["features.99"])
    with pytest.raises(ValueError, match="empty"):
        feature_sensitivity(base, x, x_adv, layers=[])
    with pytest.raises(ValueError, match="exists in the baseline"):
        matched_layers(torch.nn.Linear(2, 2), se)
