"""Run a study for at most ``--budget`` seconds, then project its full wall time from what finished.

Used by ``benchmarks/gpu_check.sh`` for ``experiments/cifar10_resnet20.toml`` on a lent GPU (which has minutes,
not the study's full time). The study runs in a child process (``serobust.run_study``); at the budget the child
gets SIGTERM, which stops its workers (finished tasks are kept). The projection then reads the study folder:

* per stage, the mean seconds of its finished tasks (``manifest.json``); a training task cut mid-way counts by
  its finished epochs (``history.csv``: mean epoch time x the configured epochs);
* projected wall time = startup (process start to the first task's start: imports, data loading) + sum over
  stages of (tasks in the plan x mean seconds) / executor slots (tasks ran side by side, so their seconds were
  measured while sharing the device); writing the report after the last task is not included;
* stages that no task of reached are listed as ``unmeasured``: the projection is then a lower bound.

GPU utilisation comes from ``--util`` (``nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv``
samples written by gpu_check.sh): mean and median over the run.

    python benchmarks/gpu_study_cut.py experiments/cifar10_resnet20.toml --out /tmp/cut --budget 300 \\
        --data-root /tmp/serobust-cifar [--tiny] [--device cpu] [--util util.csv]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import statistics
import time
from pathlib import Path

import pandas as pd

TINY = {  # --tiny: the same study shape at sizes a CPU runs in a minute or two (for trying the script)
    "study": {"seeds": [0]},
    "data": {"train_size": 600, "eval_size": 60},
    "model": {"reductions": [16]},
    "train": {"epochs": 1, "batch_size": 64},
    "attacks": {"eps": ["0", "8/255"], "white_box": [{"name": "pgd", "steps": 2, "random_start": True}],
                "black_box": [{"name": "square", "n_queries": 5}], "black_box_eps": ["8/255"],
                "black_box_size": 20, "batch_size": 60},
    "diagnostics": {"enabled": False},
    "probe": {"size": 40, "eps": ["8/255"]},
    "mechanism": {"enabled": False},
    "detect": {"enabled": False},
    "execution": {"jobs": 1},
}


def config(path: Path, *, data_root: str | None, tiny: bool, device: str | None) -> dict:
    from serobust.config.load import tomllib  # tomllib, or tomli before Python 3.11

    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    if data_root:
        raw.setdefault("data", {}).update(root=data_root, download=False)
    if tiny:
        for section, values in TINY.items():
            raw.setdefault(section, {}).update(values)
    if device:
        raw.setdefault("study", {})["device"] = device
    return raw


def _run(raw: dict, out: str) -> None:
    from serobust.config import study_config_from_dict
    from serobust.pipeline import run_study

    run_study(study_config_from_dict(raw), out_dir=out, progress=False)


def project(raw: dict, out: Path, *, started: float | None = None) -> dict:
    from serobust.config import study_config_from_dict
    from serobust.pipeline import plan
    from serobust.runtime import resolve_device
    from serobust.study import plan as p
    from serobust.study.executors import plan_slots
    from serobust.study.store import StudyStore

    cfg = study_config_from_dict(raw)
    dev = resolve_device(cfg.study.device)
    tasks = plan(cfg, p.numerics(cfg, dev.type))
    store = StudyStore(out)
    gpus = [str(i) for i in range(max(1, _gpu_count()))] if dev.type == "cuda" else []
    slots = len(plan_slots(cfg.execution.jobs, threads=cfg.execution.threads, gpus=gpus,
                           jobs_per_gpu=cfg.execution.jobs_per_gpu))
    by_stage: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    done: dict[str, int] = {}
    first_start = float("inf")
    for t in tasks:
        counts[t.stage] = counts.get(t.stage, 0) + 1
        if store.done(t):
            by_stage.setdefault(t.stage, []).append(store.seconds(t))
            done[t.stage] = done.get(t.stage, 0) + 1
            first_start = min(first_start, (store.task_dir(t) / "manifest.json").stat().st_mtime - store.seconds(t))
        elif t.stage == "train":
            hist = store.task_dir(t) / "history.csv"
            if hist.exists():
                epochs = pd.read_csv(hist)["time_s"]
                if len(epochs):
                    by_stage.setdefault("train", []).append(float(epochs.mean()) * cfg.train.epochs)
    means = {s: statistics.fmean(v) for s, v in by_stage.items()}
    total = sum(counts[s] * means[s] for s in means) / max(1, slots) if means else None
    startup = first_start - started if started is not None and first_start < float("inf") else None
    startup = startup if startup is None or startup >= 0 else None  # clocks disagree: leave it out
    return {"tasks": counts, "finished": done, "mean_task_s": {s: round(v, 1) for s, v in means.items()},
            "slots": slots, "projected_tasks_s": None if total is None else round(total, 1),
            "startup_s": None if startup is None else round(startup, 1),
            "projected_full_s": None if total is None else round(total + (startup or 0.0), 1),
            "not_projected": "writing the report after the last task (tens of seconds)",
            "unmeasured_stages": sorted(set(counts) - set(means)),
            "note": ("nothing finished: no projection (give the study more time)" if total is None else
                     "lower bound (some stages unmeasured)" if set(counts) - set(means) else "all stages measured")}


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def utilisation(path: Path | None) -> dict | None:
    if path is None or not path.exists():
        return None
    values = []
    for line in path.read_text().splitlines()[1:]:
        field = line.split(",")[0].strip().rstrip("%").strip()
        if field.isdigit():
            values.append(int(field))
    if not values:
        return None
    return {"samples": len(values), "mean_pct": round(statistics.fmean(values), 1),
            "median_pct": statistics.median(values)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget", type=float, required=True, help="seconds the study may run")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--device", default=None)
    ap.add_argument("--util", type=Path, default=None)
    args = ap.parse_args()
    raw = config(args.config, data_root=args.data_root, tiny=args.tiny, device=args.device)
    child = mp.get_context("spawn").Process(target=_run, args=(raw, str(args.out)))
    t0, wall0 = time.perf_counter(), time.time()
    child.start()
    child.join(args.budget)
    cut = child.is_alive()
    if cut:
        os.kill(child.pid, signal.SIGTERM)  # the study stops its workers; finished tasks stay
        child.join(60)
        if child.is_alive():
            child.kill()
            child.join()
    elapsed = time.perf_counter() - t0
    result = {"config": str(args.config), "budget_s": args.budget, "elapsed_s": round(elapsed, 1),
              "finished_whole_study": not cut and child.exitcode == 0, "exit_code": child.exitcode,
              **project(raw, args.out, started=wall0), "gpu_utilisation": utilisation(args.util)}
    if result["finished_whole_study"]:
        result["measured_full_s"] = round(elapsed, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
