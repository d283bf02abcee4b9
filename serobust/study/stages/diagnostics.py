"""Diagnostics: the gradient-masking checks (Carlini et al. 2019) of each member, with transfer from the pair's
other member."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ...names import BASELINE
from ..plan import attack_spec, common, implementations
from ..tasks import Task
from .base import MemberParams, Planning, Stage, head, register_stage

#: attacks the checks resolve by name in their own code (beyond ``extra_attacks``)
INTERNAL_ATTACKS = ("pgd", "fgsm", "square", "noise", "apgd_ce", "pgd_l2")


@dataclass(frozen=True)
class DiagnosticsParams(MemberParams):
    """``diagnostics``: the ``[diagnostics]`` section but ``enabled`` and ``seeds`` (which plan, not compute)."""

    diagnostics: dict[str, Any]
    implementations: dict[str, str]


def plan(study: Planning, seed: int | None) -> dict[str, Task]:
    """One task per member on the checked seeds (the first ``diagnostics.seeds``, all when 0)."""
    cfg = study.cfg
    seeds = list(cfg.study.seeds)
    if not cfg.diagnostics.enabled or seed not in seeds[: cfg.diagnostics.seeds or len(seeds)]:
        return {}
    d = dataclasses.asdict(cfg.diagnostics)
    d.pop("enabled")
    d.pop("seeds")
    models = study.models(seed)
    impl = implementations(*cfg.diagnostics.extra_attacks, internal=INTERNAL_ATTACKS)
    return {m: STAGE.task(DiagnosticsParams(**common(cfg, m, seed, study.env), diagnostics=d, implementations=impl),
                          {"model": models[m], "other": models[study.twins[0] if m == BASELINE else BASELINE]},
                          label=f"{m} s{seed}") for m in study.members}


def run(ctx, p: DiagnosticsParams, inputs, folder):
    """The gradient-masking checks of one member, with transfer from the pair's other member."""
    from ...diagnostics import masking_diagnostics

    d = p.diagnostics
    x, y = head(ctx, p, d["size"])
    checks = masking_diagnostics(
        inputs["model"], (x, y), d["eps"], attack_steps=tuple(d["steps"]), restarts=tuple(d["restarts"]),
        large_eps=d["large_eps"], transfer_from=inputs["other"], square_queries=d["square_queries"],
        extra_attacks=[attack_spec(dict(t)) for t in d["extra_attacks"]], l2_eps=d["l2_eps"] or None,
        batch_size=p.batch_size, device=ctx.device, seed=p.seed)
    return {"checks": checks}


STAGE = register_stage(Stage("diagnostics", DiagnosticsParams, plan, run, order=30, priority=2,
                             tables=(("diagnostics", "checks"),)))
