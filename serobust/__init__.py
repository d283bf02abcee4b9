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
from typing import TYPE_CHECKING, Any

from .version import __version__

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    # models
    "ARCHITECTURES": "models",
    "build_model": "models",
    "build_pair": "models",
    "register_model": "models",
    "SqueezeExcite": "models",
    # given pairs (published or saved members)
    "load_pair": "hub",
    "load_member": "hub",
    "parse_member": "hub",
    "member_preprocess": "hub",
    "MemberError": "hub",
    "WeightsNotFoundError": "hub",
    # data
    "DATASETS": "data",
    "DatasetBundle": "data",
    "ImageTensorDataset": "data",
    "load_dataset": "data",
    "BatchAugment": "data",
    "DatasetNotFoundError": "data",
    "DatasetFormatError": "data",
    # training
    "TrainConfig": "training",
    "train": "training",
    # attacks
    "ATTACKS": "attacks",
    "Attack": "attacks",
    "AttackSpec": "attacks",
    "attack": "attacks",
    "register_attack": "attacks",
    "evaluate": "attacks",
    "evaluate_transfer": "attacks",
    "masking_diagnostics": "diagnostics",
    "generate": "attacks",
    # excitation analysis
    "ExcitationProbe": "excitation.probe",
    "register_se_adapter": "excitation.adapters",
    "excitation_shift": "excitation.shift",
    "shift_analysis": "excitation.shift",
    "SHIFT_METRICS": "excitation.shift_metrics",
    "register_shift_metric": "excitation.shift_metrics",
    "feature_sensitivity": "excitation.sensitivity",
    "matched_layers": "excitation.sensitivity",
    "interventions": "excitation.interventions",
    "gate_override": "excitation.interventions",
    "adaptive_attacks": "adaptive",
    "class_profiles": "excitation.profiles",
    "profile_shift": "excitation.profiles",
    # adversarial detection from excitations
    "DETECTOR_FEATURES": "detect",
    "MahalanobisDetector": "detect",
    "detection_metrics": "detect",
    "detector_pgd": "detect",
    "detection_analysis": "detect",
    "detection_verdict": "detect",
    # statistics
    "bootstrap_ci": "stats.intervals",
    "paired_difference": "stats.differences",
    "mcnemar": "stats.paired",
    "robust_accuracy_table": "stats.differences",
    "pooled_mcnemar": "stats.paired",
    "verdict": "stats.verdict",
    "Verdict": "stats.verdict",
    "Criterion": "stats.criterion",
    "crossed_mean_ci": "stats.intervals",
    "informative_budgets": "stats.robust_accuracy",
    "headline_table": "stats.robust_accuracy",
    # study
    "StudyConfig": "config",
    "load_study_config": "config",
    "run_study": "pipeline",
    # utilities
    "parse_eps": "eps",
    "CheckpointError": "io",
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


if TYPE_CHECKING:  # pragma: no cover - static analysers see the eager imports
    from .adaptive import adaptive_attacks  # noqa: F401
    from .attacks import (  # noqa: F401
        ATTACKS,
        Attack,
        AttackSpec,
        attack,
        evaluate,
        evaluate_transfer,
        generate,
        register_attack,
    )
    from .config import StudyConfig, load_study_config  # noqa: F401
    from .data import (  # noqa: F401
        DATASETS,
        BatchAugment,
        DatasetBundle,
        DatasetFormatError,
        DatasetNotFoundError,
        ImageTensorDataset,
        load_dataset,
    )
    from .detect import (  # noqa: F401
        DETECTOR_FEATURES,
        MahalanobisDetector,
        detection_analysis,
        detection_metrics,
        detection_verdict,
        detector_pgd,
    )
    from .diagnostics import masking_diagnostics  # noqa: F401
    from .eps import parse_eps  # noqa: F401
    from .excitation.interventions import gate_override, interventions  # noqa: F401
    from .hub import (  # noqa: F401
        MemberError,
        WeightsNotFoundError,
        load_member,
        load_pair,
        member_preprocess,
        parse_member,
    )
    from .io import CheckpointError  # noqa: F401
    from .excitation.shift import excitation_shift, shift_analysis  # noqa: F401
    from .models import ARCHITECTURES, SqueezeExcite, build_model, build_pair, register_model  # noqa: F401
    from .stats.paired import mcnemar, pooled_mcnemar  # noqa: F401
    from .pipeline import run_study  # noqa: F401
    from .excitation.probe import ExcitationProbe  # noqa: F401
    from .excitation.profiles import class_profiles, profile_shift  # noqa: F401
    from .stats.robust_accuracy import headline_table, informative_budgets  # noqa: F401
    from .excitation.adapters import register_se_adapter  # noqa: F401
    from .excitation.sensitivity import feature_sensitivity, matched_layers  # noqa: F401
    from .excitation.shift_metrics import SHIFT_METRICS, register_shift_metric  # noqa: F401
    from .stats.criterion import Criterion  # noqa: F401
    from .stats.differences import paired_difference, robust_accuracy_table  # noqa: F401
    from .stats.intervals import bootstrap_ci, crossed_mean_ci  # noqa: F401
    from .stats.verdict import Verdict, verdict  # noqa: F401
    from .training import TrainConfig, train  # noqa: F401
