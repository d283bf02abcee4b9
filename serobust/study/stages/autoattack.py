"""AutoAttack: its published budgets on a subset, which component fooled each image, and the check that it
breaks every image the curve attack (PGD) breaks on the same images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from ...config.study_config import StudyConfig
from ..passes import Sizes, attack_passes
from ..plan import attack_spec, attack_table, curve_attack, implementations, options
from ..tasks import Task
from .base import MemberParams, Planning, Stage, head, register_stage


@dataclass(frozen=True)
class AutoAttackBudgets:
    """The ``[autoattack]`` entries a task reads: its budgets ``eps`` and the subset ``size`` it attacks
    (the version enters through the attack's table)."""

    eps: tuple[float, ...]
    size: int


@dataclass(frozen=True)
class AutoAttackParams(MemberParams):
    """``autoattack``: its budgets and subset; ``attack``: its table; ``pgd``: the curve attack's."""

    autoattack: AutoAttackBudgets
    attack: dict[str, Any]
    pgd: dict[str, Any]
    implementations: dict[str, str]


def plan(study: Planning, seed: int | None) -> dict[str, Task]:
    """One task per member when ``[autoattack] enabled``."""
    cfg = study.cfg
    if not cfg.autoattack.enabled:
        return {}
    a = options(AutoAttackBudgets, cfg.autoattack, without=("enabled", "version"))
    curve = curve_attack(cfg)  # the per-image check: AutoAttack breaks every image PGD breaks
    return study.per_member(STAGE, seed, study.members, autoattack=a, attack=attack_table(cfg, "autoattack"),
                            pgd=curve, implementations=implementations("autoattack", curve))


def run(ctx, p: AutoAttackParams, inputs, folder):
    """AutoAttack with its published budgets on a subset; per example, which component fooled it; and the
    masking check that AutoAttack breaks every image the curve attack (PGD) breaks on the same images."""
    from ...attacks import evaluate
    from ...attacks.autoattack import components
    from ...diagnostics import per_image_not_weaker

    a = p.autoattack
    x, y = head(ctx, p, a.size)
    spec, pgd = attack_spec(p.attack), attack_spec(p.pgd)
    result = evaluate(inputs["model"], (x, y), [spec, pgd], [0.0, *a.eps], batch_size=p.batch_size,
                   device=ctx.device, per_example=True, seed=p.seed, progress=False, input_gradients=False)
    summary, per_example = result.summary, result.per_example
    checks = per_image_not_weaker(per_example, strong=spec.label, reference=pgd.label,
                                  check="autoattack_not_weaker_than_pgd")
    names = components(spec.config, ctx.dataset(p.data).num_classes)
    summary = summary[summary["attack"] == spec.label]  # the AutoAttack rows only: PGD's curve is elsewhere
    per_example = per_example[per_example["attack"] == spec.label]
    return {"summary": summary, "per_example": per_example, "components": _components(per_example, spec.label, names),
            "checks": checks}


def _components(per_example: pd.DataFrame, label: str, names: list[str]) -> pd.DataFrame:
    """Robust accuracy after each AutoAttack component in turn (cumulative), per eps, as AutoAttack reports it."""
    rows = []
    for eps, sub in per_example[(per_example["attack"] == label) & (per_example["eps"] > 0)].groupby("eps"):
        clean = sub["clean_correct"].to_numpy(bool)
        fooled_by = sub["component"].to_numpy()
        for k, name in enumerate(names):
            robust = clean & ((fooled_by < 0) | (fooled_by > k))
            rows.append({"eps": eps, "step": k + 1, "component": name, "robust_acc": float(robust.mean()),
                         "n": len(sub)})
    return pd.DataFrame(rows)


def cost(cfg: StudyConfig, sizes: Sizes) -> float:
    """AutoAttack on its subset at each of its budgets (the PGD check on the same images is small beside it)."""
    aa = cfg.autoattack
    return min(aa.size, sizes.eval) * len(aa.eps) * attack_passes(attack_table(cfg, "autoattack"))


# version 2: PGD on the same images, and the per-image check against it
STAGE = register_stage(Stage("autoattack", AutoAttackParams, plan, run, order=25, version=2, priority=1, cost=cost,
                             tables=(("robust", "summary"), ("per_example", "per_example"),
                                     ("autoattack", "components"), ("diagnostics", "checks"))))
