"""Transfer: the curve attack crafted on one member of a pair, scored on the other, both ways."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...config.study_config import StudyConfig
from ...names import BASELINE
from ..passes import Sizes, attack_passes
from ..plan import attack_spec, common, curve_attack, implementations
from ..tasks import Task
from .base import MemberParams, Planning, Stage, head, register_stage


@dataclass(frozen=True)
class TransferParams(MemberParams):
    """``member`` is the target; the attack's table, its eps and the subset size (the black-box ones)."""

    source: str
    target: str
    attack: dict[str, Any]
    eps: tuple[float, ...]
    size: int
    implementations: dict[str, str]


def plan(study: Planning, seed: int | None) -> dict[str, Task]:
    """Baseline to twin and twin to baseline for every twin, when ``attacks.transfer``."""
    cfg = study.cfg
    if not cfg.attacks.transfer:
        return {}
    models, curve = study.models(seed), curve_attack(cfg)
    out = {}
    for twin in study.twins:
        for source, target in ((BASELINE, twin), (twin, BASELINE)):
            params = TransferParams(**common(cfg, target, seed, study.env), source=source, target=target,
                                    attack=curve, eps=cfg.attacks.black_box_eps, size=cfg.attacks.black_box_size,
                                    implementations=implementations(curve))
            out[f"{source}>{target}"] = STAGE.task(params, {"source": models[source], "target": models[target]},
                                                   label=f"{source} to {target} s{seed}")
    return out


def run(ctx, p: TransferParams, inputs, folder):
    """The main attack crafted on the source member, scored on the target member."""
    from ...attacks import evaluate_transfer

    x, y = head(ctx, p, p.size)
    frame = evaluate_transfer(inputs["source"], inputs["target"], (x, y), attack_spec(p.attack), p.eps,
                              batch_size=p.batch_size, device=ctx.device, seed=p.seed).summary
    return {"transfer": frame}


def cost(cfg: StudyConfig, sizes: Sizes) -> float:
    """The curve attack on the black-box subset at each black-box budget (scoring the target is cheap)."""
    a = cfg.attacks
    return min(a.black_box_size, sizes.eval) * len(a.black_box_eps) * attack_passes(curve_attack(cfg))


STAGE = register_stage(Stage("transfer", TransferParams, plan, run, order=40, priority=7, cost=cost,
                             tables=(("transfer", "transfer"),)))
