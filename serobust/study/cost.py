"""A rough size of a study before it runs: its number of tasks and image passes.

:func:`estimate` counts the tasks :func:`serobust.pipeline.plan` makes and, per task, the image passes it
costs (one forward and backward pass of one image; a gradient-free query counts a third). The numbers are
orders of magnitude, not timings: they exist so that ``serobust check`` shows what a config asks for, and
``serobust run`` asks for ``--yes`` before a config starts far more work than any shipped study
(201 seeds, 1,000 budgets or ``steps = 1e11``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..config.study_config import StudyConfig

__all__ = ["StudyCost", "estimate", "MAX_TASKS", "MAX_PASSES"]

#: Above either, ``serobust run`` asks for ``--yes``. The largest shipped configs make at most 156 tasks
#: (cifar10_resnet20_at) and about 4e8 image passes; these limits are about 6x and 10x that.
MAX_TASKS = 1_000
MAX_PASSES = 5e9

#: Training and test split sizes of the data sets whose size is known without loading them.
_SIZES = {"mnist5k": (4_000, 1_000), "digits": (1_437, 360), "cifar10": (50_000, 10_000),
          "cifar100": (50_000, 10_000), "svhn": (73_257, 26_032), "mnist": (60_000, 10_000),
          "fashion_mnist": (60_000, 10_000)}
_UNKNOWN = (50_000, 10_000)  # an image folder: assume a CIFAR-sized one


@dataclass(frozen=True)
class StudyCost:
    tasks: int
    by_stage: dict[str, int]
    passes: float  # image passes (forward + backward of one image), rough

    @property
    def too_big(self) -> bool:
        return self.tasks > MAX_TASKS or self.passes > MAX_PASSES

    def describe(self) -> str:
        stages = ", ".join(f"{n} {stage}" for stage, n in self.by_stage.items())
        return f"{self.tasks} tasks ({stages}), rough cost {self.passes:.2g} image passes"


def _attack_cost(table: Any) -> float:
    """Image passes of one attack on one image at one budget (rough)."""
    from .plan import attack_spec

    spec = attack_spec(table if isinstance(table, dict) else {"name": table})
    c = spec.config
    if spec.name == "autoattack":
        return 3_500.0 if c.get("version", "standard") == "standard" else 300.0
    steps = c.get("steps") if isinstance(c.get("steps"), (int, float)) else 1
    restarts = c.get("n_restarts") if isinstance(c.get("n_restarts"), (int, float)) else 1
    queries = c.get("n_queries") if isinstance(c.get("n_queries"), (int, float)) else 0
    return max(1.0, float(steps)) * max(1.0, float(restarts)) + float(queries) / 3


def _positive(eps: Any) -> int:
    return sum(1 for e in eps if e > 0)


def estimate(cfg: StudyConfig) -> StudyCost:
    """Tasks and rough image passes of ``cfg`` (no data is loaded)."""
    from ..pipeline import plan
    from .plan import attack_table, curve_attack, numerics

    tasks = plan(cfg, numerics(cfg, "cpu"))
    n_train, n_test = _SIZES.get(cfg.data.name, _UNKNOWN)
    n_train = min(cfg.data.train_size or n_train, n_train)
    n_eval = min(cfg.data.eval_size or n_test, n_test)
    a, t = cfg.attacks, cfg.train
    curve = _attack_cost(curve_attack(cfg))
    train = t.epochs * n_train * (1 + (t.adv_steps if t.adversarial == "pgd" else 1 if t.adversarial else 0))
    d = cfg.diagnostics
    per_stage = {
        "train": float(train),
        "evaluate": n_eval * _positive(a.eps) * sum(_attack_cost(w) for w in a.white_box)
        + min(a.black_box_size, n_eval) * len(a.black_box_eps) * sum(_attack_cost(b) for b in a.black_box),
        "autoattack": min(cfg.autoattack.size, n_eval) * len(cfg.autoattack.eps) * _attack_cost(
            attack_table(cfg, "autoattack")),
        "diagnostics": min(d.size, n_eval) * len(d.eps) * (sum(d.steps) + d.steps[0] * sum(d.restarts)
                                                           + d.square_queries / 3
                                                           + sum(_attack_cost(x) for x in d.extra_attacks)),
        "transfer": min(a.black_box_size, n_eval) * len(a.black_box_eps) * curve,
        "probe": min(cfg.probe.size, n_eval) * len(cfg.probe.eps) * 2 * _attack_cost(
            attack_table(cfg, cfg.probe.attack)),
        "mechanism": min(cfg.mechanism.size, n_eval) * (curve + 3 * cfg.mechanism.steps),
        "detect": cfg.detect.fit_size + min(cfg.detect.size, n_eval) * (12 + 2 * cfg.detect.adaptive_steps),
        "examples": cfg.report.examples * (1 + len(cfg.model.reductions)) * curve,
    }
    counts = Counter(task.stage for task in tasks)
    return StudyCost(len(tasks), dict(counts), float(sum(per_stage.get(s, 0.0) * n for s, n in counts.items())))
