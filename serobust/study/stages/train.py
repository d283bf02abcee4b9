"""Train: one member trained for one seed (the baseline and each SE twin share init and batches)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ...config.study_config import StudyConfig
from ...names import BASELINE
from ...training.config import TrainConfig
from ..passes import Sizes
from ..plan import DataParams, Numerics, data_params
from ..tasks import Task
from .base import Planning, Stage, register_stage


@dataclass(frozen=True)
class ModelParams:
    """A member's architecture: ``arch``, with SE blocks of ``reduction`` (a twin) or without (the baseline),
    and the SE bottleneck's floor ``min_hidden``."""

    arch: str
    se: bool
    reduction: float | None
    min_hidden: int


@dataclass(frozen=True)
class TrainParams:
    """A member's architecture, its training config (which holds the seed), its data (the training subset)
    and the numerical environment."""

    member: str
    model: ModelParams
    train: TrainConfig
    data: DataParams
    numerics: Numerics

    @property
    def seed(self) -> int:
        return self.train.seed


def plan(study: Planning, seed: int | None) -> dict[str, Task]:
    """One train task per member (none for a study of given pairs: those are loaded)."""
    cfg = study.cfg
    if cfg.model.pairs:
        return {}
    reductions = dict(zip(study.twins, cfg.model.reductions))
    out = {}
    for member in study.members:
        model = ModelParams(arch=cfg.model.arch, se=member != BASELINE, reduction=reductions.get(member),
                            min_hidden=cfg.model.min_hidden)
        params = TrainParams(member=member, model=model, train=dataclasses.replace(cfg.train, seed=seed),
                             data=data_params(cfg, seed, eval_subset=False), numerics=study.env)
        out[member] = STAGE.task(params, label=f"{member} s{seed}")
    return out


def run(ctx, p: TrainParams, inputs, folder):
    """One member trained for one seed; ``folder/last.pt`` is written every epoch, so a killed run resumes."""
    from ...training.loop import train

    model = ctx.build_model(p.model, p.data, seed=p.seed)
    _, history = train(model, ctx.dataset(p.data), p.train, checkpoint_dir=folder, device=ctx.device,
                       progress=False)
    return {"history": history}


def cost(cfg: StudyConfig, sizes: Sizes) -> float:
    """Every epoch over the training subset, each image attacked first when training is adversarial."""
    t = cfg.train
    attack = t.adv_steps if t.adversarial == "pgd" else 1 if t.adversarial else 0  # passes per image
    return float(t.epochs * sizes.train * (1 + attack))


STAGE = register_stage(Stage("train", TrainParams, plan, run, order=10, priority=0, makes_model=True,
                             tables=(("history", "history"),), cost=cost))
