"""Running a study's tasks: in this process, in local worker processes, or on a Ray cluster.

Every executor runs the same function, :func:`~serobust.study.context.run_task`, on the same tasks, and
every task writes its outputs to the study folder; the executor only decides where and how many at once.
Results therefore do not depend on the executor (the CPU thread count, which does change numbers, is a
task param, see :func:`serobust.study.plan.numerics`).

* :class:`InProcess`: one task at a time in this process (``jobs = 1``, the default).
* :class:`LocalPool`: ``jobs`` worker processes (spawned, so CUDA and OpenMP start clean); on CUDA the
  workers are spread over every visible GPU, ``jobs_per_gpu`` per GPU.
* :class:`RayPool`: Ray tasks with ``num_cpus = threads`` and fractional ``num_gpus = 1 / jobs_per_gpu``, on
  a Ray started for the run or on an existing cluster (``address = "auto"`` or ``"ray://host:10001"``).

:func:`execute` schedules: a task starts when its deps are done; a failed task stops new starts, lets the
running ones finish (their results are kept, so a re-run resumes) and raises :class:`TaskFailed` naming
its stage and key. Ctrl-C or SIGTERM terminates every worker before returning.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Iterator, Sequence
from typing import Any

from tqdm.auto import tqdm

from ..errors import SerobustError
from .context import WorkerEnv, run_task
from .store import StudyStore
from .tasks import Task, topological

__all__ = ["TaskFailed", "InProcess", "LocalPool", "RayPool", "make_executor", "execute", "terminate_on_sigterm"]

log = logging.getLogger(__name__)


class TaskFailed(RuntimeError):
    """A task raised; ``task`` is the task, ``__cause__`` its exception."""

    def __init__(self, task: Task, error: BaseException) -> None:
        self.task = task
        self.error = error
        super().__init__(f"task {task.label!r} (stage {task.stage}, key {task.key}) failed: "
                         f"{type(error).__name__}: {error}")


# ------------------------------------------------------------------------------------------ executors

class InProcess:
    """Run each task at once, in this process."""

    name = "local"
    slots = 1

    def __init__(self, env: WorkerEnv) -> None:
        self.env = env
        self._done: list[tuple[object, BaseException | None]] = []

    def submit(self, task: Task) -> object:
        handle = object()
        try:
            run_task(task, self.env)
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


def _init_worker(env: WorkerEnv, gpus: Any) -> None:
    """Worker start: ignore Ctrl-C (the driver stops us), die with the driver, take a GPU."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(Exception):  # Linux: SIGKILL this worker when the driver process dies
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s worker %(process)d: %(message)s")
    if env.device == "cuda":
        import torch

        torch.cuda.set_device(gpus.get())


class LocalPool:
    """``jobs`` spawned worker processes on this machine."""

    name = "local"

    def __init__(self, env: WorkerEnv, jobs: int, *, gpus: int = 0) -> None:
        self.env = env
        self.slots = jobs
        ctx = mp.get_context("spawn")
        queue = ctx.Queue() if gpus else None
        if queue is not None:
            for i in range(jobs):
                queue.put(i % gpus)
        self._pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                                            initargs=(env, queue))

    def submit(self, task: Task) -> cf.Future:
        return self._pool.submit(run_task, task, self.env)

    def wait(self, handles: Sequence[cf.Future]) -> list[tuple[cf.Future, BaseException | None]]:
        done, _ = cf.wait(handles, return_when=cf.FIRST_COMPLETED)
        return [(f, f.exception()) for f in done]

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def terminate(self, handles: Sequence[cf.Future] = ()) -> None:
        processes = list(getattr(self._pool, "_processes", {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            with contextlib.suppress(Exception):
                p.terminate()
        for p in processes:
            with contextlib.suppress(Exception):
                p.join(timeout=10)


class RayPool:
    """Ray tasks: a local Ray started for the run (``address = ""``) or an existing cluster."""

    name = "ray"

    def __init__(self, env: WorkerEnv, jobs: int, *, address: str, threads: int, gpu_fraction: float) -> None:
        try:
            import ray
        except ImportError:
            raise SerobustError("execution.executor = 'ray' needs Ray: pip install 'serobust[ray]' "
                                "(or pip install ray)", where="execution.executor") from None
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            kw: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                                  "log_to_driver": False}
            if address:
                ray.init(address=address, **kw)
            else:
                ray.init(num_cpus=jobs * threads if jobs > 0 else None, **kw)
        self.env = env
        self.slots = jobs if jobs > 0 else 1 << 30  # 0: as many as the cluster's resources admit
        self._remote = ray.remote(num_cpus=threads, num_gpus=gpu_fraction, max_retries=0)(run_task)

    def submit(self, task: Task) -> Any:
        return self._remote.remote(task, self.env)

    def wait(self, handles: Sequence[Any]) -> list[tuple[Any, BaseException | None]]:
        ready, _ = self._ray.wait(list(handles), num_returns=1)
        out = []
        for ref in ready:
            try:
                self._ray.get(ref)
                out.append((ref, None))
            except Exception as e:  # noqa: BLE001 - RayTaskError wraps the task's exception
                out.append((ref, getattr(e, "cause", None) or e))
        return out

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()

    def terminate(self, handles: Sequence[Any] = ()) -> None:
        for ref in handles:
            with contextlib.suppress(Exception):
                self._ray.cancel(ref, force=True)
        self.close()


def make_executor(execution: Any, env: WorkerEnv, *, jobs: int | None = None):
    """The executor an ``[execution]`` section (and ``--jobs``) asks for, with ``jobs`` resolved.

    ``jobs = 0`` means one job per CPU core / ``threads`` on the CPU, ``jobs_per_gpu`` per visible GPU on CUDA.
    """
    import torch

    n = execution.jobs if jobs is None else jobs
    gpus = torch.cuda.device_count() if env.device == "cuda" else 0
    if n == 0:
        n = gpus * execution.jobs_per_gpu if gpus else max(1, (os.cpu_count() or 1) // execution.threads)
    if execution.executor == "ray":  # jobs = 0: as many at once as the cluster's resources admit
        fraction = 1.0 / execution.jobs_per_gpu if env.device == "cuda" else 0.0
        return RayPool(env, execution.jobs if jobs is None else jobs, address=execution.address,
                       threads=execution.threads, gpu_fraction=fraction)
    if n == 1:
        return InProcess(env)
    return LocalPool(env, n, gpus=gpus)


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


#: Which ready task starts first: long tasks that others wait for before short leaves, so that every slot
#: stays busy (training gates everything; AutoAttack and the masking checks are the longest leaves).
PRIORITY = {"train": 0, "autoattack": 1, "diagnostics": 2, "evaluate": 3, "detect": 4, "probe": 5, "mechanism": 6,
            "transfer": 7, "examples": 8}


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
                           key=lambda t: PRIORITY.get(t.stage, len(PRIORITY)))
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
