"""The study engine: task keys, executors that agree, failures, resume, signals and the study lock."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import tiny_study

from serobust.config import study_config_from_dict
from serobust.pipeline import plan, run_study
from serobust.study.executors import TaskFailed
from serobust.study.plan import numerics
from serobust.study.store import StudyLockedError, TaskStoreError, study_lock

ENV = {"device": "cpu", "threads": 1}
TIMING = ["time_s", "images_per_s"]  # wall-clock measurements of a run, not results


def _cfg(**sections):
    return study_config_from_dict(tiny_study(**sections))


def _numbers(out: Path) -> tuple[dict, dict[str, pd.DataFrame]]:
    """results.json without its run metadata, and every table without wall-clock columns."""
    results = json.loads((out / "results.json").read_text())
    results.pop("meta")
    results["config"].pop("execution")  # how it ran, not what it computed
    tables = {p.stem: pd.read_csv(p).drop(columns=TIMING, errors="ignore") for p in (out / "tables").glob("*.csv")}
    return results, tables


def _manifests(out: Path) -> set[Path]:
    return set((out / "tasks").rglob("manifest.json"))


# ---------------------------------------------------------------------------------------------- keys

def test_changing_a_model_setting_changes_every_key_that_reads_the_model():
    """min_hidden enters the train key, hence every dependant: old results can never be reused."""
    cfg = _cfg()
    other = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, min_hidden=4))
    a, b = plan(cfg, ENV), plan(other, ENV)
    assert len(a) == len(b) > 10
    assert not {t.key for t in a} & {t.key for t in b}


def test_a_stage_setting_changes_only_the_keys_of_that_stage():
    cfg = _cfg()
    other = dataclasses.replace(cfg, probe=dataclasses.replace(cfg.probe, size=20))
    changed = {t.stage for t, u in zip(plan(cfg, ENV), plan(other, ENV)) if t.key != u.key}
    assert changed == {"probe"}


def test_cpu_thread_count_is_part_of_the_key_but_the_executor_is_not():
    cfg = _cfg()
    keys = {t.key for t in plan(cfg, ENV)}
    assert keys != {t.key for t in plan(cfg, {"device": "cpu", "threads": 2})}
    jobs = dataclasses.replace(cfg, execution=dataclasses.replace(cfg.execution, jobs=2, executor="ray"))
    assert keys == {t.key for t in plan(jobs, numerics(jobs, "cpu"))}


# ---------------------------------------------------------------------------------------------- executors

@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    run_study(_cfg(), out_dir=out, progress=False)
    return out


def test_two_local_jobs_give_exactly_the_numbers_of_one(local_run, tmp_path):
    run_study(_cfg(execution={"jobs": 2}), out_dir=tmp_path, progress=False)
    results, tables = _numbers(tmp_path)
    ref_results, ref_tables = _numbers(local_run)
    assert results == ref_results
    assert tables.keys() == ref_tables.keys()
    for name, frame in tables.items():
        pd.testing.assert_frame_equal(frame, ref_tables[name], check_exact=True, obj=name)
    meta = json.loads((tmp_path / "results.json").read_text())["meta"]
    assert meta["executor"] == {"name": "local", "jobs": 2}


def test_ray_with_two_workers_gives_exactly_the_numbers_of_one_local_job(local_run, tmp_path):
    pytest.importorskip("ray")
    run_study(_cfg(execution={"executor": "ray", "jobs": 2}), out_dir=tmp_path, progress=False)
    results, tables = _numbers(tmp_path)
    ref_results, ref_tables = _numbers(local_run)
    assert results == ref_results
    for name, frame in tables.items():
        pd.testing.assert_frame_equal(frame, ref_tables[name], check_exact=True, obj=name)


def test_second_run_reuses_every_task(local_run):
    stamps = {p: p.stat().st_mtime_ns for p in _manifests(local_run)}
    run_study(_cfg(), out_dir=local_run, progress=False)
    assert {p: p.stat().st_mtime_ns for p in _manifests(local_run)} == stamps


def test_retraining_recomputes_everything_downstream(local_run, tmp_path):
    import shutil

    work = tmp_path / "copy"
    shutil.copytree(local_run, work, symlinks=True)
    before = _manifests(work)
    run_study(_cfg(model={"min_hidden": 4}), out_dir=work, progress=False)
    assert len(_manifests(work) - before) == len(before)  # every task ran again, none was reused


# ---------------------------------------------------------------------------------------------- failures

def test_a_failing_task_is_named_and_a_rerun_resumes(local_run, tmp_path, monkeypatch):
    import shutil

    work = tmp_path / "copy"
    shutil.copytree(local_run, work, symlinks=True)
    for manifest in (work / "tasks" / "mechanism").rglob("manifest.json"):
        manifest.unlink()  # as if the run had been killed before the mechanism stage
    import serobust.excitation.adaptive
    import serobust.excitation.interventions

    real = serobust.excitation.adaptive.adaptive_attacks

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    # the stage resolves it from its defining module when it runs, so that is where it is replaced
    monkeypatch.setattr(serobust.excitation.adaptive, "adaptive_attacks", broken)
    with pytest.raises(TaskFailed, match=r"stage mechanism, key [0-9a-f]{16}\) failed: RuntimeError: disk on fire"):
        run_study(_cfg(), out_dir=work, progress=False)
    assert json.loads((work / "results.json").read_text())["meta"]["run_id"]  # the old report still stands
    monkeypatch.setattr(serobust.excitation.adaptive, "adaptive_attacks", real)
    real_iv = serobust.excitation.interventions.interventions
    calls = []
    monkeypatch.setattr(serobust.excitation.interventions, "interventions",
                        lambda *a, **k: calls.append(1) or real_iv(*a, **k))
    before = {p: p.stat().st_mtime_ns for p in _manifests(work)}
    run_study(_cfg(), out_dir=work, progress=False)
    assert len(calls) == 2  # the two mechanism tasks ran again, nothing else
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())


def test_a_corrupt_checkpoint_is_refused_before_any_new_work(local_run, tmp_path):
    """The manifest's digest of last.pt catches the damage when the run starts, naming the folder to delete."""
    import shutil

    work = tmp_path / "copy"
    shutil.copytree(local_run, work, symlinks=True)
    ckpt = next((work / "tasks" / "train").glob("baseline-s1-*/last.pt"))
    ckpt.write_bytes(b"not a checkpoint")
    for manifest in (work / "tasks" / "evaluate").rglob("manifest.json"):
        manifest.unlink()
    before = _manifests(work)
    with pytest.raises(TaskStoreError, match=r"last\.pt is 16 bytes.*delete the folder") as failed:
        run_study(_cfg(execution={"jobs": 2}), out_dir=work, progress=False)
    assert _manifests(work) == before  # refused before anything ran
    assert failed.value.where == str(ckpt.parent) and str(ckpt.parent) in str(failed.value)
    shutil.rmtree(ckpt.parent)  # the fix the message names
    before = _manifests(work)
    run_study(_cfg(execution={"jobs": 2}), out_dir=work, progress=False)
    rerun = {p.parent.parent.name + "/" + p.parent.name.rsplit("-", 1)[0] for p in _manifests(work) - before}
    assert "train/baseline-s1" in rerun and not any(name.startswith("train/") and name.endswith("s0")
                                                    for name in rerun)


# ---------------------------------------------------------------------------------------------- lock, signals

def test_a_second_run_of_the_same_study_is_refused_naming_the_holder(tmp_path):
    with study_lock(tmp_path), pytest.raises(StudyLockedError, match=rf"pid {os.getpid()} on "):
        run_study(_cfg(), out_dir=tmp_path, progress=False)


_SLOW = """
import sys
sys.path.insert(0, {tests!r})
from conftest import tiny_study
from serobust.config import study_config_from_dict
from serobust.pipeline import run_study
if __name__ == "__main__":
    raw = tiny_study(train={{"epochs": 400}}, execution={{"jobs": 2}})
    run_study(study_config_from_dict(raw), out_dir={out!r}, progress=False)
"""


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(entry.name))
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to list child processes")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopping_a_parallel_run_leaves_no_worker_behind(tmp_path, sig):
    script = tmp_path / "slow.py"
    script.write_text(_SLOW.format(tests=str(Path(__file__).parent), out=str(tmp_path / "out")))
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    workers: set[int] = set()
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.5)
        workers = {c for c in _children(proc.pid)
                   if "serobust-worker" in Path(f"/proc/{c}/cmdline").read_text(errors="ignore")}
    assert len(workers) >= 2, "the run did not start its workers"
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    time.sleep(0.5)
    alive = {w for w in workers if Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text()}
    assert not alive, f"orphaned workers {alive}; stderr: {err[-2000:]}"
