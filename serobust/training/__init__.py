"""Training a classifier on a :class:`~serobust.data.DatasetBundle`: the package face of :func:`train`.

- :mod:`.config`: :class:`TrainConfig`, the hyper-parameters (frozen, validated);
- :mod:`.schedule`: the learning rate of a global step, the epoch's generators and example order;
- :mod:`.precision`: bf16 autocast on CUDA; :mod:`.adversarial`: the PGD-AT / FGSM-RS inner attack;
- :mod:`.step`: one SGD step, eager or as one CUDA graph; :mod:`.checkpoint`: save and resume;
- :mod:`.loop`: :func:`train` and :func:`evaluate_accuracy`.
"""

from __future__ import annotations

from .config import TrainConfig
from .loop import evaluate_accuracy, train

__all__ = ["TrainConfig", "train", "evaluate_accuracy"]
