"""A study as a graph of tasks, each cached under one key.

A :class:`Task` is one call of a stage (:mod:`serobust.study.stages`) with explicit inputs: ``params``
(the stage's frozen parameter dataclass: the config entries the stage reads, the seed, the member, the
numerical environment) and ``deps`` (the tasks whose outputs it reads, by role: ``{"model": <train task>}``).

Its key is :func:`task_key` of the stage, the stage's version, the params (as ``dataclasses.asdict``
gives them: the one place they become a dict, with the manifest's :attr:`Task.record`) and the keys of
the deps, and nothing else. A stage function gets only ``params`` and its deps' outputs, so everything that can change
a result is in the key by construction: retraining a model (any change of its training params, such as
``model.min_hidden``) changes the train task's key, hence the key of every task that reads the model,
and a result computed on the old model can never be reused for the new one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Task", "task_key", "topological", "canonical"]


def canonical(obj: Any) -> Any:
    """A JSON-able copy with tuples as lists and floats kept exact (``repr`` round-trips)."""
    if isinstance(obj, Mapping):
        return {str(k): canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"task params must be JSON-able, got {type(obj).__name__}: {obj!r}")


def task_key(stage: str, version: int, params: Mapping[str, Any], deps: Mapping[str, str]) -> str:
    """The cache key of a task: a hash of its stage, the stage's version, its params and its deps' keys."""
    payload = {"stage": stage, "version": version, "params": canonical(params), "deps": dict(sorted(deps.items()))}
    text = json.dumps(payload, sort_keys=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class Task:
    """One stage call: ``stage.run(params, outputs of deps)``; ``key`` identifies its result.

    Build tasks with :meth:`serobust.study.stages.Stage.task`, which passes the stage's version.

    Attributes:
        stage: a registered stage name (:data:`serobust.study.stages.STAGES`).
        params: the stage's explicit inputs: an instance of its frozen parameter dataclass.
        deps: role -> task whose output the stage reads.
        label: a human label for progress and errors (not part of the key).
        version: the stage's version (part of the key).
        record: the params as JSON-able values (``dataclasses.asdict``, computed): what the key hashes and
            the manifest records.
        key: :func:`task_key` of the above (computed).
    """

    stage: str
    params: Any
    deps: Mapping[str, Task] = field(default_factory=dict)
    label: str = ""
    version: int = 0
    record: dict[str, Any] = field(init=False, repr=False)
    key: str = field(init=False)

    def __post_init__(self) -> None:
        if self.version < 1:
            raise ValueError(f"task of stage {self.stage!r} without a version: build it with Stage.task")
        fields = dataclasses.asdict(self.params) if dataclasses.is_dataclass(self.params) else self.params
        object.__setattr__(self, "record", canonical(fields))
        object.__setattr__(self, "deps", dict(self.deps))
        dep_keys = {role: dep.key for role, dep in self.deps.items()}
        object.__setattr__(self, "key", task_key(self.stage, self.version, self.record, dep_keys))

    @property
    def slug(self) -> str:
        """A folder-safe name: the label's words and the key."""
        words = re.sub(r"[^A-Za-z0-9_.]+", "-", self.label).strip("-") or self.stage
        return f"{words}-{self.key}"

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and other.key == self.key

    def __repr__(self) -> str:
        return f"Task({self.stage}, {self.label!r}, key={self.key})"


def topological(tasks: Iterable[Task]) -> list[Task]:
    """Every task with its deps, each once, deps before dependants (stable in the given order)."""
    order: list[Task] = []
    seen: set[str] = set()

    def visit(task: Task, path: tuple[str, ...]) -> None:
        if task.key in seen:
            return
        if task.key in path:  # pragma: no cover - keys are hashes of deps, so a cycle cannot be built
            raise ValueError(f"task graph has a cycle through {task}")
        for dep in task.deps.values():
            visit(dep, path + (task.key,))
        seen.add(task.key)
        order.append(task)

    for task in tasks:
        visit(task, ())
    return order
