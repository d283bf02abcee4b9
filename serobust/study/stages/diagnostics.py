"""Diagnostics: the gradient-masking checks (Carlini et al. 2019) of each member, with transfer from the pair's
other member."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...config.study_config import StudyConfig
from ...names import BASELINE
from ..passes import Sizes, attack_passes
from ..plan import attack_spec, implementations, options
from ..tasks import Task
from .base import MemberParams, Planning, Stage, head, register_stage

#: attacks the checks resolve by name in their own code (beyond ``extra_attacks``)
INTERNAL_ATTACKS = ("pgd", "fgsm", "square", "noise", "apgd_ce", "pgd_l2")


@dataclass(frozen=True)
class DiagnosticsOptions:
    """The ``[diagnostics]`` section but ``enabled`` and ``seeds`` (which plan, not compute): ``size`` images
    checked at ``eps``, the PGD ``steps`` and ``restarts`` compared, the Square ``square_queries``, the
    ``large_eps`` where accuracy must be near 0, the ``extra_attacks`` (option tables) and their ``l2_eps``."""

    size: int
    eps: tuple[float, ...]
    steps: tuple[int, ...]
    restarts: tuple[int, ...]
    square_queries: int
    large_eps: float
    extra_attacks: tuple[dict[str, Any], ...]
    l2_eps: tuple[float, ...]


@dataclass(frozen=True)
class DiagnosticsParams(MemberParams):
    """``diagnostics``: :class:`DiagnosticsOptions`."""

    diagnostics: DiagnosticsOptions
    implementations: dict[str, str]


def plan(study: Planning, seed: int | None) -> dict[str, Task]:
    """One task per member on the checked seeds (the first ``diagnostics.seeds``, all when 0)."""
    cfg = study.cfg
    seeds = list(cfg.study.seeds)
    if not cfg.diagnostics.enabled or seed not in seeds[: cfg.diagnostics.seeds or len(seeds)]:
        return {}
    d = options(DiagnosticsOptions, cfg.diagnostics, without=("enabled", "seeds"))
    impl = implementations(*cfg.diagnostics.extra_attacks, internal=INTERNAL_ATTACKS)
    # the masking checks' transfer source: the pair's other member
    return study.per_member(STAGE, seed, study.members, diagnostics=d, implementations=impl,
                            others=lambda m: {"other": study.twins[0] if m == BASELINE else BASELINE})


def run(ctx, p: DiagnosticsParams, inputs, folder):
    """The gradient-masking checks of one member, with transfer from the pair's other member."""
    from ...diagnostics import masking_diagnostics

    d = p.diagnostics
    x, y = head(ctx, p, d.size)
    checks = masking_diagnostics(
        inputs["model"], (x, y), d.eps, attack_steps=tuple(d.steps), restarts=tuple(d.restarts),
        large_eps=d.large_eps, transfer_from=inputs["other"], square_queries=d.square_queries,
        extra_attacks=[attack_spec(dict(t)) for t in d.extra_attacks], l2_eps=d.l2_eps or None,
        batch_size=p.batch_size, device=ctx.device, seed=p.seed)
    return {"checks": checks}


def cost(cfg: StudyConfig, sizes: Sizes) -> float:
    """On its subset at each budget: PGD at each step count, the restarts, Square and the extra attacks."""
    d = cfg.diagnostics
    return min(d.size, sizes.eval) * len(d.eps) * (sum(d.steps) + d.steps[0] * sum(d.restarts) + d.square_queries / 3
                                                   + sum(attack_passes(x) for x in d.extra_attacks))


STAGE = register_stage(Stage("diagnostics", DiagnosticsParams, plan, run, order=30, priority=2, cost=cost,
                             tables=(("diagnostics", "checks"),)))
