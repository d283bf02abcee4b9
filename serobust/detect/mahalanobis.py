"""Lee et al.'s Mahalanobis detector on block features: class means, one tied shrunk covariance.

Lee et al. (NeurIPS 2018, "A simple unified framework for detecting out-of-distribution samples and
adversarial attacks") score an input by the Mahalanobis distance of its features to the nearest class
mean under a covariance shared by all classes. :class:`MahalanobisDetector` does this per block of a
network, on the features of :mod:`serobust.detect.features`, against the mean of the class the
network *predicts*, and combines the blocks into one score.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from sklearn.covariance import LedoitWolf
from torch import nn

from ..errors import InputError
from ..excitation.inputs import batch_slices, check_analysis_inputs
from ..runtime import eval_mode, model_device
from .features import Reader, feature_reader, resolve_blocks

__all__ = ["MahalanobisDetector"]

_MIN_SCALE = 1e-12  # floor of a block's clean score spread (a constant feature would divide by 0)


@dataclass(frozen=True)
class _BlockFit:
    """One block's clean statistics: class means (K, D) and the tied shrunk precision (D, D)."""

    means: torch.Tensor
    precision: torch.Tensor


class MahalanobisDetector:
    """Scores inputs by how far their block features fall from the clean statistics of the predicted class.

    Fit (:meth:`fit`, on clean training images ``x``, labels ``y``): per block b, the features
    ``f_b(x)`` (``[s, z]`` of the SE block, or the pooled block output), the class means ``mu_bk`` over
    the images of class k, and one covariance shared by all classes (Lee et al. 2018's tied covariance)
    of the class-centred features ``f_b(x) - mu_b,y``, shrunk towards a scaled identity by Ledoit and
    Wolf's estimator (sklearn's ``LedoitWolf``): ``[s, z]`` is nearly degenerate (``s`` is a function
    of ``z``) and pooled features of wide blocks have more dimensions than a small fit set supports,
    so the plain inverse would be unstable.

    Score: ``d_b(x) = (f_b(x) - mu_b,c)^T P_b (f_b(x) - mu_b,c)`` with ``c`` the model's predicted class
    and ``P_b`` the precision; the detector's score is ``sum_b (d_b(x) - m_b) / sd_b``, where ``m_b``
    and ``sd_b`` are the mean and standard deviation of ``d_b`` over the clean fit images (scored the
    same way, with their predicted class). Standardizing first gives each block the same weight: raw
    squared distances grow with the feature dimension (about ``D_b`` on clean data), so a plain sum
    would be the widest block's score; Lee et al. instead weight blocks by a logistic regression fitted
    on adversarial examples, which would tell the detector the attack it is evaluated on. A higher
    score means "more likely perturbed".

    Args:
        model: the classifier whose features are read (the SE twin for ``"excitation"``, the baseline
            for the ``"pooled"`` control); it runs in eval mode, modes restored.
        features: a name in :data:`DETECTOR_FEATURES`.
        blocks: for ``"excitation"``, names of SE modules (default: all of them); for ``"pooled"``,
            names of modules whose (B, C, H, W) output is pooled (required:
            ``serobust.matched_layers(baseline, se_twin)`` gives the blocks that hold SE in the twin).

    Raises:
        ValueError: unknown ``features``, unknown or missing ``blocks``.
        NoSEModuleError: ``features="excitation"`` on a model without SE modules.
    """

    def __init__(self, model: nn.Module, *, features: str = "excitation", blocks: Sequence[str] | None = None) -> None:
        self.model = model
        self.features = features
        self.blocks = resolve_blocks(model, features, blocks)
        self._fits: list[_BlockFit] | None = None
        self._center: torch.Tensor | None = None  # (n_blocks,) mean clean distance per block
        self._scale: torch.Tensor | None = None  # (n_blocks,) std of the clean distance per block

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` has run."""
        return self._fits is not None

    def reading(self, *, differentiable: bool = False) -> contextlib.AbstractContextManager[Reader]:
        """A context whose value ``read(x) -> (logits, [features of each block (B, D_b)])`` runs the model.

        With ``differentiable=True`` the features keep their autograd graph (for :func:`detector_pgd`).
        The caller sets the model's mode (eval) and the batch's device and dtype.
        """
        return feature_reader(self.model, self.features, self.blocks, differentiable=differentiable)

    # ------------------------------------------------------------------ fit
    def fit(self, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256) -> MahalanobisDetector:
        """Fit class means, tied shrunk covariances and the clean score scale on clean images.

        Args:
            x: clean TRAINING images (N, C, H, W) in [0, 1] (scoring the test set against statistics of
                the test set itself would flatter the detector).
            y: their labels (N,); every class of the model's output must occur.
            batch_size: images per forward pass.

        Returns:
            ``self``, fitted.

        Raises:
            InputError: bad images or labels, a label outside the model's classes, or a class with
                no fit image.
        """
        check_analysis_inputs(x, y=y, batch_size=batch_size)
        device = model_device(self.model)
        logits, feats = self._read_all(x, batch_size)
        k = logits.shape[1]
        lo, hi = torch.stack([y.min(), y.max()]).tolist()
        if lo < 0 or hi >= k:
            raise InputError(f"y holds labels in [{lo}, {hi}], outside the model's {k} classes 0..{k - 1}; "
                             "pass class indices")
        y_dev = y.to(device)
        counts = torch.bincount(y_dev, minlength=k).cpu()
        missing = (counts == 0).nonzero().flatten().tolist()
        if missing:
            raise InputError(f"the fit images hold no example of classes {missing}; class means need every "
                             "class: pass a larger or stratified fit set")
        self._fits = [self._fit_block(f, y_dev, counts.to(device), k) for f in feats]
        dist = self._distances(feats, logits.argmax(1))  # (N, n_blocks) on the fit set itself
        self._center = dist.mean(0)
        self._scale = dist.std(0).clamp_min(_MIN_SCALE) if len(x) > 1 else torch.ones_like(self._center)
        return self

    @staticmethod
    def _fit_block(f: torch.Tensor, y: torch.Tensor, counts: torch.Tensor, k: int) -> _BlockFit:
        """Class means and the Ledoit-Wolf shrunk tied precision of one block's features (N, D)."""
        f64 = f.double()
        means = torch.zeros(k, f.shape[1], dtype=torch.float64, device=f.device).index_add_(0, y, f64)
        means /= counts[:, None]  # (K, D)
        centred = (f64 - means[y]).cpu().numpy()  # (N, D): the tied covariance's samples
        precision = LedoitWolf(assume_centered=True).fit(centred).precision_  # (D, D)
        return _BlockFit(means=means.float(), precision=torch.as_tensor(precision, dtype=torch.float32,
                                                                         device=f.device))

    def _read_all(self, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits (N, K) and features per block (N, D_b) of all of ``x``, on the model's device."""
        device = model_device(self.model)
        logits, feats = [], []
        with eval_mode(self.model), torch.no_grad(), self.reading() as read:
            for sl in batch_slices(len(x), batch_size):
                out, f = read(x[sl].to(device, torch.float32))
                logits.append(out.float())
                feats.append(f)
        return torch.cat(logits), [torch.cat(col) for col in zip(*feats)]

    # ------------------------------------------------------------------ score
    def _require_fit(self) -> list[_BlockFit]:
        if self._fits is None:
            raise RuntimeError("this detector is not fitted; call detector.fit(x_train, y_train) first")
        return self._fits

    def _distances(self, feats: list[torch.Tensor], pred: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance of each block's features to the predicted class's mean, (B, n_blocks)."""
        cols = []
        for f, fit in zip(feats, self._require_fit()):
            diff = f - fit.means[pred]  # (B, D)
            cols.append(((diff @ fit.precision) * diff).sum(1))  # (B,)
        return torch.stack(cols, dim=1)

    def logits_and_score(self, read: Reader, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass: logits (B, K) and scores (B,), differentiable when ``read`` is.

        The predicted class (an argmax) only selects the class mean; gradients flow through the
        features. Used by :func:`detector_pgd` inside :meth:`reading`.
        """
        logits, feats = read(x)
        dist = self._distances(feats, logits.detach().argmax(1))
        return logits, ((dist - self._center) / self._scale).sum(1)

    def distances(self, x: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
        """Squared Mahalanobis distance per block, before standardization: (N, n_blocks), on x's device."""
        check_analysis_inputs(x, batch_size=batch_size)
        self._require_fit()
        logits, feats = self._read_all(x, batch_size)
        return self._distances(feats, logits.argmax(1)).to(x.device)

    def predict_score(self, x: torch.Tensor, *, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's predicted classes (N,) and the detector's scores (N,), both on x's device.

        Raises:
            RuntimeError: the detector is not fitted.
            InputError: bad images.
        """
        check_analysis_inputs(x, batch_size=batch_size)
        self._require_fit()
        preds, scores = [], []
        device = model_device(self.model)
        with eval_mode(self.model), torch.no_grad(), self.reading() as read:
            for sl in batch_slices(len(x), batch_size):
                logits, score = self.logits_and_score(read, x[sl].to(device, torch.float32))
                preds.append(logits.argmax(1))
                scores.append(score)
        return torch.cat(preds).to(x.device), torch.cat(scores).to(x.device)

    def score(self, x: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
        """The detector's score of each image (N,): higher means more likely perturbed."""
        return self.predict_score(x, batch_size=batch_size)[1]

    def __repr__(self) -> str:
        return (f"MahalanobisDetector({self.features}, {len(self.blocks)} blocks of {type(self.model).__name__}, "
                f"fitted={self.fitted})")
