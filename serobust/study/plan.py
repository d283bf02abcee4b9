"""From a study config to its tasks: which params each stage gets.

Each builder below passes a stage exactly the config entries it reads, plus the seed, the member and the
numerical environment (:func:`numerics`), so a task key changes when, and only when, something its result
depends on changes. Models enter downstream tasks only as deps (the train task), never as params.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import StudyConfig
from ..names import BASELINE, SE_MEMBER, twin_name
from .tasks import Task

__all__ = ["numerics", "members", "train_task", "load_task", "evaluate_task", "diagnostics_task", "transfer_task",
           "probe_task", "mechanism_task", "examples_task", "attack_table", "attack_spec", "autoattack_task",
           "detect_task", "curve_attack", "implementations", "INTERNAL_ATTACKS"]


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


def _data(cfg: StudyConfig, seed: int, *, eval_subset: bool = True) -> dict[str, Any]:
    d = cfg.data
    out = {"name": d.name, "root": d.root, "path": d.path, "download": d.download, "train_size": d.train_size}
    if eval_subset or cfg.model.pairs:
        out["eval_size"] = d.eval_size
    if cfg.model.pairs:  # the pair's images, resized and cropped as its members' pretrained configs say
        from ..hub import pair_geometry

        out["preprocess"] = pair_geometry(cfg.model.pair_specs()[seed], f"model.pairs[{seed}]")
    return out


def load_task(cfg: StudyConfig, member: str, seed: int, env: dict[str, Any]) -> Task:
    """A given member (``seed`` indexes the pair): loaded, never trained. A user's file (``weights``, TorchScript)
    enters the key by its digest, so replacing it recomputes everything downstream; a library's pretrained
    weights are pinned by their name (timm's tag, torchvision's enum, pytorchcv's hash in the file name), so
    downloading them does not change the key."""
    from ..hub import weights_file

    pair = cfg.model.pair_specs()[seed]
    spec = pair.baseline if member == BASELINE else pair.se
    user_file = bool(spec.weights) or spec.library == "torchscript"
    found = weights_file(spec, cfg.model.weights_dir)[0] if user_file else None
    params = {"member": member, "seed": seed, "pair": pair.name, "source": spec.to_dict(),
              "weights_dir": cfg.model.weights_dir, "download": cfg.model.download,
              "weights_sha256": _sha256(found) if found is not None else None,
              "data": _data(cfg, seed), "numerics": env}
    return Task("load", params, label=f"{member} {pair.name}")


def _sha256(path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
    if cfg.model.pairs:
        return load_task(cfg, member, seed, env)
    reductions = dict(zip(members(cfg)[1:], cfg.model.reductions))
    model = {"arch": cfg.model.arch, "se": member != BASELINE, "reduction": reductions.get(member),
             "min_hidden": cfg.model.min_hidden}
    train = dataclasses.replace(cfg.train, seed=seed).to_dict()
    return Task("train", {"member": member, "model": model, "train": train, "data": _data(cfg, seed, eval_subset=False),
                          "numerics": env}, label=f"{member} s{seed}")


def _common(cfg: StudyConfig, member: str, seed: int, env: dict[str, Any]) -> dict[str, Any]:
    return {"member": member, "seed": seed, "data": _data(cfg, seed), "numerics": env,
            "batch_size": cfg.attacks.batch_size}


#: Attacks a stage resolves by name inside its own code (beyond those its params name).
INTERNAL_ATTACKS = {"diagnostics": ("pgd", "fgsm", "square", "noise", "apgd_ce", "pgd_l2"),
                    "detect": ("fgsm", "pgd")}


def implementations(stage: str, *tables: Any) -> dict[str, str]:
    """``{"implementations": {name: identity}}`` for the attacks a task runs: those of its attack tables
    (dicts with a name, or names) and the ones its stage resolves itself (:data:`INTERNAL_ATTACKS`).

    In the task's params, so a replaced implementation (``register_attack(..., replace=True)``) changes the
    key, and a worker that resolves another implementation refuses the task (see
    :func:`serobust.study.context.run_task`)."""
    from ..attacks import ATTACKS, attack_identity

    names = {t["name"] if isinstance(t, dict) else t for t in tables}
    names |= {n for n in INTERNAL_ATTACKS.get(stage, ()) if n in ATTACKS}
    return {"implementations": {n: attack_identity(n) for n in sorted(names)}}


def evaluate_task(cfg: StudyConfig, member: str, seed: int, model: Task, env: dict[str, Any]) -> Task:
    a = cfg.attacks
    attacks = {"white_box": a.white_box, "eps": a.eps, "black_box": a.black_box, "black_box_eps": a.black_box_eps,
               "black_box_size": a.black_box_size, "batch_size": a.batch_size}
    return Task("evaluate", {**_common(cfg, member, seed, env), "attacks": attacks,
                             **implementations("evaluate", *a.white_box, *a.black_box)}, {"model": model},
                label=f"{member} s{seed}")


def diagnostics_task(cfg: StudyConfig, member: str, seed: int, model: Task, other: Task,
                     env: dict[str, Any]) -> Task:
    d = dataclasses.asdict(cfg.diagnostics)
    d.pop("enabled")
    d.pop("seeds")
    return Task("diagnostics", {**_common(cfg, member, seed, env), "diagnostics": d,
                                **implementations("diagnostics", *cfg.diagnostics.extra_attacks)},
                {"model": model, "other": other}, label=f"{member} s{seed}")


def transfer_task(cfg: StudyConfig, source: str, target: str, seed: int, models: dict[str, Task],
                  env: dict[str, Any]) -> Task:
    params = {**_common(cfg, target, seed, env), "source": source, "target": target,
              "attack": curve_attack(cfg), "eps": cfg.attacks.black_box_eps,
              "size": cfg.attacks.black_box_size, **implementations("transfer", curve_attack(cfg))}
    return Task("transfer", params, {"source": models[source], "target": models[target]},
                label=f"{source} to {target} s{seed}")


def probe_task(cfg: StudyConfig, twin: str, seed: int, models: dict[str, Task], env: dict[str, Any]) -> Task:
    p = dataclasses.asdict(cfg.probe)
    p.pop("enabled")
    params = {**_common(cfg, twin, seed, env), "probe": p, "attack": attack_table(cfg, cfg.probe.attack),
              "baseline_name": BASELINE, **implementations("probe", cfg.probe.attack)}
    return Task("probe", params, {"model": models[twin], "baseline": models[BASELINE]}, label=f"{twin} s{seed}")


def mechanism_task(cfg: StudyConfig, twin: str, seed: int, models: dict[str, Task], env: dict[str, Any]) -> Task:
    m = dataclasses.asdict(cfg.mechanism)
    m.pop("enabled")
    params = {**_common(cfg, twin, seed, env), "mechanism": m, "attack": curve_attack(cfg),
              **implementations("mechanism", curve_attack(cfg))}
    return Task("mechanism", params, {"model": models[twin]}, label=f"{twin} s{seed}")


def autoattack_task(cfg: StudyConfig, member: str, seed: int, model: Task, env: dict[str, Any]) -> Task:
    a = {"eps": cfg.autoattack.eps, "size": cfg.autoattack.size}
    params = {**_common(cfg, member, seed, env), "autoattack": a, "attack": attack_table(cfg, "autoattack"),
              "pgd": curve_attack(cfg),  # the per-image check: AutoAttack breaks every image PGD breaks
              **implementations("autoattack", "autoattack", curve_attack(cfg))}
    return Task("autoattack", params, {"model": model},
                label=f"{member} s{seed}")


def detect_task(cfg: StudyConfig, twin: str, seed: int, models: dict[str, Task], env: dict[str, Any]) -> Task:
    d = dataclasses.asdict(cfg.detect)
    for key in ("enabled", "margin", "level"):  # the verdict's thresholds do not change the measurement
        d.pop(key)
    return Task("detect", {**_common(cfg, twin, seed, env), "detect": d, **implementations("detect")},
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
    params = {"seed": seed, "data": _data(cfg, seed), "numerics": env, "n": cfg.report.examples,
              "eps": cfg.report.example_eps, "attack": curve, "curve": attack_spec(curve).label,
              "members": list(models), **implementations("examples", curve)}
    deps = {**models, **{f"eval:{m}": t for m, t in evals.items()}}
    return Task("examples", params, deps, label=f"s{seed}")
