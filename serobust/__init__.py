"""serobust: adversarial-robustness studies of Squeeze-and-Excitation networks.

The public API (everything a notebook needs)::

    import serobust as sr
    data = sr.load_dataset("mnist5k")
    base, se = sr.build_pair("cnn", num_classes=10, in_channels=1, seed=0, mean=data.mean, std=data.std)
    base, hist = sr.train(base, data, sr.TrainConfig(epochs=6))
    frame = sr.evaluate(base, data.test, ["fgsm", "pgd"], eps=[0, 0.05, 0.1, 0.2, 0.3]).summary

Names resolve lazily (PEP 562), so ``import serobust`` stays cheap and each module loads on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .version import __version__

#: The face, listed once: public name -> the module that defines it (registries: their package, which fills
#: them on import). The short list a notebook needs; everything else is imported from its module
#: (``from serobust.hub import load_member``, ``from serobust.stats.verdict import Verdict``).
_EXPORTS: dict[str, str] = {
    # models and given pairs
    "ARCHITECTURES": "models",
    "build_model": "models.registry",
    "build_pair": "models.registry",
    "register_model": "models.registry",
    "load_pair": "hub.load",
    # data and training
    "DATASETS": "data",
    "load_dataset": "data",
    "TrainConfig": "training.config",
    "train": "training.loop",
    # attacks and their checks
    "ATTACKS": "attacks",
    "Attack": "attacks.base",
    "attack": "attacks.base",
    "register_attack": "attacks.base",
    "evaluate": "attacks.harness",
    "generate": "attacks.harness",
    "evaluate_transfer": "attacks.transfer",
    "masking_diagnostics": "diagnostics",
    # the excitation analysis
    "ExcitationProbe": "excitation.probe",
    "register_se_adapter": "excitation.adapters",
    "excitation_shift": "excitation.shift",
    "shift_analysis": "excitation.shift",
    "register_shift_metric": "excitation.shift_metrics",
    "feature_sensitivity": "excitation.sensitivity",
    "matched_layers": "excitation.sensitivity",
    "interventions": "excitation.interventions",
    "adaptive_attacks": "excitation.adaptive",
    "class_profiles": "excitation.profiles",
    "profile_shift": "excitation.profiles",
    "detection_analysis": "detect.study",
    # statistics and the verdict
    "bootstrap_ci": "stats.intervals",
    "crossed_mean_ci": "stats.intervals",
    "paired_difference": "stats.differences",
    "robust_accuracy_table": "stats.differences",
    "mcnemar": "stats.paired",
    "informative_budgets": "stats.robust_accuracy",
    "headline_table": "stats.robust_accuracy",
    "verdict": "stats.verdict",
    # studies
    "load_study_config": "config.load",
    "run_study": "pipeline",
    # utilities
    "parse_eps": "eps",
    "SerobustError": "errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'serobust' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
