"""Running a study's tasks: in this process, in local worker processes, or on a Ray cluster.

Every executor runs the same function, :func:`~serobust.study.context.run_task`, on the same tasks, and
every task writes its outputs to the study folder; the executor only decides where and how many at once.
What that means for the numbers depends on the device:

* on the CPU results are bit-identical whatever the executor and the number of jobs (the CPU thread count,
  which does change numbers, is a task param, see :func:`serobust.study.plan.numerics`);
* on CUDA results are statistically equal, not bit-identical: cuDNN's non-deterministic kernels and atomics
  change the last bits from run to run, and the sign of a gradient turns that into different adversarial
  examples. ``[execution] deterministic = true`` makes each GPU process repeatable on one machine
  (:func:`serobust.runtime.deterministic_cuda`); the run metadata records which mode ran.

The executors:

* :class:`InProcess`: one task at a time in this process (``jobs = 1``, the default), on the device the
  study names (``cuda:1`` stays GPU 1).
* :class:`LocalPool`: worker processes on this machine (:mod:`serobust.study.worker`), each started with the
  environment :func:`plan_slots` gives it: on CUDA its own GPU (``CUDA_VISIBLE_DEVICES``, ``jobs_per_gpu``
  workers per GPU) and ``cores / workers`` CPU threads; on the CPU ``threads`` threads each, with the job
  count capped by the cores. A worker lives for the whole run, keeping torch, the CUDA context and its
  data-set and model caches across tasks; it dies with the driver (``PR_SET_PDEATHSIG``, armed before it
  imports torch, and a check of its parent's pid while idle).
* :class:`RayPool`: Ray actors, one per slot (``num_cpus = threads``, ``num_gpus = 1 / jobs_per_gpu`` rounded
  down to Ray's 1e-4 resource unit so that ``jobs_per_gpu`` actors always fit on one GPU), on a Ray started
  for the run or on an existing cluster (``address = "auto"`` or ``"ray://host:10001"``; an address that
  does not answer fails within :data:`RAY_CONNECT_TIMEOUT_S` with a one-line error). An actor keeps its
  process, data-set cache and CUDA context across the tasks it runs.

:func:`execute` schedules: a task starts when its deps are done; a failed task stops new starts, lets the
running ones finish (their results are kept, so a re-run resumes) and raises :class:`TaskFailed` naming
its stage and key. Ctrl-C or SIGTERM terminates every worker before returning.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_connections
from typing import Any

from tqdm.auto import tqdm

from ..errors import SerobustError
from ..runtime import available_cores
from . import worker as worker_module
from .context import WorkerEnv, run_task
from .ray_pool import RAY_CONNECT_TIMEOUT_S, RayPool
from .store import StudyStore
from .tasks import Task, topological

__all__ = ["TaskFailed", "InProcess", "LocalPool", "RayPool", "WorkerSlot", "plan_slots", "gpu_share",
           "make_executor", "execute", "terminate_on_sigterm", "RAY_CONNECT_TIMEOUT_S"]

log = logging.getLogger(__name__)


class TaskFailed(RuntimeError):
    """A task raised; ``task`` is the task, ``__cause__`` its exception."""

    def __init__(self, task: Task, error: BaseException) -> None:
        self.task = task
        self.error = error
        super().__init__(f"task {task.label!r} (stage {task.stage}, key {task.key}) failed: "
                         f"{type(error).__name__}: {error}")


# ------------------------------------------------------------------------------------------ the plan

@dataclass(frozen=True)
class WorkerSlot:
    """What one worker process runs with: its CPU threads and, on CUDA, the one GPU it sees."""

    threads: int
    visible_devices: str | None = None  # CUDA_VISIBLE_DEVICES of the worker (None: inherited, CPU runs)


def gpu_ids(device: str) -> list[str]:
    """The physical ids of the GPUs a study on ``device`` may use, as ``CUDA_VISIBLE_DEVICES`` entries:
    this process's visible GPUs (``cuda``) or the one it names (``cuda:1``)."""
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible is not None else \
        [str(i) for i in range(torch.cuda.device_count())]
    index = torch.device(device).index
    if index is not None:
        if index >= len(ids):
            raise SerobustError(f"device {device} does not exist: {len(ids)} GPU(s) are visible", where="study.device")
        ids = [ids[index]]
    return ids


def plan_slots(jobs: int, *, threads: int, gpus: Sequence[str] = (), jobs_per_gpu: int = 1,
               cores: int | None = None) -> list[WorkerSlot]:
    """One :class:`WorkerSlot` per worker that fits this machine.

    On the CPU (``gpus`` empty) every worker runs ``threads`` threads; ``jobs = 0`` means ``cores // threads``
    workers and more than that is capped with a warning (more threads than cores only slow every task). On
    CUDA ``jobs = 0`` means ``jobs_per_gpu`` workers per GPU; workers take the GPUs in turn (worker i sees
    ``gpus[i % len(gpus)]``), the count is capped by the cores, and the cores are shared out
    (``cores // workers`` threads each; CUDA numerics do not depend on the CPU thread count).
    """
    cores = cores or available_cores()
    if gpus:
        n = jobs or len(gpus) * jobs_per_gpu
        if n > cores:
            log.warning("%d jobs on %d CPU cores: capped at %d (one core per GPU worker at least)", n, cores, cores)
            n = cores
        share = max(1, cores // n)
        return [WorkerSlot(share, gpus[i % len(gpus)]) for i in range(n)]
    fit = max(1, cores // threads)
    n = jobs or fit
    if n > fit:
        log.warning("%d jobs x %d threads exceed the %d CPU cores: capped at %d jobs", n, threads, cores, fit)
        n = fit
    return [WorkerSlot(threads) for _ in range(n)]


def gpu_share(jobs_per_gpu: int) -> float:
    """``1 / jobs_per_gpu`` rounded *down* to Ray's resource unit (1e-4): Ray rounds fractional resources
    to 4 decimals, and ``round(1/3, 4) * 3`` fits while ``0.33334 * 3`` would lose a slot."""
    return math.floor(10_000 / jobs_per_gpu) / 10_000


# ------------------------------------------------------------------------------------------ executors

class InProcess:
    """Run each task at once, in this process, on ``env.device`` (an explicit ``cuda:1`` included)."""

    name = "local"
    slots = 1

    def __init__(self, env: WorkerEnv) -> None:
        self.env = env
        self._done: list[tuple[object, BaseException | None]] = []

    def submit(self, task: Task) -> object:
        return self.call(run_task, task, self.env)

    def call(self, fn: Callable[..., Any], *args: Any) -> object:
        handle = object()
        try:
            fn(*args)
            self._done.append((handle, None))
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - reported by execute() with the task's name
            self._done.append((handle, e))
        return handle

    def wait(self, handles: Sequence[object]) -> list[tuple[object, BaseException | None]]:
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        pass

    def terminate(self, handles: Sequence[object] = ()) -> None:
        pass


class _Worker:
    """One worker process of a :class:`LocalPool` and the driver's end of its connection."""

    def __init__(self, slot: WorkerSlot, *, deterministic: bool) -> None:
        self.slot = slot
        ours, theirs = socket.socketpair()
        env = {**os.environ, worker_module.PARENT_ENV: str(os.getpid()), worker_module.THREADS_ENV: str(slot.threads),
               "OMP_NUM_THREADS": str(slot.threads), "MKL_NUM_THREADS": str(slot.threads)}
        if slot.visible_devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot.visible_devices
        if deterministic:
            from ..runtime import CUBLAS_WORKSPACE

            env[worker_module.DETERMINISTIC_ENV] = "1"
            env.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        code = "import serobust.study.worker as w; w.main()"
        self.process = subprocess.Popen([sys.executable, "-c", code, worker_module.MARKER, str(theirs.fileno())],
                                        env=env, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        self.conn = Connection(ours.detach())

    def send(self, fn: Callable[..., Any], args: tuple) -> None:
        self.conn.send((fn, args))

    def answer(self) -> tuple[Any, BaseException | None]:
        """The answer to the last call: ``(result, None)`` on success, ``(None, error)`` otherwise (a dead
        worker included)."""
        try:
            status, value = self.conn.recv()
        except (EOFError, OSError):
            code = self.process.wait(timeout=10)
            return None, RuntimeError(f"worker process {self.process.pid} died (exit code {code}) while running "
                                      "the task; out of memory? a rerun resumes from the finished tasks")
        return (None, value) if status == "error" else (value, None)

    def stop(self, *, kill: bool) -> None:
        with contextlib.suppress(Exception):
            if kill:
                self.process.terminate()
            else:
                self.conn.send(None)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        with contextlib.suppress(Exception):
            self.conn.close()


class LocalPool:
    """Worker processes on this machine, one per :class:`WorkerSlot`, alive for the whole run."""

    name = "local"

    def __init__(self, env: WorkerEnv, slots: Sequence[WorkerSlot], *, deterministic: bool = False) -> None:
        import torch

        # a worker sees one GPU (its own CUDA_VISIBLE_DEVICES): "cuda" there is that GPU
        self.env = WorkerEnv(env.root, torch.device(env.device).type) if env.device.startswith("cuda") else env
        self.plan = list(slots)
        self.slots = len(self.plan)
        self._deterministic = deterministic
        self._workers = [_Worker(slot, deterministic=deterministic) for slot in self.plan]
        self._idle = list(range(self.slots))
        self._busy: dict[int, int] = {}  # handle -> worker index
        self._results: dict[int, Any] = {}
        self._ids = itertools.count()

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers]

    def submit(self, task: Task) -> int:
        return self.call(run_task, task, self.env)

    def call(self, fn: Callable[..., Any], *args: Any) -> int:
        """Run ``fn(*args)`` in an idle worker (a module-level function: it travels by name)."""
        if not self._idle:
            raise RuntimeError("LocalPool.call with every worker busy: wait for one first")
        i = self._idle.pop(0)
        if self._workers[i].process.poll() is not None:  # died earlier: replace it
            self._workers[i] = _Worker(self.plan[i], deterministic=self._deterministic)
        handle = next(self._ids)
        self._busy[handle] = i
        self._workers[i].send(fn, args)
        return handle

    def wait(self, handles: Sequence[int]) -> list[tuple[int, BaseException | None]]:
        by_conn = {self._workers[self._busy[h]].conn: h for h in handles}
        out = []
        for conn in wait_connections(list(by_conn)):
            handle = by_conn[conn]
            i = self._busy.pop(handle)
            value, error = self._workers[i].answer()
            if error is None:
                self._results[handle] = value
            out.append((handle, error))
            self._idle.append(i)
        return out

    def result(self, handle: int) -> Any:
        """The return value of a finished call (once)."""
        return self._results.pop(handle)

    def close(self) -> None:
        for w in self._workers:
            w.stop(kill=False)

    def terminate(self, handles: Sequence[int] = ()) -> None:
        for w in self._workers:
            w.stop(kill=True)


def make_executor(execution: Any, env: WorkerEnv, *, jobs: int | None = None):
    """The executor an ``[execution]`` section (and ``--jobs``) asks for, fitted to this machine.

    ``jobs = 0`` means one job per ``threads`` CPU cores on the CPU, ``jobs_per_gpu`` per GPU on CUDA (see
    :func:`plan_slots`); ``threads`` beyond the cores is capped with a warning.
    """
    n = execution.jobs if jobs is None else jobs
    deterministic = bool(getattr(execution, "deterministic", False))
    threads = cap_threads(execution.threads)
    cuda = env.device.startswith("cuda")
    if execution.executor == "ray":  # jobs = 0: as many at once as the cluster's resources admit
        return RayPool(env, n, address=execution.address, threads=threads, deterministic=deterministic,
                       gpu_fraction=gpu_share(execution.jobs_per_gpu) if cuda else 0.0)
    slots = plan_slots(n, threads=threads, gpus=gpu_ids(env.device) if cuda else (),
                       jobs_per_gpu=execution.jobs_per_gpu)
    if len(slots) == 1:
        return InProcess(env)
    return LocalPool(env, slots, deterministic=deterministic)


def cap_threads(threads: int, cores: int | None = None) -> int:
    """``threads`` capped by the cores, with a warning (1000 threads on 2 cores would crawl, not fail)."""
    cores = cores or available_cores()
    if threads > cores:
        log.warning("execution.threads = %d exceeds the %d CPU cores: using %d", threads, cores, cores)
        return cores
    return threads


# ------------------------------------------------------------------------------------------ scheduling

def _eta(pending: list[Task], running: dict[Any, Task], took: dict[str, list[float]], slots: int) -> str:
    """Remaining time from the mean duration of each stage so far (unknown stages: the overall mean)."""
    every = [s for v in took.values() for s in v]
    if not every:
        return "?"
    mean = sum(every) / len(every)
    left = sum((sum(took[t.stage]) / len(took[t.stage])) if took.get(t.stage) else mean
               for t in [*pending, *running.values()])
    seconds = left / max(1, min(slots, len(pending) + len(running)))
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) if seconds >= 3600 else time.strftime(
        "%M:%S", time.gmtime(seconds))


def _priority(task: Task) -> int:
    """Which ready task starts first (``Stage.priority``, lower first): long tasks that others wait for before
    short leaves, so that every slot stays busy (training gates everything; AutoAttack and the masking checks
    are the longest leaves)."""
    from .stages import STAGES

    return STAGES[task.stage].priority


def execute(tasks: Sequence[Task], executor: Any, store: StudyStore, *, progress: bool | None = None) -> None:
    """Run every task not yet done, deps first, as many at once as the executor has slots.

    Raises:
        TaskFailed: a task raised (after the running ones finished; finished results are kept).
    """
    order = topological(tasks)
    finished = {t.key for t in order if store.done(t)}
    pending = [t for t in order if t.key not in finished]
    running: dict[Any, Task] = {}
    took: dict[str, list[float]] = {}
    started: dict[str, float] = {}
    failure: TaskFailed | None = None
    if len(finished):
        log.info("%d of %d tasks already done: reusing them", len(finished), len(order))
    bar = tqdm(total=len(order), initial=len(order) - len(pending), desc="study", unit="task",
               disable=(not progress) if progress is not None else None, dynamic_ncols=True)
    try:
        while pending or running:
            ready = sorted((t for t in pending if all(d.key in finished for d in t.deps.values())),
                           key=_priority)
            for task in ready if failure is None else []:
                if len(running) >= executor.slots:
                    break
                pending.remove(task)
                log.info("start %s %s", task.stage, task.label)
                started[task.key] = time.perf_counter()
                running[executor.submit(task)] = task
            if not running:
                break
            bar.set_postfix_str(f"running: {', '.join(f'{t.stage} {t.label}' for t in running.values())} | "
                                f"ETA {_eta(pending, running, took, executor.slots)}")
            for handle, error in executor.wait(list(running)):
                task = running.pop(handle)
                seconds = time.perf_counter() - started.pop(task.key)
                if error is not None:
                    log.error("task %s %s (key %s) failed: %s: %s", task.stage, task.label, task.key,
                              type(error).__name__, error)
                    failure = failure or TaskFailed(task, error)
                    continue
                took.setdefault(task.stage, []).append(seconds)
                finished.add(task.key)
                log.info("done %s %s in %.1f s", task.stage, task.label, seconds)
                bar.update(1)
        if failure is not None:
            raise failure from failure.error
    except BaseException:
        executor.terminate(list(running))
        raise
    finally:
        bar.close()
    executor.close()


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt for the ``with`` block, so workers are stopped the same way."""
    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
