"""The unit of a study's rough cost: image passes, and what a stage's ``cost`` reads to count them.

One image pass is one forward and backward pass of one image; a gradient-free query counts a third. Each
stage declares the passes one of its tasks costs (``Stage.cost(cfg, sizes)``, next to how it plans and runs
the task); :func:`serobust.study.cost.estimate` sums them over the planned tasks. The numbers are orders of
magnitude, not timings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..config.study_config import StudyConfig

__all__ = ["Sizes", "sizes", "attack_passes", "positive"]

#: Training and test split sizes of the data sets whose size is known without loading them.
_SPLITS = {"mnist5k": (4_000, 1_000), "digits": (1_437, 360), "cifar10": (50_000, 10_000),
           "cifar100": (50_000, 10_000), "svhn": (73_257, 26_032), "mnist": (60_000, 10_000),
           "fashion_mnist": (60_000, 10_000)}
_UNKNOWN = (50_000, 10_000)  # an image folder: assume a CIFAR-sized one


@dataclass(frozen=True)
class Sizes:
    """How many images a study trains on (``train``) and attacks at most (``eval``), as far as the config
    tells without loading the data."""

    train: int
    eval: int


def sizes(cfg: StudyConfig) -> Sizes:
    """The training and evaluation set sizes of ``cfg`` (the known split sizes, capped by the config's
    subsets; an unknown data set counts as CIFAR-sized)."""
    n_train, n_test = _SPLITS.get(cfg.data.name, _UNKNOWN)
    return Sizes(train=min(cfg.data.train_size or n_train, n_train), eval=min(cfg.data.eval_size or n_test, n_test))


def attack_passes(table: Mapping[str, Any] | str) -> float:
    """Image passes of one attack (a config table or a name) on one image at one budget (rough)."""
    from .plan import attack_spec

    spec = attack_spec(dict(table) if isinstance(table, Mapping) else {"name": table})
    c = spec.config
    if spec.name == "autoattack":
        return 3_500.0 if c.get("version", "standard") == "standard" else 300.0
    steps = c.get("steps") if isinstance(c.get("steps"), (int, float)) else 1
    restarts = c.get("n_restarts") if isinstance(c.get("n_restarts"), (int, float)) else 1
    queries = c.get("n_queries") if isinstance(c.get("n_queries"), (int, float)) else 0
    return max(1.0, float(steps)) * max(1.0, float(restarts)) + float(queries) / 3


def positive(eps: Iterable[float]) -> int:
    """How many of the budgets ``eps`` attack (are > 0)."""
    return sum(1 for e in eps if e > 0)
