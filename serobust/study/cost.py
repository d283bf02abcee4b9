"""A rough size of a study before it runs: its number of tasks and image passes.

:func:`estimate` counts the tasks :func:`serobust.pipeline.plan` makes and sums, over them, the image passes
each costs as its stage declares (``Stage.cost``, see :mod:`serobust.study.passes`; a stage that declares
none costs 0). The numbers are orders of magnitude, not timings: they exist so that ``serobust check``
shows what a config asks for, and ``serobust run`` asks for ``--yes`` before a config starts far more work
than any shipped study (201 seeds, 1,000 budgets or ``steps = 1e11``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..config.study_config import StudyConfig

__all__ = ["StudyCost", "estimate", "MAX_TASKS", "MAX_PASSES"]

#: Above either, ``serobust run`` asks for ``--yes``. The largest shipped configs make at most 156 tasks
#: (cifar10_resnet20_at) and about 4e8 image passes; these limits are about 6x and 10x that.
MAX_TASKS = 1_000
MAX_PASSES = 5e9


@dataclass(frozen=True)
class StudyCost:
    """A study's planned tasks (in all and per stage, in planning order) and their rough image passes."""

    tasks: int
    by_stage: dict[str, int]
    passes: float  # image passes (forward + backward of one image), rough

    @property
    def too_big(self) -> bool:
        return self.tasks > MAX_TASKS or self.passes > MAX_PASSES

    def describe(self) -> str:
        stages = ", ".join(f"{n} {stage}" for stage, n in self.by_stage.items())
        return f"{self.tasks} tasks ({stages}), rough cost {self.passes:.2g} image passes"


def estimate(cfg: StudyConfig) -> StudyCost:
    """Tasks and rough image passes of ``cfg`` (no data is loaded): each stage's task count times the passes
    one of its tasks costs (``Stage.passes``)."""
    from ..pipeline import plan
    from .passes import sizes
    from .plan import numerics
    from .stages import STAGES

    tasks = plan(cfg, numerics(cfg, "cpu"))
    n = sizes(cfg)
    counts = Counter(task.stage for task in tasks)
    return StudyCost(len(tasks), dict(counts), float(sum(STAGES[s].passes(cfg, n) * k for s, k in counts.items())))
