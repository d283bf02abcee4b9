"""ExcitationProbe: records equal manual computations from the SE weights; hooks never leak."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from serobust import build_model, build_pair, register_se_adapter
from serobust.errors import InputError
from serobust.excitation.adapters import NoSEModuleError
from serobust.excitation.probe import ExcitationProbe
from serobust.models.se import SqueezeExcite

pytestmark = pytest.mark.usefixtures("one_thread")


class SELayer(nn.Module):
    """senet.pytorch's SE layer: the sigmoid is the last element of a Sequential, not a named gate."""

    def __init__(self, channel: int, reduction: int = 4) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channel, channel // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channel // reduction, channel, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, _, _ = x.size()
        y = self.avg_pool(x).view(b, c)
        y = self.fc(y).view(b, c, 1, 1)
        return x * y.expand_as(x)


class TinySENet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.se = SELayer(12)
        self.head = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.se(torch.relu(self.conv(x))).mean((2, 3)))


def _capture_inputs(model: nn.Module, kinds: tuple[type, ...]) -> tuple[dict, list]:
    """Independent capture of each SE module's input u (a plain hook, not the probe)."""
    seen: dict[str, list[torch.Tensor]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, kinds):
            def hook(mod, args, out, name=name):
                seen.setdefault(name, []).append(args[0].detach().clone())
            handles.append(module.register_forward_hook(hook))
    return seen, handles


@pytest.fixture(scope="module")
def se_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = build_model("cnn", num_classes=10, in_channels=1, se=True, reduction=4, seed=0)
    # move BN statistics and SE biases away from their init so s differs across channels and samples
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
        if isinstance(m, SqueezeExcite):
            nn.init.normal_(m.fc2.weight, std=1.0)
            nn.init.normal_(m.fc2.bias, std=1.0)
    return model.eval()


def _all_hooks_empty(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_records_equal_manual_squeeze_and_excitation(se_cnn):
    x = torch.rand(6, 1, 8, 8)
    seen, handles = _capture_inputs(se_cnn, (SqueezeExcite,))
    with ExcitationProbe(se_cnn, store_maps=True) as probe:
        se_cnn(x[:4])
        se_cnn(x[4:])  # two batches, concatenated by records()
    for h in handles:
        h.remove()
    rec = probe.records()
    assert probe.blocks == ["features.0.se", "features.1.se", "features.3.se", "features.4.se", "features.6.se"]
    assert probe.channels == {"features.0.se": 16, "features.1.se": 16, "features.3.se": 32,
                              "features.4.se": 32, "features.6.se": 64}
    modules = dict(se_cnn.named_modules())
    for name in probe.blocks:
        m = modules[name]
        u = torch.cat(seen[name])  # (6, C, H, W)
        z = u.mean((2, 3))
        s = torch.sigmoid(F.linear(F.relu(F.linear(z, m.fc1.weight, m.fc1.bias)), m.fc2.weight, m.fc2.bias))
        g = u * s[:, :, None, None]
        assert s.std(dim=1).min() > 1e-3  # a real per-channel excitation, not a constant
        torch.testing.assert_close(rec[name]["z"], z, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rec[name]["s"], s, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rec[name]["u_norm"], u.flatten(1).norm(dim=1), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rec[name]["g_norm"], g.flatten(1).norm(dim=1), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rec[name]["u"], u)
        torch.testing.assert_close(rec[name]["g"], g, rtol=1e-5, atol=1e-6)


def test_stored_maps_survive_later_inplace_ops():
    """g is cloned: a block that adds its shortcut in place (torchvision style) must not corrupt it."""

    class InplaceBlock(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 8, 3, padding=1)
            self.se = SqueezeExcite(8, reduction=2)

        def forward(self, x):
            out = self.se(torch.relu(self.conv(x)))
            out += 1.0  # modifies g in place after the SE module returned it
            return out.mean((1, 2, 3))

    model = InplaceBlock().eval()
    x = torch.rand(3, 4, 5, 5)
    with ExcitationProbe(model, store_maps=True) as probe:
        model(x)
    rec = probe.records()["se"]
    u = torch.relu(model.conv(x))
    torch.testing.assert_close(rec["g"], model.se(u))
    torch.testing.assert_close(rec["g_norm"], model.se(u).flatten(1).norm(dim=1))


def test_mobilenet_v3_small_blocks_and_hardsigmoid_excitation():
    from torchvision.models import mobilenet_v3_small
    from torchvision.ops import SqueezeExcitation

    model = mobilenet_v3_small(num_classes=10).eval()
    x = torch.rand(2, 3, 64, 64)
    seen, handles = _capture_inputs(model, (SqueezeExcitation,))
    with ExcitationProbe(model) as probe, torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    assert list(probe.channels.values()) == [16, 96, 240, 240, 120, 144, 288, 576, 576]
    rec = probe.records()
    modules = dict(model.named_modules())
    for name in probe.blocks:
        m = modules[name]
        u = seen[name][0]
        z = u.mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        s = F.hardsigmoid(m.fc2(F.relu(m.fc1(z)))).flatten(1)  # (B, C)
        assert rec[name]["s"].shape == (2, probe.channels[name])
        torch.testing.assert_close(rec[name]["z"], z.flatten(1), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rec[name]["s"], s, rtol=1e-5, atol=1e-6)


def test_baseline_raises_no_se_module_error_with_the_fix():
    base, _ = build_pair("cnn", num_classes=10, in_channels=1, reduction=4)
    with pytest.raises(NoSEModuleError, match="register_se_adapter") as info:
        ExcitationProbe(base)
    assert "SE twin" in str(info.value)
    assert _all_hooks_empty(base)


def test_hooks_removed_after_exit_and_after_exception(se_cnn):
    probe = ExcitationProbe(se_cnn)
    with probe:
        assert not _all_hooks_empty(se_cnn)
        se_cnn(torch.rand(2, 1, 8, 8))
    assert _all_hooks_empty(se_cnn)
    with pytest.raises(RuntimeError, match="boom"), ExcitationProbe(se_cnn) as failing:
        se_cnn(torch.rand(3, 1, 8, 8))
        raise RuntimeError("boom")
    assert _all_hooks_empty(se_cnn)
    assert failing.records()["features.0.se"]["z"].shape == (3, 16)  # records survive the exception
    assert probe.records()["features.6.se"]["s"].shape == (2, 64)


def test_pause_skips_attack_iterates_and_clear_empties(se_cnn):
    with ExcitationProbe(se_cnn) as probe:
        se_cnn(torch.rand(4, 1, 8, 8))
        with probe.pause():
            assert probe.paused
            for _ in range(5):  # e.g. PGD iterates
                se_cnn(torch.rand(4, 1, 8, 8))
            with probe.pause():  # pauses nest
                se_cnn(torch.rand(4, 1, 8, 8))
            se_cnn(torch.rand(4, 1, 8, 8))
        assert not probe.paused
        se_cnn(torch.rand(2, 1, 8, 8))
        assert probe.records()["features.3.se"]["z"].shape == (6, 32)
        probe.clear()
        assert probe.records()["features.3.se"]["z"].shape == (0, 32)
        se_cnn(torch.rand(1, 1, 8, 8))
    assert probe.records()["features.3.se"]["s"].shape == (1, 32)


def test_streaming_aggregates_equal_full_records(se_cnn):
    batches = [torch.rand(n, 1, 8, 8) for n in (7, 13, 1, 20)]
    with ExcitationProbe(se_cnn) as full, ExcitationProbe(se_cnn, streaming=True) as stream:
        for xb in batches:
            se_cnn(xb)
    rec = full.records()
    agg = stream.aggregates()
    with pytest.raises(RuntimeError, match="aggregates"):
        stream.records()
    with pytest.raises(RuntimeError, match="streaming=True"):
        full.aggregates()
    for name in full.blocks:
        a = agg[name]
        assert a["count"] == 41
        for key in ("z", "s"):
            values = rec[name][key].double().numpy()
            np.testing.assert_allclose(a[f"{key}_mean"].numpy(), values.mean(axis=0), rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(a[f"{key}_var"].numpy(), values.var(axis=0, ddof=1), rtol=1e-7, atol=1e-12)
        for key in ("u_norm", "g_norm"):  # streaming takes |g| from s and ||u_c|| (one pass): same values
            values = rec[name][key].double().numpy()
            np.testing.assert_allclose(float(a[f"{key}_mean"]), values.mean(), rtol=1e-6)
            np.testing.assert_allclose(float(a[f"{key}_var"]), values.var(ddof=1), rtol=1e-4,
                                       atol=1e-6 * values.mean() ** 2)  # float32 rounding of the norms


def test_registered_custom_se_class_is_captured():
    register_se_adapter(SELayer, gate="fc.3")
    torch.manual_seed(0)
    model = TinySENet().eval()
    x = torch.rand(5, 3, 6, 6)
    with ExcitationProbe(model) as probe:
        model(x)
    assert probe.blocks == ["se"] and probe.channels == {"se": 12}
    u = torch.relu(model.conv(x))
    z = u.mean((2, 3))
    s = model.se.fc(z)
    rec = probe.records()["se"]
    torch.testing.assert_close(rec["z"], z, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rec["s"], s, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rec["g_norm"], (u * s[:, :, None, None]).flatten(1).norm(dim=1))


def test_block_selection_and_bad_arguments(se_cnn):
    with ExcitationProbe(se_cnn, blocks=["features.6.se", "features.0.se"]) as probe:
        se_cnn(torch.rand(2, 1, 8, 8))
    assert probe.blocks == ["features.0.se", "features.6.se"]  # model order
    assert set(probe.records()) == {"features.0.se", "features.6.se"}
    with pytest.raises(ValueError, match="valid names"):
        ExcitationProbe(se_cnn, blocks=["features.2.se"])
    with pytest.raises(ValueError, match="streaming"):
        ExcitationProbe(se_cnn, streaming=True, store_maps=True)


def test_warns_when_probing_a_training_model():
    model = build_model("cnn", num_classes=10, in_channels=1, se=True, reduction=4)
    with pytest.warns(UserWarning, match="training mode"), ExcitationProbe(model):
        pass


# ------------------------------------------------------------------------------------------ input checks
def _nan_batch() -> torch.Tensor:
    x = torch.rand(3, 1, 8, 8)
    x[1, 0, 4, 4] = float("nan")
    return x


BAD_BATCHES = {
    "0..255": (lambda: torch.rand(3, 1, 8, 8) * 255, "divide by 255"),
    "nan": (_nan_batch, "NaN"),
    "normalized": (lambda: (torch.rand(3, 1, 8, 8) - 0.5) / 0.5, "Normalize"),
}


@pytest.mark.parametrize("bad", list(BAD_BATCHES))
@pytest.mark.parametrize("streaming", [False, True], ids=["records", "aggregates"])
def test_bad_input_batch_raises_on_read_naming_the_batch(se_cnn, bad, streaming):
    make, match = BAD_BATCHES[bad]
    probe = ExcitationProbe(se_cnn, streaming=streaming)
    read = probe.aggregates if streaming else probe.records
    with pytest.raises(InputError, match=match):  # raised by the end of the with block at the latest
        with probe, torch.no_grad():
            se_cnn(torch.rand(4, 1, 8, 8))
            read()  # a good batch reads fine
            se_cnn(make())
            with pytest.raises(InputError, match=match) as info:
                read()
            assert "(batch 1)" in str(info.value)
    assert _all_hooks_empty(se_cnn)
    with pytest.raises(InputError, match=match):  # and keeps raising when the records are read later
        read()


def test_bad_input_raises_on_exit_when_records_are_never_read(se_cnn):
    with pytest.raises(InputError, match="batch 2"), ExcitationProbe(se_cnn):
        for _ in range(2):
            se_cnn(torch.rand(2, 1, 8, 8))
        se_cnn(torch.rand(2, 1, 8, 8) * 255)
    assert _all_hooks_empty(se_cnn)


def test_input_checks_skip_paused_passes_and_can_be_disabled(se_cnn):
    with ExcitationProbe(se_cnn) as probe:
        with probe.pause():
            se_cnn(torch.rand(2, 1, 8, 8) * 255)  # an attack's business while paused: not recorded
        se_cnn(torch.rand(2, 1, 8, 8))
    assert probe.records()["features.0.se"]["z"].shape == (2, 16)
    with ExcitationProbe(se_cnn, check_inputs=False) as unchecked:  # the caller checked the whole input
        se_cnn(torch.rand(2, 1, 8, 8) * 255)
    assert unchecked.records()["features.0.se"]["z"].shape == (2, 16)


def test_exception_in_body_is_not_masked_by_a_bad_input(se_cnn):
    with pytest.raises(RuntimeError, match="boom"), ExcitationProbe(se_cnn):
        se_cnn(torch.rand(2, 1, 8, 8) * 255)
        raise RuntimeError("boom")
    assert _all_hooks_empty(se_cnn)


def test_uint8_images_raise_at_once(se_cnn):
    with pytest.raises(InputError, match="x.float"), ExcitationProbe(se_cnn):
        se_cnn(torch.randint(0, 255, (2, 1, 8, 8), dtype=torch.uint8))


def test_pop_records_returns_one_batch_and_clears(se_cnn):
    x = torch.rand(5, 1, 8, 8)
    with ExcitationProbe(se_cnn) as probe, torch.no_grad():
        se_cnn(x[:2])
        first = probe.pop_records()
        se_cnn(x[2:])
        second = probe.pop_records()
        assert probe.records()["features.0.se"]["z"].shape == (0, 16)
    with ExcitationProbe(se_cnn) as whole, torch.no_grad():
        se_cnn(x[:2])
        se_cnn(x[2:])
    for name, rec in whole.records().items():
        torch.testing.assert_close(torch.cat([first[name]["s"], second[name]["s"]]), rec["s"])


def test_differentiable_records_carry_gradients_to_the_input(se_cnn):
    x = torch.rand(3, 1, 8, 8, requires_grad=True)
    with ExcitationProbe(se_cnn, differentiable=True) as probe:
        se_cnn(x)
        s = probe.pop_records()["features.6.se"]["s"]
    (grad,) = torch.autograd.grad(s.sum(), x)
    assert grad.abs().sum() > 0
