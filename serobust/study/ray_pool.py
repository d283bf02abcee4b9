"""The Ray executor: tasks as calls on long-lived Ray actors, on one machine or a cluster.

:class:`RayPool` has the interface of :class:`serobust.study.executors.LocalPool` (``submit``, ``call``,
``wait``, ``result``, ``close``, ``terminate``); :func:`serobust.study.executors.make_executor` builds it for
``execution.executor = "ray"``. Each actor is one process that runs its calls one after another and keeps what
it loaded (torch, the CUDA context, the data-set and model caches), with the study's thread count and
determinism settings. An ``address`` that does not answer fails in well under a minute with one line naming
the fix (:data:`RAY_CONNECT_TIMEOUT_S`), instead of Ray's own long retries.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import SerobustError
from .context import WorkerEnv, run_task
from .tasks import Task

__all__ = ["RayPool", "RAY_CONNECT_TIMEOUT_S"]

#: seconds a Ray ``address`` has to answer (TCP) and to finish ``ray.init`` before the run fails
RAY_CONNECT_TIMEOUT_S = 30.0


class _RayWorker:
    """A Ray actor: one process that runs calls one after another and keeps what it loaded (torch, the CUDA
    context, :func:`~serobust.study.context.context_for`'s data-set and model caches)."""

    def __init__(self, threads: int, deterministic: bool) -> None:
        import torch

        from ..runtime import deterministic_cuda

        torch.set_num_threads(threads)
        deterministic_cuda(deterministic)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def pid(self) -> int:
        return os.getpid()


def _ray_init(ray: Any, address: str, timeout: float, **kw: Any) -> None:
    """``ray.init``; a remote ``address`` must answer a TCP connect and finish ``init`` within ``timeout``.

    Raises:
        SerobustError: one line naming the address and the fix.
    """
    if not address:
        ray.init(**kw)
        return
    kw.pop("num_cpus", None)
    if address != "auto":
        target = address.removeprefix("ray://")
        host, _, port = target.rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=min(timeout, 10.0)):
                pass
        except (OSError, ValueError) as e:
            raise SerobustError(f"execution.address = {address!r}: no Ray cluster answers there "
                                f"({getattr(e, 'strerror', None) or e}); start one (ray start --head) or fix "
                                "the address (\"auto\", \"host:6379\" or \"ray://host:10001\")",
                                where="execution.address") from None
    failure: list[BaseException] = []

    def connect() -> None:
        try:
            ray.init(address=address, **kw)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(e)

    thread = threading.Thread(target=connect, daemon=True, name="ray-connect")
    thread.start()
    thread.join(timeout)
    if thread.is_alive() or failure:
        reason = f"{type(failure[0]).__name__}: {str(failure[0]).splitlines()[0]}" if failure else \
            f"no answer within {timeout:.0f} s"
        raise SerobustError(f"execution.address = {address!r}: could not join the Ray cluster ({reason}); "
                            "check that it runs (ray status) and the address", where="execution.address")


class RayPool:
    """Ray actors, one per slot: a local Ray started for the run (``address = ""``) or an existing cluster."""

    name = "ray"

    def __init__(self, env: WorkerEnv, jobs: int, *, address: str, threads: int, gpu_fraction: float,
                 connect_timeout: float = RAY_CONNECT_TIMEOUT_S, deterministic: bool = False) -> None:
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
            if deterministic:
                from ..runtime import CUBLAS_WORKSPACE

                kw["runtime_env"] = {"env_vars": {"CUBLAS_WORKSPACE_CONFIG": CUBLAS_WORKSPACE}}
            _ray_init(ray, address, connect_timeout, num_cpus=jobs * threads if jobs > 0 else None, **kw)
        # an actor sees the GPU Ray gave it (CUDA_VISIBLE_DEVICES): "cuda" there is that GPU
        self.env = WorkerEnv(env.root, "cuda") if env.device.startswith("cuda") else env
        if jobs <= 0:  # as many actors as the cluster's resources admit
            res = ray.cluster_resources()
            jobs = int(res.get("GPU", 0) / gpu_fraction + 1e-6) if gpu_fraction else int(res.get("CPU", 1) // threads)
        self.slots = max(1, jobs)
        actor = ray.remote(num_cpus=threads, num_gpus=gpu_fraction, max_restarts=0)(_RayWorker)
        self._actors = [actor.remote(threads, deterministic) for _ in range(self.slots)]
        self._idle = list(self._actors)
        self._busy: dict[Any, Any] = {}  # ObjectRef -> actor

    def submit(self, task: Task) -> Any:
        return self.call(run_task, task, self.env)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on an idle actor."""
        actor = self._idle.pop(0)
        ref = actor.call.remote(fn, *args)
        self._busy[ref] = actor
        return ref

    def result(self, ref: Any) -> Any:
        """The return value of a finished call."""
        return self._ray.get(ref)

    def wait(self, handles: Sequence[Any]) -> list[tuple[Any, BaseException | None]]:
        ready, _ = self._ray.wait(list(handles), num_returns=1)
        out = []
        for ref in ready:
            self._idle.append(self._busy.pop(ref))
            try:
                self._ray.get(ref)
                out.append((ref, None))
            except Exception as e:  # noqa: BLE001 - RayTaskError wraps the task's exception
                out.append((ref, getattr(e, "cause", None) or e))
        return out

    def close(self) -> None:
        for actor in self._actors:
            with contextlib.suppress(Exception):
                self._ray.kill(actor)
        if self._started:
            self._ray.shutdown()

    def terminate(self, handles: Sequence[Any] = ()) -> None:
        for ref in handles:
            with contextlib.suppress(Exception):
                self._ray.cancel(ref, force=True)
        self.close()
