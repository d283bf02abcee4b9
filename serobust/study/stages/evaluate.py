"""Evaluate: each member under the white-box attacks at every eps (per example), then the black-box checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from ...config.study_config import StudyConfig
from ..passes import Sizes, attack_passes, positive
from ..plan import attack_spec, implementations, options
from ..tasks import Task
from .base import MemberParams, Planning, Stage, head, register_stage


@dataclass(frozen=True)
class EvaluateAttacks:
    """The ``[attacks]`` entries the evaluation reads: the white-box tables (option mappings) run at every
    ``eps``, the black-box tables run at ``black_box_eps`` on the first ``black_box_size`` images, and the
    batch size."""

    white_box: tuple[dict[str, Any], ...]
    eps: tuple[float, ...]
    black_box: tuple[dict[str, Any], ...]
    black_box_eps: tuple[float, ...]
    black_box_size: int
    batch_size: int


@dataclass(frozen=True)
class EvaluateParams(MemberParams):
    """``attacks``: what the evaluation runs (:class:`EvaluateAttacks`)."""

    attacks: EvaluateAttacks
    implementations: dict[str, str]


def plan(study: Planning, seed: int | None) -> dict[str, Task]:
    """One task per member, reading its model."""
    a = study.cfg.attacks
    # main decides the verdict's attack and transfer whether that stage runs: neither changes an evaluation
    attacks = options(EvaluateAttacks, a, without=("main", "transfer"))
    return study.per_member(STAGE, seed, study.members, attacks=attacks,
                            implementations=implementations(*a.white_box, *a.black_box))


def run(ctx, p: EvaluateParams, inputs, folder):
    """White-box attacks at every eps (per example too), then the black-box checks on a subset."""
    from ...attacks import evaluate

    a = p.attacks
    model = inputs["model"]
    x, y = ctx.eval_set(p.data)
    white_box = evaluate(model, (x, y), [attack_spec(t) for t in a.white_box], a.eps, batch_size=a.batch_size,
                         device=ctx.device, per_example=True, seed=p.seed, progress=False)
    if a.black_box:
        xb, yb = head(ctx, p, a.black_box_size)
        blackbox = evaluate(model, (xb, yb), [attack_spec(t) for t in a.black_box], a.black_box_eps,
                            batch_size=a.batch_size, device=ctx.device, seed=p.seed, progress=False).summary
    else:  # black_box = []: no gradient-free check asked for (the report says so)
        from ...attacks import SUMMARY_COLUMNS

        blackbox = pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    return {"summary": white_box.summary, "per_example": white_box.per_example, "blackbox": blackbox}


def cost(cfg: StudyConfig, sizes: Sizes) -> float:
    """Every white-box attack at every budget > 0 on the evaluation set, every black-box one on its subset."""
    a = cfg.attacks
    return (sizes.eval * positive(a.eps) * sum(attack_passes(w) for w in a.white_box)
            + min(a.black_box_size, sizes.eval) * len(a.black_box_eps) * sum(attack_passes(b) for b in a.black_box))


STAGE = register_stage(Stage("evaluate", EvaluateParams, plan, run, order=20, priority=3, cost=cost,
                             tables=(("robust", "summary"), ("per_example", "per_example"), ("blackbox", "blackbox"))))
