"""Examples: a few clean images and each member's adversarial versions with predictions, for the report's grid
(the first seed's models, at the budget where they differ most)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from ...config.study_config import StudyConfig
from ..passes import Sizes, attack_passes
from ..plan import EvalData, Numerics, attack_spec, curve_attack, data_params, implementations
from ..tasks import Task
from .base import Planning, Stage, head, register_stage

#: the attack seed of the example grid (fixed: the grid shows the same images whatever the study's seeds)
EXAMPLE_SEED = 0


@dataclass(frozen=True)
class ExamplesParams:
    """``n`` images at ``eps`` (a budget, or ``"auto"``); ``curve``: the curve attack's label (to find the
    budget from the evaluations); ``members`` in the report's order."""

    seed: int
    data: EvalData
    numerics: Numerics
    n: int
    eps: float | str
    attack: dict[str, Any]
    curve: str
    members: list[str]
    implementations: dict[str, str]


def plan(study: Planning, seed: int | None) -> dict[str, Task]:
    """One task for the study, on the first seed's models and evaluations."""
    cfg = study.cfg
    first = cfg.study.seeds[0]
    models, evals = study.models(first), study.of("evaluate", first)
    curve = curve_attack(cfg)
    params = ExamplesParams(seed=first, data=data_params(cfg, first), numerics=study.env, n=cfg.report.examples,
                            eps=cfg.report.example_eps, attack=curve, curve=attack_spec(curve).label,
                            members=list(models), implementations=implementations(curve))
    deps = {**models, **{f"eval:{m}": t for m, t in evals.items()}}
    return {"examples": STAGE.task(params, deps, label=f"s{first}")}


def _differing_eps(evals: Mapping[str, Mapping[str, Any]], label: str) -> float:
    """The budget > 0 where the members' robust accuracies under ``label`` differ most (ties: the smallest);
    with no difference anywhere, the budget where the first member is nearest 50%."""
    rows = pd.concat([e["summary"].assign(member=m) for m, e in evals.items()])
    rows = rows[(rows["attack"] == label) & (rows["eps"] > 0)]
    if rows.empty:
        raise ValueError(f"no {label!r} rows to choose the example budget from")
    wide = rows.pivot_table(index="eps", columns="member", values="robust_acc")
    spread = (wide.max(axis=1) - wide.min(axis=1)).round(12)
    if spread.max() > 0:
        return float(spread.idxmax())
    return float((wide.iloc[:, 0] - 0.5).abs().idxmin())


def run(ctx, p: ExamplesParams, inputs, folder):
    """A few clean images and each member's adversarial versions with predictions, for the report's grid.

    With ``eps = "auto"`` the budget is the one where the members' robust accuracies (first seed, the
    curve attack) differ most, so the grid shows what the study found, not a budget where all fail."""
    from ...attacks import generate

    xs, ys = head(ctx, p, p.n)
    evals = {m: inputs[f"eval:{m}"] for m in p.members}
    eps = _differing_eps(evals, p.curve) if p.eps == "auto" else p.eps
    spec = attack_spec(p.attack)
    out: dict[str, Any] = {"x": xs.numpy(), "y": ys.numpy(), "meta": {"eps": eps, "attack": spec.label}}
    for member in p.members:
        model = inputs[member]
        x_adv = generate(model, xs, ys, spec, eps, seed=EXAMPLE_SEED)
        with torch.no_grad():
            out[f"{member}.pred_clean"] = model(xs.to(ctx.device)).argmax(1).cpu().numpy()
            out[f"{member}.pred_adv"] = model(x_adv.to(ctx.device)).argmax(1).cpu().numpy()
        out[f"{member}.x_adv"] = x_adv.cpu().numpy().astype(np.float32)
    return out


def cost(cfg: StudyConfig, sizes: Sizes) -> float:
    """The curve attack on each shown image, once per member."""
    return cfg.report.examples * (1 + len(cfg.model.reductions)) * attack_passes(curve_attack(cfg))


STAGE = register_stage(Stage("examples", ExamplesParams, plan, run, order=80, version=2, priority=8,
                             per_seed=False, cost=cost))
