"""Every public analysis function rejects 0..255 images, NaN and mismatched inputs with an InputError,
and every one that needs SE modules names the fix for a baseline."""

from __future__ import annotations

import pytest
import torch

from serobust import build_pair
from serobust.attacks import attack, generate
from serobust.errors import InputError
from serobust.excitation.adapters import NoSEModuleError
from serobust.excitation.adaptive import adaptive_attacks
from serobust.excitation.controls import matched_gaussian_noise, sign_noise
from serobust.excitation.interventions import gate_override, interventions
from serobust.excitation.profiles import class_profiles, profile_shift
from serobust.excitation.sensitivity import feature_sensitivity
from serobust.excitation.shift import excitation_shift, shift_analysis

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pair():
    base, se = build_pair("cnn", num_classes=10, in_channels=1, reduction=4, seed=0)
    return base.eval(), se.eval()


@pytest.fixture(scope="module")
def xy():
    g = torch.Generator().manual_seed(0)
    return torch.rand(6, 1, 8, 8, generator=g), torch.randint(0, 10, (6,), generator=g)


# (name, call(model, x, y, x_adv)): every public function of the excitation analysis taking images
CALLS = {
    "excitation_shift": lambda m, x, y, xa: excitation_shift(m, x, xa, y=y),
    "shift_analysis": lambda m, x, y, xa: shift_analysis(m, x, y, 0.1, attack=lambda *_: xa),
    "feature_sensitivity": lambda m, x, y, xa: feature_sensitivity(m, x, xa),
    "interventions": lambda m, x, y, xa: interventions(m, x, y, xa),
    "adaptive_attacks": lambda m, x, y, xa: adaptive_attacks(m, x, y, 0.1, steps=1),
    # the registered gate attacks, through the harness (excitation_pgd at weight 0 is adaptive_attacks' pgd row)
    "pgd": lambda m, x, y, xa: generate(m, x, y, attack("excitation_pgd", steps=1, weight=0.0), 0.1),
    "excitation_pgd": lambda m, x, y, xa: generate(m, x, y, attack("excitation_pgd", steps=1), 0.1),
    "frozen_gate_pgd": lambda m, x, y, xa: generate(m, x, y, attack("frozen_gate_pgd", steps=1), 0.1),
    "class_profiles": lambda m, x, y, xa: class_profiles(m, x, y),
    "profile_shift": lambda m, x, y, xa: profile_shift(m, x, y, xa),
    "sign_noise": lambda m, x, y, xa: sign_noise(x, 0.1),
    "matched_gaussian_noise": lambda m, x, y, xa: matched_gaussian_noise(x, xa),
}
TAKES_X_ADV = ["excitation_shift", "shift_analysis", "feature_sensitivity", "interventions", "profile_shift",
               "matched_gaussian_noise"]
TAKES_Y = ["excitation_shift", "shift_analysis", "interventions", "adaptive_attacks", "pgd", "excitation_pgd",
           "frozen_gate_pgd", "class_profiles", "profile_shift"]


def _with_nan(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[3, 0, 2, 2] = float("nan")
    return x


@pytest.mark.parametrize("name", list(CALLS))
def test_clean_inputs_pass(name, pair, xy):
    x, y = xy
    CALLS[name](pair[1], x, y, (x + 0.01).clamp(0, 1))


@pytest.mark.parametrize("name", list(CALLS))
@pytest.mark.parametrize("bad,match", [(lambda x: x * 255, "divide by 255"), (_with_nan, "NaN"),
                                       (lambda x: (x - 0.5) / 0.5, "Normalize")],
                         ids=["0..255", "nan", "normalized"])
def test_bad_images_raise_input_error(name, bad, match, pair, xy):
    x, y = xy
    with pytest.raises(InputError, match=match):
        CALLS[name](pair[1], bad(x), y, x.clone())


@pytest.mark.parametrize("name", TAKES_X_ADV)
@pytest.mark.parametrize("bad,match", [(lambda x: x * 255, "divide by 255"), (_with_nan, "NaN"),
                                       (lambda x: x[:4], "same shape")], ids=["0..255", "nan", "shape"])
def test_bad_perturbed_images_raise_input_error(name, bad, match, pair, xy):
    x, y = xy
    with pytest.raises(InputError, match=match):
        CALLS[name](pair[1], x, y, bad(x))


@pytest.mark.parametrize("name", TAKES_Y)
@pytest.mark.parametrize("bad_y,match", [(lambda y: y[:4], "shape|differ in length"), (lambda y: y.float(), "integer")],
                         ids=["length", "float"])
def test_bad_labels_raise_input_error(name, bad_y, match, pair, xy):
    x, y = xy
    with pytest.raises(InputError, match=match):
        CALLS[name](pair[1], x, bad_y(y), x.clone())


@pytest.mark.parametrize("name", [n for n in CALLS if n not in ("feature_sensitivity", "sign_noise",
                                                                "matched_gaussian_noise")])
def test_baseline_raises_no_se_module_error(name, pair, xy):
    x, y = xy
    with pytest.raises(NoSEModuleError, match="SE twin"):
        CALLS[name](pair[0], x, y, x.clone())
    with pytest.raises(NoSEModuleError, match="SE twin"), gate_override(pair[0], {}):
        pass


def test_empty_input_raises(pair, xy):
    x, y = xy
    with pytest.raises(InputError, match="no images"):
        class_profiles(pair[1], x[:0], y[:0])
