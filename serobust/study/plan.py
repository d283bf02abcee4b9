"""What the stages plan their tasks from: the config entries several stages share, typed.

Each stage (:mod:`serobust.study.stages`) passes its tasks exactly the config entries it reads, plus the
seed, the member and the numerical environment (:class:`Numerics`), so a task key changes when, and only
when, something its result depends on changes. Models enter downstream tasks only as deps (the train or
load task), never as params. This module holds the pieces several stages share; it imports no stage.

The shared entries are frozen dataclasses (:class:`Numerics`, :class:`DataParams` and its two extensions),
so a run function reads attributes. Their field names and values are the keys and values of the dicts the
planner passed before they were typed, so ``dataclasses.asdict`` of a task's params (what its key hashes,
in :class:`~serobust.study.tasks.Task` only) is unchanged and existing study folders are reused. Attack
option tables (``{"name": "pgd", "steps": 10}``) stay mappings: they are open option sets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from ..config.study_config import StudyConfig
from ..names import BASELINE, SE_MEMBER, twin_name

__all__ = ["Numerics", "DataParams", "EvalData", "PairData", "numerics", "members", "data_params", "common",
           "options", "attack_table", "attack_spec", "curve_attack", "implementations"]

T = TypeVar("T")


@dataclass(frozen=True)
class Numerics:
    """The numerical environment of every task (:func:`numerics`): the device type, and on the CPU the
    intra-op thread count (``None`` on CUDA, where it does not change results)."""

    device: str
    threads: int | None


@dataclass(frozen=True)
class DataParams:
    """The data set a task reads and its training subset (``train_size``; 0 = the whole split): what a
    train task needs (:func:`data_params` with ``eval_subset=False``)."""

    name: str
    root: str
    path: str
    download: bool
    train_size: int

    def for_eval(self, eval_size: int) -> EvalData:
        """These data with the evaluation subset ``eval_size`` (0 = the whole test split)."""
        return EvalData(**{f.name: getattr(self, f.name) for f in dataclasses.fields(DataParams)},
                        eval_size=eval_size)


@dataclass(frozen=True)
class EvalData(DataParams):
    """The data of a task that attacks or probes: also the stratified evaluation subset's size."""

    eval_size: int

    def for_eval(self, eval_size: int) -> EvalData:
        return dataclasses.replace(self, eval_size=eval_size)


@dataclass(frozen=True)
class PairData(EvalData):
    """The data of a study of given pairs: also the geometry the pair's images are decoded at
    (:func:`serobust.hub.pair_geometry`, a mapping the data loader reads)."""

    preprocess: dict[str, Any]


def numerics(cfg: StudyConfig, device_type: str) -> Numerics:
    """The numerical environment of every task: the device type and, on the CPU, the intra-op threads.

    On the CPU, PyTorch splits convolution weight gradients and BatchNorm reductions across threads, so the
    thread count changes trained weights in the last bits; it is therefore fixed by the study
    (``execution.threads``), not by the executor, and part of every key. On CUDA it does not enter.
    """
    from ..runtime import available_cores

    threads = min(cfg.execution.threads, available_cores())  # what runs: more than the cores is capped
    return Numerics(device=device_type, threads=threads if device_type == "cpu" else None)


def members(cfg: StudyConfig) -> list[str]:
    """``baseline`` then one SE twin per reduction ratio (``baseline``, ``se`` for given pairs)."""
    if cfg.model.pairs:
        return [BASELINE, SE_MEMBER]
    return [BASELINE] + [twin_name(r) for r in cfg.model.reductions]


def data_params(cfg: StudyConfig, seed: int, *, eval_subset: bool = True) -> DataParams:
    """The ``data`` entry of a task: the data set and its sizes (:class:`DataParams`; :class:`EvalData` with
    ``eval_subset``) and, for given pairs, the pair's preprocessing (:class:`PairData`)."""
    d = cfg.data
    source = {"name": d.name, "root": d.root, "path": d.path, "download": d.download, "train_size": d.train_size}
    if cfg.model.pairs:  # the pair's images, resized and cropped as its members' pretrained configs say
        from ..hub.preprocessing import pair_geometry

        geometry = pair_geometry(cfg.model.pair_specs()[seed], f"model.pairs[{seed}]")
        return PairData(**source, eval_size=d.eval_size, preprocess=geometry)
    return EvalData(**source, eval_size=d.eval_size) if eval_subset else DataParams(**source)


def common(cfg: StudyConfig, member: str, seed: int, env: Numerics) -> dict[str, Any]:
    """The fields of every attacking stage's params (:class:`serobust.study.stages.base.MemberParams`), as
    keyword arguments: ``Params(**common(...), more=...)``."""
    return {"member": member, "seed": seed, "data": data_params(cfg, seed), "numerics": env,
            "batch_size": cfg.attacks.batch_size}


def options(cls: type[T], section: Any, *, without: tuple[str, ...] = ()) -> T:
    """``cls`` (a stage's frozen options dataclass) from the config ``section``'s fields of the same names.

    ``without`` names the section's fields left out: those that only decide what is planned (``enabled``,
    ``seeds``), judge the results afterwards (a verdict's thresholds) or enter the params another way (an
    attack's table), so a change of them does not change the key. Any other field of the section that
    ``cls`` lacks is an error: a new config field must enter the key or be declared left out.

    Raises:
        TypeError: naming the missing fields and both ways to fix it.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    missing = sorted({f.name for f in dataclasses.fields(section)} - set(names) - set(without))
    if missing:
        raise TypeError(f"{cls.__name__} lacks {missing} of {type(section).__name__}: add them as fields (they "
                        "may change the result, so the key must cover them) or list them in without=")
    return cls(**{n: getattr(section, n) for n in names})


def attack_spec(table: dict[str, Any]):
    """The :class:`~serobust.attacks.AttackSpec` of a config attack table (``{"name": ..., options...}``)."""
    from ..attacks import attack

    return attack(table["name"], **{k: v for k, v in table.items() if k != "name"})


def attack_table(cfg: StudyConfig, name: str) -> dict[str, Any]:
    """The white-box attack called ``name`` with its configured options (probes use the same budget);
    ``autoattack`` is the ``[autoattack]`` section's version."""
    if name == "autoattack":  # the standard version is the default: label "autoattack"
        version = cfg.autoattack.version
        return {"name": "autoattack", **({} if version == "standard" else {"version": version})}
    for table in cfg.attacks.white_box:
        if table["name"] == name:
            return dict(table)
    return {"name": name}


def curve_attack(cfg: StudyConfig) -> dict[str, Any]:
    """The white-box attack whose curve over every eps stands for the main attack: itself, unless it is
    AutoAttack, which runs on a subset at a few budgets; then the last white-box attack (PGD by convention).
    Transfer, the mechanism stage and the example grid craft their adversarial images with it."""
    main = cfg.attacks.main
    return attack_table(cfg, main) if main != "autoattack" else dict(cfg.attacks.white_box[-1])


def implementations(*tables: Any, internal: tuple[str, ...] = ()) -> dict[str, str]:
    """``{name: identity}`` for the attacks a task runs: those of its attack tables (dicts with a name, or
    names) and ``internal``, the ones its stage resolves by name in its own code (when registered).

    In the task's params, so a replaced implementation (``register_attack(..., replace=True)``) changes the
    key, and a worker that resolves another implementation refuses the task (see
    :func:`serobust.study.context.check_implementations`)."""
    from ..attacks import ATTACKS, attack_identity

    names = {t["name"] if isinstance(t, dict) else t for t in tables}
    names |= {n for n in internal if n in ATTACKS}
    return {n: attack_identity(n) for n in sorted(names)}
