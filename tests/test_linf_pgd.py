"""The shared Linf PGD loop against a hand-written PGD, and its contract (projection, start, no grads)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from serobust.linf_pgd import default_alpha, linf_pgd, uniform_start

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(12, 1, 6, 6, generator=g)
    x[:, :, 0] = 0.0  # pixels on the border of [0, 1], where the range projection bites
    x[:, :, 1] = 1.0
    y = torch.randint(0, 5, (12,), generator=g)
    return model, x, y


def hand_written_pgd(model, x, y, eps, alpha, steps, start):
    """Madry et al.'s PGD, written out: ascent step, then min/max onto the ball and the image range."""
    x_adv = start.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
        x_adv = x_adv.detach() + alpha * torch.sign(g)
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
        x_adv = torch.min(torch.max(x_adv, torch.zeros_like(x)), torch.ones_like(x))
    return x_adv


@pytest.mark.parametrize("random", [False, True], ids=["from_x", "random_start"])
def test_equals_hand_written_pgd(problem, random):
    model, x, y = problem
    eps, steps = 0.1, 7
    alpha = default_alpha(eps, steps)
    start = uniform_start(x, eps, generator=torch.Generator().manual_seed(3)) if random else x
    got = linf_pgd(lambda xa: F.cross_entropy(model(xa), y), x, eps=eps, alpha=alpha, steps=steps,
                   start=None if not random else start)
    expected = hand_written_pgd(model, x, y, eps, alpha, steps, start)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)
    assert not got.requires_grad
    assert (got - x).abs().max() <= eps + 1e-7 and got.min() >= 0 and got.max() <= 1
    assert (got - x).abs().max() > eps / 2  # it moved


def test_uniform_start_in_the_ball_and_seeded():
    x = torch.rand(50, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    a = uniform_start(x, 0.2, generator=torch.Generator().manual_seed(7))
    b = uniform_start(x, 0.2, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert (a - x).abs().max() <= 0.2 + 1e-7 and a.min() >= 0 and a.max() <= 1
    noise = (2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(7)) - 1) * 0.2
    torch.testing.assert_close(a, (x + noise).clamp(0, 1))


def test_loss_closure_sees_every_iterate_and_parameters_get_no_grad(problem):
    model, x, y = problem
    seen = []

    def loss(xa):
        seen.append(xa.detach().clone())
        return F.cross_entropy(model(xa), y)

    with torch.no_grad():  # the loop enables gradients for itself
        out = linf_pgd(loss, x, eps=0.05, alpha=0.02, steps=3)
    assert len(seen) == 3 and torch.equal(seen[0], x) and not out.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(linf_pgd(loss, x, eps=0.05, alpha=0.02, steps=0), x)


@pytest.mark.parametrize("kw", [{"steps": -1}, {"steps": 1.5}, {"eps": float("nan")}, {"alpha": -0.1}])
def test_bad_arguments_raise(problem, kw):
    model, x, y = problem
    args = {"eps": 0.1, "alpha": 0.01, "steps": 2, **kw}
    with pytest.raises(ValueError):
        linf_pgd(lambda xa: model(xa).sum(), x, **args)
