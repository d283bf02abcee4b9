"""Detect: do the twin's excitations signal the attack beyond pooled features of the twin and the baseline?"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ...names import BASELINE
from ..plan import common, implementations
from ..tasks import Task
from .base import MemberParams, Planning, Stage, head, register_stage

#: attacks the detector resolves by name in its own code (the adaptive attack included)
INTERNAL_ATTACKS = ("fgsm", "pgd", "detector_pgd")

#: the seed of the detector's fit subset of the training set (fixed: the same images for every task)
FIT_SEED = 0


@dataclass(frozen=True)
class DetectParams(MemberParams):
    """``detect``: the ``[detect]`` section but ``enabled``, ``margin`` and ``level`` (the verdict's thresholds
    do not change the measurement)."""

    detect: dict[str, Any]
    implementations: dict[str, str]


def plan(study: Planning, seed: int | None) -> dict[str, Task]:
    """One task per twin, reading the twin and the baseline, when ``[detect] enabled``."""
    cfg = study.cfg
    if not cfg.detect.enabled:
        return {}
    d = dataclasses.asdict(cfg.detect)
    for key in ("enabled", "margin", "level"):
        d.pop(key)
    models = study.models(seed)
    return {t: STAGE.task(DetectParams(**common(cfg, t, seed, study.env), detect=d,
                                       implementations=implementations(internal=INTERNAL_ATTACKS)),
                          {"model": models[t], "baseline": models[BASELINE]}, label=f"{t} s{seed}")
            for t in study.twins}


def run(ctx, p: DetectParams, inputs, folder):
    """The excitation detector on the twin vs pooled-feature controls on the twin and the baseline, adaptive
    attack too."""
    from ...detect import detection_analysis

    d = p.detect
    fit = ctx.dataset(p.data).train.subset(d["fit_size"], seed=FIT_SEED)
    x_fit, y_fit = fit.tensors()
    x, y = head(ctx, p, d["size"])
    frame = detection_analysis(inputs["model"], inputs["baseline"], x_fit, y_fit, x, y, eps=d["eps"],
                               adaptive_steps=d["adaptive_steps"], adaptive_weight=list(d["adaptive_weights"]),
                               seed=p.seed, batch_size=p.batch_size)
    return {"detection": frame}


# version 2: the within-twin control, adaptive weights, no random start
STAGE = register_stage(Stage("detect", DetectParams, plan, run, order=70, version=2, priority=4,
                             tables=(("detection", "detection"),)))
