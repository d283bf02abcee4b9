"""What a process keeps between the tasks it runs: loaded data sets, trained models, its device.

Every executor runs a task the same way, :func:`run_task`, in whichever process it has (the driver, a
local worker process, a Ray worker). The per-process :class:`TaskContext` caches what is expensive to
load and cheap to share (data sets by their parameters, models by their train task's key), so a worker
that runs ten tasks on one data set loads it once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import SerobustError
from ..io import CheckpointError, load_checkpoint
from .plan import DataParams, EvalData, PairData
from .store import StudyStore
from .tasks import Task

if TYPE_CHECKING:
    from .stages.train import ModelParams

__all__ = ["WorkerEnv", "TaskContext", "run_task", "check_implementations", "AttackImplementationError"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerEnv:
    """How a process runs tasks: the study folder and the device (``"cpu"``, ``"cuda"`` or ``"cuda:1"``).

    ``"cuda"`` is the process's current CUDA device (a pool worker sees only its own GPU); an explicit index
    is honoured as given. The CPU thread count of each task is one of its params (see
    :func:`serobust.study.plan.numerics`).
    """

    root: str
    device: str


class TaskContext:
    """Per-process caches for tasks of one study folder."""

    _MAX_MODELS = 8

    def __init__(self, env: WorkerEnv) -> None:
        self.env = env
        self.store = StudyStore(env.root)
        self._data: dict[str, Any] = {}
        self._models: OrderedDict[str, nn.Module] = OrderedDict()

    @property
    def device(self) -> torch.device:
        dev = torch.device(self.env.device)
        if dev.type == "cuda" and dev.index is None:
            return torch.device("cuda", torch.cuda.current_device())
        return dev

    def dataset(self, data: DataParams):
        """The :class:`~serobust.data.DatasetBundle` for ``data`` params, its train split subset as asked."""
        from ..data import load_dataset

        source = {"name": data.name, "root": data.root, "path": data.path, "download": data.download,
                  "train_size": data.train_size}
        extra = {}
        if data.name == "imagenet":  # decoded at the pair's geometry: the subsets are drawn before decoding
            if not isinstance(data, PairData):
                raise ValueError("data.name = 'imagenet' is decoded at a given pair's geometry: list the pairs "
                                 "in model.pairs")
            extra = {"preprocess": data.preprocess, "eval_size": data.eval_size}
            source.update(extra)
        key = json.dumps(source, sort_keys=True)
        if key not in self._data:
            bundle = load_dataset(data.name, root=data.root or None, download=data.download,
                                  path=data.path or None, **extra,
                                  **({"train_size": data.train_size} if extra else {}))
            if data.train_size:
                bundle = dataclasses.replace(bundle, train=bundle.train.subset(data.train_size, seed=0))
            self._data[key] = bundle
        return self._data[key]

    def eval_set(self, data: EvalData) -> tuple[torch.Tensor, torch.Tensor]:
        """The stratified test subset every attack and probe uses (``data.eval_size``; 0 = the whole split)."""
        key = json.dumps({"data": repr(data), "_eval": True}, sort_keys=True)  # frozen: repr is its value
        if key not in self._data:
            test = self.dataset(data).test
            subset = test.subset(data.eval_size, seed=0) if data.eval_size else test
            self._data[key] = subset.tensors()
        return self._data[key]

    def build_model(self, model: ModelParams, data: DataParams, *, seed: int) -> nn.Module:
        """A fresh member as the train task specifies it; an SE twin shares its baseline's initial weights."""
        from ..models import build_model, build_pair

        bundle = self.dataset(data)
        kw = dict(num_classes=bundle.num_classes, in_channels=bundle.in_channels, seed=seed,
                  min_hidden=model.min_hidden, mean=bundle.mean, std=bundle.std)
        if model.se:
            return build_pair(model.arch, reduction=model.reduction, **kw)[1]
        return build_model(model.arch, se=False, **kw)

    def load_member(self, p: Any) -> nn.Module:
        """A given member (a load task's params) on the CPU in eval mode, checked against the data set."""
        from ..hub.load import load_member
        from ..hub.parse import parse_member
        from ..names import BASELINE

        spec = parse_member(p.source, f"pair {p.pair} {p.member}")
        return load_member(spec, num_classes=self.dataset(p.data).num_classes, se=p.member != BASELINE,
                           weights_dir=p.weights_dir, download=p.download)

    def model(self, task: Task) -> nn.Module:
        """The trained model of a finished train task, in eval mode on this process's device.

        Built and laid out exactly as :func:`serobust.train` leaves it (channels_last when the training
        config used it), so every executor evaluates bit-identical models.
        """
        if task.key in self._models:
            self._models.move_to_end(task.key)
            return self._models[task.key]
        p = task.params
        if task.stage == "load":
            return self._remember(task, self.load_member(p).to(self.device).eval())
        model = self.build_model(p.model, p.data, seed=p.seed).to(self.device)
        if p.train.channels_last:
            model = model.to(memory_format=torch.channels_last)
        folder = self.store.task_dir(task)
        path = self.store.check_file(task, "last.pt")  # the bytes the manifest recorded, or a one-line error
        try:
            ckpt = load_checkpoint(path, kind="train")
            if not ckpt.get("complete"):
                raise CheckpointError(f"checkpoint {path} is not a finished training run")
            if _train_identity(ckpt.get("config") or {}) != _train_identity(p.train.to_dict()):
                raise CheckpointError(f"checkpoint {path} was trained with another config than this task's")
            model.load_state_dict(ckpt["model"])
        except (CheckpointError, RuntimeError) as e:
            raise CheckpointError(f"the trained model of {task.label!r} cannot be loaded ({e}); delete the folder "
                                  f"{folder} and run again to retrain it", where=str(folder)) from e
        return self._remember(task, model.eval())

    def _remember(self, task: Task, model: nn.Module) -> nn.Module:
        """Cache ``task``'s model, dropping the least recently used beyond :attr:`_MAX_MODELS`."""
        self._models[task.key] = model
        if len(self._models) > self._MAX_MODELS:
            self._models.popitem(last=False)
        return model

    def inputs(self, task: Task) -> dict[str, Any]:
        """The outputs of ``task``'s deps by role: models for train deps, the stored parts otherwise."""
        from .stages import STAGES

        return {role: (self.model(dep) if STAGES[dep.stage].makes_model else self.store.load(dep))
                for role, dep in task.deps.items()}


def _train_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """A training config as the trainer compares it on resume (JSON round trip: tuples become lists)."""
    from ..training.checkpoint import identity

    return json.loads(json.dumps(identity(dict(config)), default=str))


_CONTEXTS: dict[WorkerEnv, TaskContext] = {}


def context_for(env: WorkerEnv) -> TaskContext:
    if env not in _CONTEXTS:
        _CONTEXTS[env] = TaskContext(env)
    return _CONTEXTS[env]


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads (the CPU numerics depend on it), restoring the count after."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class AttackImplementationError(SerobustError, RuntimeError):
    """A worker process resolves an attack name to another implementation than the process that planned."""


def check_implementations(task: Task) -> None:
    """Refuse a task whose attacks resolve here to other implementations than where it was planned.

    A spawned worker imports serobust afresh: an attack registered only in the driver's ``__main__`` or a
    notebook is missing there, or the built-in it replaced answers to its name. Running the task anyway
    would store the built-in's results under the replacement's key.

    Raises:
        AttackImplementationError: naming the attack, both implementations and the fix.
    """
    from ..attacks import attack_identity

    for name, planned in (task.record.get("implementations") or {}).items():
        try:
            here = attack_identity(name)
        except (KeyError, TypeError, ValueError):
            here = None
        if here != planned:
            what = "is not registered" if here is None else (
                f"is {here.split(':')[0]}" + (" (another version of its code)"
                                               if here.split(':')[0] == planned.split(':')[0] else ""))
            raise AttackImplementationError(
                f"attack {name!r} was planned as {planned.split(':')[0]} but {what} in worker process "
                f"{os.getpid()}: register it at import time in an importable module that the workers import too "
                "(a module of your package, or a script's top level outside `if __name__ == \"__main__\"`), "
                "or run with execution.jobs = 1 (--jobs 1) so the tasks run in this process",
                where="execution.jobs")


def run_task(task: Task, env: WorkerEnv) -> float:
    """Run one task in this process and store its outputs; returns its seconds. Same in every executor.

    Every task but training runs with TF32 off (:func:`serobust.runtime.fp32_scoring`), so the numbers its
    tables report are float32 on a GPU too (training uses bf16 autocast, and its test accuracy is scored in
    float32 by the trainer).
    """
    from ..runtime import fp32_scoring
    from .stages import STAGES

    check_implementations(task)
    ctx = context_for(env)
    stage = STAGES[task.stage]
    folder = ctx.store.task_dir(task)
    precision = contextlib.nullcontext() if stage.makes_model else fp32_scoring()
    numerics = getattr(task.params, "numerics", None)
    with _threads(numerics.threads if numerics is not None else None), precision:
        t0 = time.perf_counter()
        inputs = ctx.inputs(task)
        folder.mkdir(parents=True, exist_ok=True)
        outputs = stage.run(ctx, task.params, inputs, folder)
        seconds = time.perf_counter() - t0
    ctx.store.save(task, outputs, seconds=seconds)
    return seconds


def study_root(path: str | Path) -> str:
    return str(Path(path).resolve())
