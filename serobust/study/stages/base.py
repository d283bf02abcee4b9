"""What a study stage is, and the registry the engine reads (see DESIGN.md, "Adding a stage").

A stage is one module of :mod:`serobust.study.stages` that registers one :class:`Stage`: its typed parameter
dataclass (frozen, its entries frozen dataclasses too: :class:`~serobust.study.plan.DataParams`,
:class:`~serobust.study.plan.Numerics`, the stage's own options; ``dataclasses.asdict`` of it is what the
task key hashes and the manifest records), how it plans its tasks from the config (``plan(study, seed)``,
with :class:`Planning` holding what the earlier stages planned), how one task runs
(``run(ctx, params, inputs, folder)``), its version, its priority for the executors, the study tables its
outputs feed and its rough cost (``cost(cfg, sizes)``, image passes per task; 0 when it declares none).

A run function gets its typed params and its deps' outputs by role (a model for a train or load dep, the
stored parts otherwise), and ``folder``, the task's own folder. It returns a dict of parts (pandas frames,
numpy arrays, JSON-able values) that the store writes. It must not read anything else: whatever changes
its result has to be in the params or in a dep, so that the task key covers it. Bump ``version`` when the
computation changes, so cached results of the old code are not reused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...config.study_config import StudyConfig, register_section
from ..passes import Sizes
from ..plan import EvalData, Numerics, common
from ..plan import members as study_members
from ..tasks import Task

__all__ = ["Stage", "STAGES", "register_stage", "ordered", "Planning", "MemberParams", "head"]


@dataclass(frozen=True)
class Stage:
    """A registered stage.

    Attributes:
        name: the stage's name (part of every task key and of its folder's manifest).
        params: the frozen dataclass of one task's params.
        plan: ``plan(study: Planning, seed: int | None) -> {role: Task}``: this stage's tasks for one seed
            (``per_seed``) or for the whole study (``seed`` None); ``{}`` when the config disables it.
        run: ``run(ctx, params, inputs, folder) -> parts``: one task.
        order: where its tasks stand in the study's reading order (:func:`serobust.pipeline.plan`).
        version: part of every task key; bump it when the computation changes.
        priority: which ready task an executor starts first (lower first: long tasks others wait for).
        tables: ``(study table, output part)`` pairs: each part is stacked into that study table, each row
            tagged with the task's seed and member (:func:`serobust.study.results.collect`).
        makes_model: its output is a model (train, load): a dep on it hands the model, not stored parts.
        per_seed: planned once per seed (else once for the study, after every seed).
        section: the frozen dataclass of the config section ``[<name>]`` it reads, when the built-in config
            has none for it (read with ``study.cfg.section(name)``; unknown keys in it are errors).
        cost: ``cost(cfg, sizes) -> float``: the rough image passes one of its tasks costs
            (:mod:`serobust.study.passes`); ``None`` counts 0 (:func:`serobust.study.cost.estimate`).
    """

    name: str
    params: type
    plan: Callable[[Planning, int | None], dict[str, Task]]
    run: Callable[[Any, Any, Mapping[str, Any], Path], dict[str, Any]]
    order: int
    version: int = 1
    priority: int = 50
    tables: tuple[tuple[str, str], ...] = ()
    makes_model: bool = False
    per_seed: bool = True
    section: type | None = None
    cost: Callable[[StudyConfig, Sizes], float] | None = None

    def passes(self, cfg: StudyConfig, sizes: Sizes) -> float:
        """The rough image passes of one of its tasks for ``cfg`` (0 when it declares no cost)."""
        return float(self.cost(cfg, sizes)) if self.cost is not None else 0.0

    def task(self, params: Any, deps: Mapping[str, Task] | None = None, *, label: str = "") -> Task:
        """A task of this stage (``params`` an instance of :attr:`params`)."""
        if not isinstance(params, self.params):
            raise TypeError(f"stage {self.name!r} takes {self.params.__name__} params, got {type(params).__name__}")
        return Task(self.name, params, deps or {}, label=label, version=self.version)


STAGES: dict[str, Stage] = {}


@dataclass(frozen=True)
class MemberParams:
    """The params every stage that attacks one member shares (:func:`serobust.study.plan.common`)."""

    member: str
    seed: int
    data: EvalData
    numerics: Numerics
    batch_size: int


def head(ctx: Any, p: Any, n: int) -> tuple[Any, Any]:
    """The first ``n`` images of the task's evaluation set (``p.data``)."""
    x, y = ctx.eval_set(p.data)
    return x[:n], y[:n]


def register_stage(stage: Stage) -> Stage:
    """Add ``stage`` to :data:`STAGES` (a module of :mod:`serobust.study.stages` calls this at import)."""
    if stage.name in STAGES and STAGES[stage.name] is not stage:
        raise ValueError(f"stage {stage.name!r} is already registered")
    if not (dataclasses.is_dataclass(stage.params) and stage.params.__dataclass_params__.frozen):
        raise TypeError(f"stage {stage.name!r}: params must be a frozen dataclass, got {stage.params!r}")
    if stage.section is not None:
        register_section(stage.name, stage.section)
    STAGES[stage.name] = stage
    return stage


def ordered(*, per_seed: bool) -> list[Stage]:
    """The registered stages planned per seed (or once per study), in reading order."""
    return sorted((s for s in STAGES.values() if s.per_seed == per_seed), key=lambda s: (s.order, s.name))


@dataclass
class Planning:
    """A study being planned: the config, the numerical environment, and every stage's tasks so far.

    ``planned[(seed, stage)]`` is what that stage planned for that seed (``seed`` None: a study-wide stage)."""

    cfg: StudyConfig
    env: Numerics
    tasks: list[Task] = field(default_factory=list)
    planned: dict[tuple[int | None, str], dict[str, Task]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.env, Mapping):  # {"device": ..., "threads": ...}, as a caller may write it
            self.env = Numerics(**self.env)
        if not isinstance(self.env, Numerics):
            raise TypeError(f"plan a study with the Numerics of serobust.study.plan.numerics, got {self.env!r}")

    @property
    def members(self) -> list[str]:
        """``baseline`` then the SE members (:func:`serobust.study.plan.members`)."""
        return study_members(self.cfg)

    @property
    def twins(self) -> list[str]:
        return self.members[1:]

    def of(self, stage: str, seed: int | None) -> dict[str, Task]:
        """What ``stage`` planned for ``seed`` (``{}`` when it planned nothing)."""
        return self.planned.get((seed, stage), {})

    def models(self, seed: int) -> dict[str, Task]:
        """Member -> the task that makes its model for ``seed`` (a train or a load task)."""
        return {role: t for (s, name), tasks in self.planned.items() if s == seed and STAGES[name].makes_model
                for role, t in tasks.items()}

    def per_member(self, stage: Stage, seed: int, members: Sequence[str], *,
                   others: Callable[[str], Mapping[str, str]] | None = None, **fields: Any) -> dict[str, Task]:
        """One task of ``stage`` per member, as the stages that attack a member plan them: its params the
        :class:`MemberParams` fields (:func:`serobust.study.plan.common`) and ``fields``; its deps the member's
        model (role ``model``) and ``others(member)``, ``{role: member}`` of further models it reads."""
        models, others = self.models(seed), others or (lambda m: {})
        return {m: stage.task(stage.params(**common(self.cfg, m, seed, self.env), **fields),
                              {"model": models[m], **{role: models[o] for role, o in others(m).items()}},
                              label=f"{m} s{seed}") for m in members}

    def add(self, stage: Stage, seed: int | None) -> None:
        """Plan ``stage`` for ``seed`` and append its tasks."""
        tasks = stage.plan(self, seed)
        self.planned[seed, stage.name] = tasks
        self.tasks += tasks.values()
