"""Shared fixtures: tiny real data (scikit-learn's 8x8 digits) and a quickly trained cnn pair."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn


def _digits_tensors():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    y = torch.tensor(d.target, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y), generator=g)
    x, y = x[perm], y[perm]
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


@pytest.fixture(scope="session")
def digits_xy():
    """((x_train, y_train), (x_test, y_test)) of the 8x8 digits in [0, 1], shape (N, 1, 8, 8)."""
    return _digits_tensors()


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 15, seed: int = 0) -> nn.Module:
    """A plain, independent training loop (not serobust's trainer) so fixtures stand on their own."""
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y))
        for i in range(0, len(y), 64):
            idx = perm[i : i + 64]
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def trained_digits_pair(digits_xy):
    """(baseline, se_twin) cnn pair trained on 8x8 digits (about 95% test accuracy), in eval mode."""
    from serobust import build_pair

    (xtr, ytr), _ = digits_xy
    base, se = build_pair("cnn", num_classes=10, in_channels=1, reduction=4, seed=0)
    return _fit(base, xtr, ytr), _fit(se, xtr, ytr)


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP oversubscription on a shared 2-core machine
    (measured 30 s -> 0.3 s for a small PGD loop under load); restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_study(**sections) -> dict:
    """A tiny study (8x8 digits, 2 seeds, few steps): runs end to end in seconds. Sections override."""
    import copy

    raw = {
        "study": {"name": "tiny", "seeds": [0, 1], "device": "cpu"},
        "data": {"name": "digits", "eval_size": 80},
        "model": {"arch": "cnn", "reductions": [4]},
        "train": {"epochs": 4, "batch_size": 64, "lr": 0.05},
        "attacks": {"eps": [0.0, 0.1, 0.2], "white_box": [{"name": "fgsm"}, {"name": "pgd", "steps": 3}],
                    "black_box": [{"name": "square", "n_queries": 10}], "black_box_eps": [0.2],
                    "black_box_size": 30},
        "diagnostics": {"size": 30, "eps": [0.1, 0.2], "steps": [2, 4], "restarts": [1, 2], "square_queries": 10,
                        "large_eps": 0.6},
        "probe": {"size": 40, "eps": [0.1, 0.2]},
        "mechanism": {"size": 40, "eps": 0.2, "steps": 3},
        "detect": {"size": 60, "fit_size": 400, "eps": 0.2, "adaptive_steps": 5},
        "stats": {"n_resamples": 1000},
        "report": {"examples": 4},
    }
    raw = copy.deepcopy(raw)
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return raw
