"""Mechanism: interventions on the twin's gates, adaptive attacks and class-profile shift, at one budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...config.study_config import StudyConfig
from ..passes import Sizes, attack_passes
from ..plan import attack_spec, curve_attack, implementations, options
from ..tasks import Task
from .base import MemberParams, Planning, Stage, head, register_stage

#: attacks the stage resolves by name in its own code (adaptive_attacks' rows): their implementations key the task
INTERNAL_ATTACKS = ("excitation_pgd", "frozen_gate_pgd")


@dataclass(frozen=True)
class MechanismOptions:
    """The ``[mechanism]`` section but ``enabled``: ``size`` images at the budget ``eps``; the adaptive
    attacks' ``steps`` and the ``weight`` of their excitation-shift term."""

    size: int
    eps: float
    steps: int
    weight: float


@dataclass(frozen=True)
class MechanismParams(MemberParams):
    """``mechanism``: :class:`MechanismOptions`; ``attack``: the curve attack's table."""

    mechanism: MechanismOptions
    attack: dict[str, Any]
    implementations: dict[str, str]


def plan(study: Planning, seed: int | None) -> dict[str, Task]:
    """One task per twin when ``[mechanism] enabled``."""
    cfg = study.cfg
    if not cfg.mechanism.enabled:
        return {}
    m = options(MechanismOptions, cfg.mechanism, without=("enabled",))
    curve = curve_attack(cfg)
    return study.per_member(STAGE, seed, study.twins, mechanism=m, attack=curve,
                            implementations=implementations(curve, internal=INTERNAL_ATTACKS))


def run(ctx, p: MechanismParams, inputs, folder):
    """Interventions on the twin's gates, adaptive attacks, and class-profile shift, at one budget."""
    from ...attacks import generate
    from ...excitation.adaptive import adaptive_attacks
    from ...excitation.interventions import interventions
    from ...excitation.profiles import profile_shift

    m = p.mechanism
    model = inputs["model"]
    xs, ys = head(ctx, p, m.size)
    # batches of at most attacks.batch_size (memory at ImageNet resolution); min() keeps the 256-image batches,
    # and so the results, of every study whose batch_size is >= 256
    x_adv = generate(model, xs, ys, attack_spec(p.attack), m.eps, seed=p.seed, batch_size=min(256, p.batch_size))
    return {
        "interventions": interventions(model, xs, ys, x_adv, batch_size=p.batch_size),
        "adaptive": adaptive_attacks(model, xs, ys, [m.eps], steps=m.steps, weight=m.weight,
                                     seed=p.seed, batch_size=p.batch_size),
        "profile_shift": profile_shift(model, xs, ys, x_adv, batch_size=p.batch_size),
    }


def cost(cfg: StudyConfig, sizes: Sizes) -> float:
    """The curve attack on its subset, then the interventions and the adaptive attacks' steps."""
    return min(cfg.mechanism.size, sizes.eval) * (attack_passes(curve_attack(cfg)) + 3 * cfg.mechanism.steps)


STAGE = register_stage(Stage("mechanism", MechanismParams, plan, run, order=60, priority=6, cost=cost,
                             tables=(("interventions", "interventions"), ("adaptive", "adaptive"),
                                     ("profile_shift", "profile_shift"))))
