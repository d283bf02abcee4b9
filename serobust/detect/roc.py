"""How well a detector's scores separate perturbed from clean images: AUROC and TPR at 5% FPR.

Both come from scikit-learn (``roc_auc_score``, ``roc_curve``), so the numbers are the ones any
reader's own tooling gives.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = ["detection_metrics", "FPR_TARGET"]

#: The clean false-positive rate at which the true-positive rate is reported (``tpr_at_5fpr``).
FPR_TARGET = 0.05


def detection_metrics(negatives: torch.Tensor | np.ndarray, positives: torch.Tensor | np.ndarray) -> dict[str, float]:
    """AUROC and TPR at 5% FPR of a detector's scores (higher = "perturbed").

    The AUROC is scikit-learn's ``roc_auc_score`` (the probability that a random positive scores above
    a random negative, ties counting one half: the Mann-Whitney U statistic over ``n_pos * n_neg``).
    The TPR at 5% FPR is read from ``roc_curve`` (all thresholds kept): the threshold is the lowest
    score at which at most 5% of the negatives (clean images) score at or above it, and the TPR is the
    fraction of positives at or above that threshold.

    Args:
        negatives: scores of clean images, (n_neg,).
        positives: scores of perturbed images, (n_pos,).

    Returns:
        ``{"auroc", "tpr_at_5fpr", "n_pos", "n_neg"}``; AUROC and TPR are NaN when either set is empty.

    Raises:
        ValueError: a score is NaN or infinite.
    """
    neg = np.asarray(torch.as_tensor(negatives).detach().cpu(), dtype=np.float64).ravel()
    pos = np.asarray(torch.as_tensor(positives).detach().cpu(), dtype=np.float64).ravel()
    out = {"auroc": math.nan, "tpr_at_5fpr": math.nan, "n_pos": int(pos.size), "n_neg": int(neg.size)}
    if not (np.isfinite(neg).all() and np.isfinite(pos).all()):
        raise ValueError("detector scores hold NaN or infinite values; check the model's outputs and the fit")
    if neg.size == 0 or pos.size == 0:
        return out
    labels = np.concatenate([np.zeros(neg.size), np.ones(pos.size)])
    scores = np.concatenate([neg, pos])
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)  # dropping could skip the 5% point
    out["auroc"] = float(roc_auc_score(labels, scores))
    out["tpr_at_5fpr"] = float(tpr[fpr <= FPR_TARGET + 1e-12].max())
    return out
