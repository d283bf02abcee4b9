"""The study: train paired models over seeds, attack them, probe the gates, test the hypothesis, report.

This module is the study's table of contents. :func:`plan` lists its tasks in reading order (each stage of
:mod:`serobust.study.stages`, one module each, plans its own tasks with typed params); :func:`run_study`
runs them with the executor the config asks for, then turns their results into statistics, verdicts and
the report. Everything a task computes is kept in ``reports/<study>/tasks/`` under its key, so a second run
reuses it and an interrupted run resumes; the report is published as one unit (:mod:`serobust.study.publish`).
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from .config.load import load_study_config
from .config.study_config import StudyConfig
from .io import atomic_write_json, atomic_write_text
from .names import BASELINE
from .runtime import deterministic_cuda, numerics_record, resolve_device
from .study import plan as p
from .study.context import TaskContext, WorkerEnv, context_for, study_root
from .study.executors import execute, make_executor, terminate_on_sigterm
from .study.publish import check_study_folder, claim_study_folder, new_run_id, publish
from .study.results import collect, statistics
from .study.stages import Planning, ordered
from .study.store import StudyStore, frame_to_csv, study_lock
from .study.tasks import Task
from .version import __version__

__all__ = ["run_study", "plan"]

log = logging.getLogger(__name__)


def plan(cfg: StudyConfig, env: p.Numerics | Mapping[str, Any]) -> list[Task]:
    """Every task of the study, in the order a reader follows it (``env``: :func:`~serobust.study.plan.numerics`,
    or its fields as a mapping).

    For each seed, every per-seed stage in its ``order`` plans its tasks (a disabled stage plans none):

    1. ``train`` the baseline and each SE twin (same init for shared weights, same batches), or ``load``
       the given pair's two members;
    2. ``evaluate`` each member: white-box sweep over eps (per example) and the black-box checks;
       ``autoattack`` with its published budgets on a subset, when the study asks for it;
    3. ``diagnostics``: gradient-masking checks (Carlini et al. 2019), against the pair's other member;
    4. ``transfer`` between the twins, both ways;
    5. ``probe``: how z, s, u and s*u move under attack vs random noise of the same size;
    6. ``mechanism``: interventions on the twin's gates, adaptive attacks, class profiles;
    7. ``detect``: do the excitations signal the attack beyond the baseline's own features?

    Then the study-wide stages: 8. ``examples``, images for the report (the first seed's models, at the
    budget where they differ most). A stage added under :mod:`serobust.study.stages` takes its place by
    its ``order``.
    """
    study = Planning(cfg, env)
    for seed in cfg.study.seeds:
        for stage in ordered(per_seed=True):
            study.add(stage, seed)
    for stage in ordered(per_seed=False):
        study.add(stage, None)
    return study.tasks


def run_study(
    config: StudyConfig | str | Path,
    *,
    out_dir: str | Path | None = None,
    device: str | None = None,
    jobs: int | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run (or resume) a whole study and publish its report.

    Args:
        config: a :class:`~serobust.config.StudyConfig` or the path of a study TOML file.
        out_dir: the study folder (default ``reports/<study.name>``).
        device: overrides ``study.device``.
        jobs: overrides ``execution.jobs`` (tasks at once; 0 = one per core / GPU slot).
        progress: a progress bar over tasks (``None``: only on a terminal).

    Returns:
        The content of ``results.json`` with ``"out_dir"`` and ``"report"`` (the page's path) added.
    """
    cfg = config if isinstance(config, StudyConfig) else load_study_config(config)
    out = Path(out_dir) if out_dir is not None else Path("reports") / cfg.study.name
    check_study_folder(out)  # a folder holding others' files is refused before anything is written
    dev = resolve_device(device or cfg.study.device)
    env = p.numerics(cfg, dev.type)
    worker = WorkerEnv(study_root(out), str(dev))  # "cuda:1" stays GPU 1 in this process
    deterministic_cuda(cfg.execution.deterministic and dev.type == "cuda")
    tasks = plan(cfg, env)
    run_id, started, t0 = new_run_id(), time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter()
    ctx = context_for(worker)  # the context in-process tasks use too
    ctx.dataset(tasks[0].params.data)  # missing or malformed data fails here, before anything is written
    if cfg.model.pairs:
        _check_weights(cfg)
    claim_study_folder(out)
    with study_lock(out), terminate_on_sigterm():
        executor = make_executor(cfg.execution, worker, jobs=jobs)
        log.info("study %s: %d tasks, executor %s with %d slot(s), device %s", cfg.study.name, len(tasks),
                 executor.name, min(executor.slots, len(tasks)), dev)
        execute(tasks, executor, StudyStore(out), progress=progress)
        tables, examples = collect(tasks, StudyStore(out))
        main_label = p.attack_spec(p.attack_table(cfg, cfg.attacks.main)).label
        tables, verdicts = statistics(tables, cfg, main_attack=main_label, twins=p.members(cfg)[1:])
        if cfg.model.pairs:  # the verdict carries what its replicates are: pairs sharing a recipe, not twins
            verdicts = {twin: {**v, "design": PAIRS_DESIGN} for twin, v in verdicts.items()}
        meta = _meta(cfg, dev, executor, run_id=run_id, started=started, main_label=main_label,
                     ctx=ctx, tasks=tasks)
        if examples is not None:
            meta["examples"] = {"eps": examples["eps"], "attack": examples["attack"], "n": len(examples["y"])}
        meta["time_s"] = round(time.perf_counter() - t0, 1)
        results = {"meta": meta, "config": cfg.to_dict(), "verdict": verdicts,
                   "robust_stats": tables["robust_stats"].to_dict("records"),
                   "tables": {name: f"tables/{name}.csv" for name in tables}}
        publish(out, lambda folder: _write(folder, results, tables, examples), run_id=run_id)
    log.info("report written to %s (%.1f s)", out / "index.html", meta["time_s"])
    return {**results, "out_dir": str(out), "report": str(out / "index.html")}


def _check_weights(cfg: StudyConfig) -> None:
    """Given pairs whose weights are not on disk fail here, each file named, unless a library may download them."""
    from .hub.load import check_se_member
    from .hub.specs import WeightsNotFoundError
    from .hub.weights import missing_weights

    for i, pair in enumerate(cfg.model.pair_specs()):  # a baseline given as se: refused before any task runs
        check_se_member(pair.se, f"model.pairs[{i}].se")
    specs = [m for pair in cfg.model.pair_specs() for m in (pair.baseline, pair.se)]
    local = [m for m in specs if m.weights or m.library == "torchscript"]  # nothing can download these
    missing = [line for m in (specs if not cfg.model.download else local)
               if (line := missing_weights(m, cfg.model.weights_dir))]
    if missing:
        raise WeightsNotFoundError("; ".join(dict.fromkeys(missing)))


#: how the report states the design of a study of given pairs (beside the verdict, in the run's metadata)
PAIRS_DESIGN = ("Given pairs, not twins: each pair's baseline and SE model share a published training recipe "
                "(architecture family, data, schedule, augmentation), not initial weights or data order, so a "
                "difference within a pair is the SE blocks plus everything two independent trainings differ by. "
                "Within a pair the models are compared per image (McNemar, paired bootstrap over images); across "
                "pairs by the rule used across seeds, so the pairs are the replicates and an interval across few "
                "pairs is wide. A supported difference says SE-ResNets trained this way are more robust, not that "
                "the SE blocks alone made one network so.")


def _write(folder: Path, results: dict[str, Any], tables: dict[str, Any], examples: dict[str, Any] | None) -> Path:
    """Every file of one report into ``folder`` (the publisher swaps the folder in afterwards)."""
    from .report import write_report

    for name, frame in tables.items():
        atomic_write_text(folder / "tables" / f"{name}.csv", frame_to_csv(frame))
    atomic_write_json(folder / "config.json", results["config"])
    page = write_report(folder, results, tables, examples)
    atomic_write_json(folder / "results.json", results)
    return page


def _git() -> dict[str, Any]:
    """Commit and dirty flag of the serobust checkout this code runs from (None when not a checkout)."""
    here = Path(__file__).resolve().parent

    def run(*args: str) -> str | None:
        try:
            return subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _cpu_name() -> str:
    """The CPU model ("AMD EPYC 7B13 ..."), from /proc/cpuinfo on Linux, else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "serobust": __version__}
    for dist in ("torch", "torchvision", "torchattacks", "numpy", "pandas", "seaborn", "scipy", "scikit-learn"):
        try:
            out[dist.replace("scikit-learn", "sklearn")] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _meta(cfg: StudyConfig, dev: torch.device, executor: Any, *, run_id: str, started: str, main_label: str,
          ctx: TaskContext, tasks: list[Task]) -> dict[str, Any]:
    train = next(t for t in tasks if t.stage in ("train", "load"))
    data = ctx.dataset(train.params.data)
    x_eval, _ = ctx.eval_set(train.params.data.for_eval(cfg.data.eval_size))
    params: dict[str, Any] = {}
    pairs: list[dict[str, Any]] = []
    for t in tasks:
        if t.stage == "train" and t.params.member not in params:
            model = ctx.build_model(t.params.model, t.params.data, seed=0)
            params[t.params.member] = sum(q.numel() for q in model.parameters())
        if t.stage == "load":
            info = ctx.store.load(t)["info"].iloc[0].to_dict()
            if t.params.member == BASELINE:
                pairs.append({"seed": t.params.seed, "name": t.params.pair})
            pairs[-1][t.params.member] = {"source": info["source"], "weights": info["weights"],
                                            "params": int(info["params"]), "se_blocks": int(info["se_blocks"]),
                                            "input_size": int(info["input_size"])}
    for member in (p.members(cfg) if pairs else ()):  # one count per member when every pair agrees
        counts = {pair[member]["params"] for pair in pairs}
        if len(counts) == 1:
            params[member] = counts.pop()
    specs = [p.attack_spec(a) for a in (*cfg.attacks.white_box, *cfg.attacks.black_box)]
    diag_seeds = sorted({t.params.seed for t in tasks if t.stage == "diagnostics"})
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name()
    return {
        "study": cfg.study.name, "description": cfg.study.description, "config_file": cfg.source,
        "run_id": run_id, "started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "members": p.members(cfg), "seeds": list(cfg.study.seeds), "main_attack": main_label,
        "probe_attack": p.attack_spec(p.attack_table(cfg, cfg.probe.attack)).label,
        "dataset": {"name": data.name, "train": len(data.train), "test": len(data.test), "eval": len(x_eval),
                    "num_classes": data.num_classes, "image_size": list(data.image_size)},
        "versions": _versions(), "git": _git(),
        "device": {"type": dev.type, "name": name, "threads": p.numerics(cfg, dev.type).threads},
        "executor": {"name": executor.name, "jobs": executor.slots}, "params": params,
        "numerics": numerics_record(dev, deterministic=cfg.execution.deterministic),
        "attacks": [{"label": s.label, "norm": s.norm, "budget": s.budget} for s in specs] + (
            [] if cfg.attacks.black_box else [{"label": "no black-box check", "norm": "", "budget": (
                "attacks.black_box = [] in the config: no gradient-free attack ran, so nothing checks that one "
                "does not beat the white-box attacks")}]),
        "diagnostics": {"seeds": diag_seeds, "n_images": min(cfg.diagnostics.size, len(x_eval))},
        "eps_labels": dict(getattr(cfg, "eps_labels", {}) or {}),
        **({"pairs": pairs, "design": PAIRS_DESIGN} if pairs else {}),
    }
