"""What the stages plan their tasks from: the config entries several stages share.

Each stage (:mod:`serobust.study.stages`) passes its tasks exactly the config entries it reads, plus the
seed, the member and the numerical environment (:func:`numerics`), so a task key changes when, and only
when, something its result depends on changes. Models enter downstream tasks only as deps (the train or
load task), never as params. This module holds the pieces several stages share; it imports no stage.
"""

from __future__ import annotations

from typing import Any

from ..config.study_config import StudyConfig
from ..names import BASELINE, SE_MEMBER, twin_name

__all__ = ["numerics", "members", "data_params", "common", "attack_table", "attack_spec", "curve_attack",
           "implementations"]


def numerics(cfg: StudyConfig, device_type: str) -> dict[str, Any]:
    """The numerical environment of every task: the device type and, on the CPU, the intra-op threads.

    On the CPU, PyTorch splits convolution weight gradients and BatchNorm reductions across threads, so the
    thread count changes trained weights in the last bits; it is therefore fixed by the study
    (``execution.threads``), not by the executor, and part of every key. On CUDA it does not enter.
    """
    from ..runtime import available_cores

    threads = min(cfg.execution.threads, available_cores())  # what runs: more than the cores is capped
    return {"device": device_type, "threads": threads if device_type == "cpu" else None}


def members(cfg: StudyConfig) -> list[str]:
    """``baseline`` then one SE twin per reduction ratio (``baseline``, ``se`` for given pairs)."""
    if cfg.model.pairs:
        return [BASELINE, SE_MEMBER]
    return [BASELINE] + [twin_name(r) for r in cfg.model.reductions]


def data_params(cfg: StudyConfig, seed: int, *, eval_subset: bool = True) -> dict[str, Any]:
    """The ``data`` entry of a task: the data set, its sizes and, for given pairs, the pair's preprocessing."""
    d = cfg.data
    out = {"name": d.name, "root": d.root, "path": d.path, "download": d.download, "train_size": d.train_size}
    if eval_subset or cfg.model.pairs:
        out["eval_size"] = d.eval_size
    if cfg.model.pairs:  # the pair's images, resized and cropped as its members' pretrained configs say
        from ..hub.preprocessing import pair_geometry

        out["preprocess"] = pair_geometry(cfg.model.pair_specs()[seed], f"model.pairs[{seed}]")
    return out


def common(cfg: StudyConfig, member: str, seed: int, env: dict[str, Any]) -> dict[str, Any]:
    """The fields of every attacking stage's params (:class:`serobust.study.stages.evaluate.MemberParams`)."""
    return {"member": member, "seed": seed, "data": data_params(cfg, seed), "numerics": env,
            "batch_size": cfg.attacks.batch_size}


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
