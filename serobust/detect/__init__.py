"""Detecting adversarial inputs from SE excitations: does "the global state hasn't changed much" tell?

The SE gate (Hu et al., 1709.01507) squeezes each channel of a feature map ``u`` to its global average
``z`` and rescales ``u`` by ``s = sigmoid(W2 relu(W1 z))``. The study's conjecture is that ``z``
hardly moves under a small adversarial perturbation; its last idea was that a network could resist an
attack "by noting that the global state hasn't changed much". Read as a detector: an input whose
excitations sit far from where clean images *of the class the network predicts* put them is suspect.
This package builds that detector, the control and the attacks a robustness claim needs:

* :class:`MahalanobisDetector` -- Lee et al. (NeurIPS 2018, "A simple unified framework for detecting
  out-of-distribution samples and adversarial attacks"): per block, class means and one tied
  covariance (Ledoit-Wolf shrinkage) of the block's features on clean *training* images; an input's
  block score is the squared Mahalanobis distance to the mean of its *predicted* class. Features are
  ``[s, z]`` of each SE block (``features="excitation"``), or, as the control, the global average
  pool of the outputs of the same blocks of the baseline without SE (``features="pooled"``).
* :func:`detection_metrics` -- AUROC and TPR at 5% FPR (scikit-learn's ``roc_auc_score``/``roc_curve``).
* :func:`detector_pgd` -- the adaptive attack Carlini & Wagner (AISec 2017, "Adversarial examples are
  not easily detected") showed every such detector must face: Linf PGD on
  ``CE(logits, y) - weight * score(x)`` until the model is fooled, then on the score alone,
  differentiating through the detector. The attack is the registered ``detector_pgd``
  (:mod:`serobust.attacks.detector_pgd`), run by the attack harness on the classifier with its detector.
* :func:`detection_analysis` -- the study: the excitation detector, the same detector on the SE twin's own
  pooled block outputs (``pooled_twin``: same network, same adversarial images) and on the baseline's
  (``pooled``), against FGSM, PGD, Gaussian noise of PGD's per-example L2 norm, and the adaptive attack
  (50 steps from the clean image, detector-loss weights 0, 1 and 10, the strongest per image);
  :func:`detection_verdict` reads it.

Which examples count (:func:`detection_analysis`): negatives are the clean test images the detector's
model classifies correctly; positives are the perturbed versions of those images that the model
misclassifies (successful adversarial examples: a failed attack is nothing to detect), except for the
Gaussian control, where every noisy version of a negative is a positive (noise rarely flips a label;
its row asks whether the detector flags any perturbation of the attack's size, not an adversarial one).

Modules: ``features`` (what is read), ``mahalanobis`` (the detector), ``roc`` (the metrics),
``adaptive_attack`` (the attack on the detector, by detector), ``study`` (the table), ``verdict`` (its reading).
"""

from __future__ import annotations

from .adaptive_attack import detector_pgd
from .features import DETECTOR_FEATURES
from .mahalanobis import MahalanobisDetector
from .roc import FPR_TARGET, detection_metrics
from .study import ADAPTIVE, DETECTORS, TWIN_CONTROL, detection_analysis
from .verdict import DetectionVerdict, detection_verdict

__all__ = [
    "DETECTOR_FEATURES",
    "MahalanobisDetector",
    "detection_metrics",
    "detector_pgd",
    "detection_analysis",
    "DetectionVerdict",
    "detection_verdict",
    "FPR_TARGET",
    "ADAPTIVE",
    "DETECTORS",
    "TWIN_CONTROL",
]
