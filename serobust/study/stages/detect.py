"""Detect: do the twin's excitations signal the attack beyond pooled features of the twin and the baseline?"""

from __future__ import annotations

from dataclasses import dataclass

from ...config.study_config import StudyConfig
from ...names import BASELINE
from ..passes import Sizes
from ..plan import implementations, options
from ..tasks import Task
from .base import MemberParams, Planning, Stage, head, register_stage

#: attacks the detector resolves by name in its own code (the adaptive attack included)
INTERNAL_ATTACKS = ("fgsm", "pgd", "detector_pgd")

#: the seed of the detector's fit subset of the training set (fixed: the same images for every task)
FIT_SEED = 0


@dataclass(frozen=True)
class DetectOptions:
    """The ``[detect]`` section but ``enabled``, ``margin`` and ``level`` (the verdict's thresholds do not
    change the measurement): ``size`` images scored, ``fit_size`` training images fitted, the budget ``eps``,
    the adaptive attack's ``adaptive_steps`` and ``adaptive_weights``."""

    size: int
    fit_size: int
    eps: float
    adaptive_steps: int
    adaptive_weights: tuple[float, ...]


@dataclass(frozen=True)
class DetectParams(MemberParams):
    """``detect``: :class:`DetectOptions`."""

    detect: DetectOptions
    implementations: dict[str, str]


def plan(study: Planning, seed: int | None) -> dict[str, Task]:
    """One task per twin, reading the twin and the baseline, when ``[detect] enabled``."""
    cfg = study.cfg
    if not cfg.detect.enabled:
        return {}
    d = options(DetectOptions, cfg.detect, without=("enabled", "margin", "level"))
    return study.per_member(STAGE, seed, study.twins, others=lambda t: {"baseline": BASELINE}, detect=d,
                            implementations=implementations(internal=INTERNAL_ATTACKS))


def run(ctx, p: DetectParams, inputs, folder):
    """The excitation detector on the twin vs pooled-feature controls on the twin and the baseline, adaptive
    attack too."""
    from ...detect import detection_analysis

    d = p.detect
    fit = ctx.dataset(p.data).train.subset(d.fit_size, seed=FIT_SEED)
    x_fit, y_fit = fit.tensors()
    x, y = head(ctx, p, d.size)
    frame = detection_analysis(inputs["model"], inputs["baseline"], x_fit, y_fit, x, y, eps=d.eps,
                               adaptive_steps=d.adaptive_steps, adaptive_weight=list(d.adaptive_weights),
                               seed=p.seed, batch_size=p.batch_size)
    return {"detection": frame}


def cost(cfg: StudyConfig, sizes: Sizes) -> float:
    """The fit over its training images, then FGSM, PGD, the controls and the adaptive attack per image."""
    d = cfg.detect
    return d.fit_size + min(d.size, sizes.eval) * (12 + 2 * d.adaptive_steps)


# version 2: the within-twin control, adaptive weights, no random start
STAGE = register_stage(Stage("detect", DetectParams, plan, run, order=70, version=2, priority=4, cost=cost,
                             tables=(("detection", "detection"),)))
