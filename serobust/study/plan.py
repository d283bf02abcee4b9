"""From a study config to its tasks: which params each stage gets.

Each builder below passes a stage exactly the config entries it reads, plus the seed, the member and the
numerical environment (:func:`numerics`), so a task key changes when, and only when, something its result
depends on changes. Models enter downstream tasks only as deps (the train task), never as params.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import StudyConfig
from ..names import BASELINE, twin_name
from .tasks import Task

__all__ = ["numerics", "members", "train_task", "evaluate_task", "diagnostics_task", "transfer_task",
           "probe_task", "mechanism_task", "examples_task", "attack_table", "attack_spec", "autoattack_task",
           "detect_task", "curve_attack"]


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
    """``baseline`` then one SE twin per reduction ratio."""
    return [BASELINE] + [twin_name(r) for r in cfg.model.reductions]


def _data(cfg: StudyConfig, *, eval_subset: bool = True) -> dict[str, Any]:
    d = cfg.data
    out = {"name": d.name, "root": d.root, "path": d.path, "download": d.download, "train_size": d.train_size}
    if eval_subset:
        out["eval_size"] = d.eval_size
    return out


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


def train_task(cfg: StudyConfig, member: str, seed: int, env: dict[str, Any]) -> Task:
    reductions = dict(zip(members(cfg)[1:], cfg.model.reductions))
    model = {"arch": cfg.model.arch, "se": member != BASELINE, "reduction": reductions.get(member),
             "min_hidden": cfg.model.min_hidden}
    train = dataclasses.replace(cfg.train, seed=seed).to_dict()
    return Task("train", {"member": member, "model": model, "train": train, "data": _data(cfg, eval_subset=False),
                          "numerics": env}, label=f"{member} s{seed}")


def _common(cfg: StudyConfig, member: str, seed: int, env: dict[str, Any]) -> dict[str, Any]:
    return {"member": member, "seed": seed, "data": _data(cfg), "numerics": env,
            "batch_size": cfg.attacks.batch_size}


def evaluate_task(cfg: StudyConfig, member: str, seed: int, model: Task, env: dict[str, Any]) -> Task:
    a = cfg.attacks
    attacks = {"white_box": a.white_box, "eps": a.eps, "black_box": a.black_box, "black_box_eps": a.black_box_eps,
               "black_box_size": a.black_box_size, "batch_size": a.batch_size}
    return Task("evaluate", {**_common(cfg, member, seed, env), "attacks": attacks}, {"model": model},
                label=f"{member} s{seed}")


def diagnostics_task(cfg: StudyConfig, member: str, seed: int, model: Task, other: Task,
                     env: dict[str, Any]) -> Task:
    d = dataclasses.asdict(cfg.diagnostics)
    d.pop("enabled")
    d.pop("seeds")
    return Task("diagnostics", {**_common(cfg, member, seed, env), "diagnostics": d},
                {"model": model, "other": other}, label=f"{member} s{seed}")


def transfer_task(cfg: StudyConfig, source: str, target: str, seed: int, models: dict[str, Task],
                  env: dict[str, Any]) -> Task:
    params = {**_common(cfg, target, seed, env), "source": source, "target": target,
              "attack": curve_attack(cfg), "eps": cfg.attacks.black_box_eps,
              "size": cfg.attacks.black_box_size}
    return Task("transfer", params, {"source": models[source], "target": models[target]},
                label=f"{source} to {target} s{seed}")


def probe_task(cfg: StudyConfig, twin: str, seed: int, models: dict[str, Task], env: dict[str, Any]) -> Task:
    p = dataclasses.asdict(cfg.probe)
    p.pop("enabled")
    params = {**_common(cfg, twin, seed, env), "probe": p, "attack": attack_table(cfg, cfg.probe.attack),
              "baseline_name": BASELINE}
    return Task("probe", params, {"model": models[twin], "baseline": models[BASELINE]}, label=f"{twin} s{seed}")


def mechanism_task(cfg: StudyConfig, twin: str, seed: int, models: dict[str, Task], env: dict[str, Any]) -> Task:
    m = dataclasses.asdict(cfg.mechanism)
    m.pop("enabled")
    params = {**_common(cfg, twin, seed, env), "mechanism": m, "attack": curve_attack(cfg)}
    return Task("mechanism", params, {"model": models[twin]}, label=f"{twin} s{seed}")


def autoattack_task(cfg: StudyConfig, member: str, seed: int, model: Task, env: dict[str, Any]) -> Task:
    a = {"eps": cfg.autoattack.eps, "size": cfg.autoattack.size}
    params = {**_common(cfg, member, seed, env), "autoattack": a, "attack": attack_table(cfg, "autoattack")}
    return Task("autoattack", params, {"model": model},
                label=f"{member} s{seed}")


def detect_task(cfg: StudyConfig, twin: str, seed: int, models: dict[str, Task], env: dict[str, Any]) -> Task:
    d = dataclasses.asdict(cfg.detect)
    for key in ("enabled", "margin", "level"):  # the verdict's thresholds do not change the measurement
        d.pop(key)
    return Task("detect", {**_common(cfg, twin, seed, env), "detect": d},
                {"model": models[twin], "baseline": models[BASELINE]}, label=f"{twin} s{seed}")


def curve_attack(cfg: StudyConfig) -> dict[str, Any]:
    """The white-box attack whose curve over every eps stands for the main attack: itself, unless it is
    AutoAttack, which runs on a subset at a few budgets; then the last white-box attack (PGD by convention).
    Transfer, the mechanism stage and the example grid craft their adversarial images with it."""
    main = cfg.attacks.main
    return attack_table(cfg, main) if main != "autoattack" else dict(cfg.attacks.white_box[-1])


def examples_task(cfg: StudyConfig, seed: int, models: dict[str, Task], evals: dict[str, Task],
                  env: dict[str, Any]) -> Task:
    curve = curve_attack(cfg)
    params = {"seed": seed, "data": _data(cfg), "numerics": env, "n": cfg.report.examples,
              "eps": cfg.report.example_eps, "attack": curve, "curve": attack_spec(curve).label,
              "members": list(models)}
    deps = {**models, **{f"eval:{m}": t for m, t in evals.items()}}
    return Task("examples", params, deps, label=f"s{seed}")
