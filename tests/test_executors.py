"""Executors that fit the machine: the worker plan (threads, GPUs), worker processes that get what the plan
says and die with the driver, Ray actors reused across tasks, exact GPU shares, explicit device indices."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from serobust.errors import SerobustError
from serobust.study import executors
from serobust.study.context import WorkerEnv, context_for
from serobust.study.executors import InProcess, LocalPool, WorkerSlot, gpu_share, make_executor, plan_slots
from serobust.study.worker import describe


def _execution(**kw):
    base = dict(executor="local", jobs=1, jobs_per_gpu=4, threads=1, address="", deterministic=False)
    return SimpleNamespace(**{**base, **kw})


def test_cpu_plan_caps_jobs_by_cores_and_threads(caplog):
    assert plan_slots(0, threads=1, cores=8) == [WorkerSlot(1)] * 8
    assert plan_slots(0, threads=3, cores=8) == [WorkerSlot(3)] * 2
    with caplog.at_level(logging.WARNING, logger="serobust.study.executors"):
        assert plan_slots(5, threads=2, cores=4) == [WorkerSlot(2)] * 2
    assert "capped at 2 jobs" in caplog.text


def test_cuda_plan_gives_each_worker_one_gpu_and_a_share_of_the_cores(caplog):
    slots = plan_slots(0, threads=1, gpus=["0", "1"], jobs_per_gpu=3, cores=16)
    assert [s.visible_devices for s in slots] == ["0", "1"] * 3
    assert {s.threads for s in slots} == {16 // 6}
    with caplog.at_level(logging.WARNING, logger="serobust.study.executors"):
        capped = plan_slots(0, threads=1, gpus=["0", "1"], jobs_per_gpu=4, cores=4)
    assert len(capped) == 4 and {s.threads for s in capped} == {1} and "capped at 4" in caplog.text


def test_thousand_threads_are_capped_by_the_cores_with_a_warning(caplog):
    from serobust.config import study_config_from_dict
    from serobust.runtime import available_cores
    from serobust.study.plan import numerics

    with caplog.at_level(logging.WARNING, logger="serobust.study.executors"):
        assert executors.cap_threads(1000, cores=2) == 2
    assert "exceeds the 2 CPU cores" in caplog.text
    cfg = study_config_from_dict({"study": {"name": "t", "seeds": [0]}, "execution": {"threads": 1000}})
    assert numerics(cfg, "cpu").threads == available_cores()  # the key says what runs


def test_gpu_shares_are_exact_multiples_of_rays_unit_so_no_slot_is_lost():
    for k in range(1, 65):
        share = gpu_share(k)
        assert share * k <= 1 + 1e-12, k  # k actors fit on one GPU
        assert abs(share * 10_000 - round(share * 10_000)) < 1e-6  # Ray does not round it up
        assert 1 - share * k < k * 1e-4 + 1e-12  # and nothing more than rounding is left over
    assert gpu_share(3) == 0.3333 and gpu_share(4) == 0.25


def test_explicit_device_index_stays_in_process(tmp_path, monkeypatch):
    """cuda:1 is GPU 1 in the in-process executor (mocked: no GPU here), and GPU 1 for pool workers."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    seen = []
    monkeypatch.setattr(executors, "run_task", lambda task, env: seen.append(context_for(env).device))
    executor = make_executor(_execution(jobs=1), WorkerEnv(str(tmp_path), "cuda:1"))
    assert isinstance(executor, InProcess)
    executor.submit(SimpleNamespace())
    assert seen == [torch.device("cuda", 1)]
    assert executors.gpu_ids("cuda:1") == ["1"] and executors.gpu_ids("cuda") == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    assert executors.gpu_ids("cuda:1") == ["6"]  # the physical id behind index 1
    with pytest.raises(SerobustError, match="does not exist"):
        executors.gpu_ids("cuda:2")


def run_all(pool, fn, n):
    """``fn()`` n times through the pool's slots; the results in order of completion."""
    running, results = [], []
    for _ in range(n):
        if len(running) >= pool.slots:
            for handle, error in pool.wait(running):
                assert error is None, error
                running.remove(handle)
                results.append(pool.result(handle))
        running.append(pool.call(fn))
    while running:
        for handle, error in pool.wait(running):
            assert error is None, error
            running.remove(handle)
            results.append(pool.result(handle))
    return results


def test_workers_run_with_the_threads_and_gpus_of_their_slot_and_live_across_tasks(tmp_path):
    pool = LocalPool(WorkerEnv(str(tmp_path), "cpu"), [WorkerSlot(1, "3"), WorkerSlot(2, "5")])
    try:
        seen = run_all(pool, describe, 6)
        pids = pool.pids
    finally:
        pool.close()
    by_pid = {d["pid"]: d for d in seen}
    assert set(by_pid) == set(pids)  # 6 tasks, 2 processes: workers are reused
    planned = dict(zip(pids, [("3", 1), ("5", 2)]))
    for pid, d in by_pid.items():
        assert (d["cuda_visible_devices"], d["torch_threads"]) == planned[pid]
        assert d["omp_num_threads"] == str(planned[pid][1])


def test_a_task_error_and_a_dead_worker_are_reported_and_the_pool_goes_on(tmp_path):
    pool = LocalPool(WorkerEnv(str(tmp_path), "cpu"), [WorkerSlot(1)])
    try:
        handle = pool.call(int, "not a number")
        [(h, error)] = pool.wait([handle])
        assert h == handle and isinstance(error, ValueError)
        handle = pool.call(os._exit, 3)
        [(_, error)] = pool.wait([handle])
        assert "died (exit code 3)" in str(error)
        assert run_all(pool, describe, 1)[0]["pid"] == pool.pids[0]  # a fresh worker took its place
    finally:
        pool.close()


_DRIVER = """
import sys, time
sys.path.insert(0, {root!r})
from serobust.study.context import WorkerEnv
from serobust.study.executors import LocalPool, WorkerSlot
pool = LocalPool(WorkerEnv({tmp!r}, "cpu"), [WorkerSlot(1), WorkerSlot(1)])
print(" ".join(map(str, pool.pids)), flush=True)
pool.call(time.sleep, 60)
pool.call(time.sleep, 60)
time.sleep(60)
"""


def _alive(pid):
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_kill_9_of_the_driver_one_second_after_start_leaves_no_worker(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER.format(root=str(Path(__file__).parents[1]), tmp=str(tmp_path)))
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in driver.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    time.sleep(1.0)  # the workers are still importing torch: the death signal is armed before that
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=10)
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)], "workers outlived the driver"


def test_worker_source_imports_nothing_heavy_before_the_death_signal():
    """The worker module imports only the standard library; main() arms PR_SET_PDEATHSIG first."""
    import ast
    import inspect

    from serobust.study import worker

    tree = ast.parse(inspect.getsource(worker))
    top = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
    assert top <= {"os", "signal", "sys", "__future__"}
    body = ast.parse(textwrap.dedent(inspect.getsource(worker.main))).body[0].body
    first_call = next(n for n in body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call))
    assert first_call.value.func.id == "die_with_parent"


def test_unreachable_ray_address_fails_fast_with_one_line():
    pytest.importorskip("ray")
    t0 = time.perf_counter()
    for address in ("127.0.0.1:1", "ray://127.0.0.1:1"):
        with pytest.raises(SerobustError, match=r"execution.address = .*no Ray cluster answers") as e:
            executors.RayPool(WorkerEnv("/tmp", "cpu"), 1, address=address, threads=1, gpu_fraction=0.0)
        assert "\n" not in str(e.value)
    assert time.perf_counter() - t0 < 60


def test_ray_actors_keep_their_process_across_tasks(tmp_path):
    pytest.importorskip("ray")
    pool = executors.RayPool(WorkerEnv(str(tmp_path), "cpu"), 2, address="", threads=1, gpu_fraction=0.0)
    try:
        seen = run_all(pool, describe, 6)
    finally:
        pool.close()
    pids = {d["pid"] for d in seen}
    assert len(seen) == 6 and 1 <= len(pids) <= 2 < len(seen)
    assert os.getpid() not in pids


def test_determinism_is_stated_per_device_and_the_cuda_mode_is_a_config_key():
    from serobust.config import study_config_from_dict
    from serobust.runtime import numerics_record

    cpu = numerics_record(torch.device("cpu"))
    assert cpu["determinism"].startswith("bit-identical") and cpu["deterministic_mode"] is False
    cuda = numerics_record(torch.device("cuda"), deterministic=True)  # no GPU needed to describe it
    assert cuda["determinism"].startswith("statistically equal") and cuda["deterministic_mode"] is True
    assert cuda["scoring"].startswith("float32") and cuda["training"].startswith("bf16")
    cfg = study_config_from_dict({"study": {"name": "t", "seeds": [0]}, "execution": {"deterministic": True}})
    assert cfg.execution.deterministic is True
    assert study_config_from_dict({"study": {"name": "t", "seeds": [0]}}).execution.deterministic is False
