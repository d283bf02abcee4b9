"""The random controls: matched norms per sample, the Linf budget, reproducible draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from serobust.excitation.controls import matched_gaussian_noise, sign_noise


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


def _mnist_like(n: int, generator: torch.Generator) -> torch.Tensor:
    """28x28 images with a zero background (about 80% of the pixels, as in MNIST) and bright strokes."""
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 6:22, 11:17] = torch.rand(n, 1, 16, 6, generator=generator) * 0.5 + 0.5
    x[:, :, 6:9, 6:22] = 1.0  # saturated pixels clip on the other side
    return x


def test_gaussian_control_has_the_clipped_attack_l2_on_a_zero_background():
    """On MNIST-like images a sign perturbation clips to about sqrt(1/2) of its L2 size on the background; the
    Gaussian control is matched to the perturbation actually applied (after clipping), image by image."""
    g = torch.Generator().manual_seed(0)
    x = _mnist_like(16, g)
    eps = 0.1
    x_adv = (x + eps * torch.randn(x.shape, generator=g).sign()).clamp(0, 1)  # a PGD-like final iterate
    applied = (x_adv - x).flatten(1).norm(dim=1)
    unclipped = eps * 28.0
    assert (applied < 0.8 * unclipped).all()  # clipping really shrank it
    noisy = matched_gaussian_noise(x, x_adv, generator=torch.Generator().manual_seed(1))
    assert noisy.min() >= 0 and noisy.max() <= 1
    realized = (noisy - x).flatten(1).norm(dim=1)
    np.testing.assert_allclose(realized, applied, rtol=1e-5)
    signs = sign_noise(x, eps, generator=torch.Generator().manual_seed(2))  # the Linf control is not L2-matched
    assert ((signs - x).flatten(1).norm(dim=1) < 0.8 * unclipped).all()


def test_shift_analysis_gaussian_rows_have_the_attack_l2():
    """Through shift_analysis: the gaussian rows' realized perturbation norm (pert_l2) is the attack's."""
    from serobust import shift_analysis
    from serobust.models.se import SqueezeExcite

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
            self.se = SqueezeExcite(8, reduction=2, min_hidden=4)
            self.head = torch.nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.se(self.conv(x)).mean((2, 3)))

    torch.manual_seed(0)
    model = Tiny().eval()
    g = torch.Generator().manual_seed(3)
    x = _mnist_like(12, g)
    y = torch.arange(12) % 3
    signs = torch.randn(x.shape, generator=g).sign()

    def attack(m, xb, yb, eps):
        return (xb + eps * signs).clamp(0, 1)

    frame = shift_analysis(model, x, y, [0.05, 0.2], attack=attack, controls=("gaussian", "sign_noise"))
    l2 = frame.groupby(["kind", "eps"])["pert_l2"].first().unstack("kind")
    np.testing.assert_allclose(l2["gaussian"], l2["adversarial"], rtol=1e-5)
    assert (l2["sign_noise"] < 0.8 * l2.index.to_numpy() * 28).all()
    assert {"absorb_ratio", "gate_passed_rel", "gate_added_rel", "absorb_ratio_of_means"} <= set(frame.columns)
