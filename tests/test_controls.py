"""The random controls: matched norms per sample, the Linf budget, reproducible draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from serobust.controls import matched_gaussian_noise, sign_noise


def test_matched_gaussian_noise_norms_per_sample(digits_xy):
    _, (x, _) = digits_xy
    x = x[:64]
    gen = torch.Generator().manual_seed(0)
    x_adv = (x + 0.1 * torch.randn(x.shape, generator=gen).sign()).clamp(0, 1)
    x_adv[0] = x[0]  # a zero perturbation stays zero
    noisy = matched_gaussian_noise(x, x_adv, generator=torch.Generator().manual_seed(1), batch_size=24)
    assert noisy.min() >= 0 and noisy.max() <= 1
    target = (x_adv - x).flatten(1).norm(dim=1)
    np.testing.assert_allclose((noisy - x).flatten(1).norm(dim=1), target, rtol=1e-4, atol=1e-6)
    assert not torch.equal(torch.sign(noisy - x)[1:], torch.sign(x_adv - x)[1:])  # a different direction
    again = matched_gaussian_noise(x, x_adv, generator=torch.Generator().manual_seed(1), batch_size=24)
    assert torch.equal(noisy, again)


def test_matched_gaussian_noise_warns_when_the_norm_is_out_of_reach():
    """From black images, noise can only brighten the pixels where the direction is positive."""
    x = torch.zeros(3, 1, 4, 4)
    x_adv = torch.ones(3, 1, 4, 4)  # L2 norm 4: only reachable if all 16 directions were positive
    x_adv[0] = 0.0  # a zero target stays reachable
    with pytest.warns(UserWarning, match="^2 samples"):
        out = matched_gaussian_noise(x, x_adv, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[0], x[0], rtol=0, atol=1e-6)
    n = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[1:].flatten(1), (n[1:] > 0).float())  # saturated: every reachable pixel at 1


def test_sign_noise_is_at_the_linf_budget(digits_xy):
    _, (x, _) = digits_xy
    x = x[:64]
    signs = sign_noise(x, 0.1, generator=torch.Generator().manual_seed(0))
    assert (signs - x).abs().max() <= 0.1 + 1e-6 and signs.min() >= 0 and signs.max() <= 1
    inside = (x > 0.1) & (x < 0.9)  # no clipping there: every pixel moved by exactly eps
    np.testing.assert_allclose((signs - x).abs()[inside], 0.1, rtol=1e-5)
    assert torch.equal(signs, sign_noise(x, "1/10", generator=torch.Generator().manual_seed(0)))
