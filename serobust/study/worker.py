"""The worker process of :class:`~serobust.study.executors.LocalPool`: a loop that runs calls sent by the driver.

The driver starts each worker as ``python -c "import serobust.study.worker as w; w.main()" serobust-worker FD``
with the environment it planned for that worker (``CUDA_VISIBLE_DEVICES``, ``OMP_NUM_THREADS``,
``MKL_NUM_THREADS``, ``SEROBUST_WORKER_THREADS``, ``SEROBUST_PARENT_PID``) and one end of a socket pair as file
descriptor ``FD``. This module imports only the standard library, so :func:`main` can ask the kernel to kill the
worker when the driver dies (``PR_SET_PDEATHSIG``) before anything heavy (torch, CUDA) is imported; if the
driver is already gone by then (it died between fork and ``prctl``), the worker exits at once. While idle the
loop checks once a second that its parent is still the driver (a second guard where ``prctl`` is not
available, e.g. not on Linux).

Protocol (``multiprocessing.connection`` framing, pickles): the driver sends ``(fn, args)``; the worker answers
``("ok", result)`` or ``("error", exception)``; ``None`` asks it to exit.
"""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["main", "describe", "die_with_parent"]

PARENT_ENV = "SEROBUST_PARENT_PID"
THREADS_ENV = "SEROBUST_WORKER_THREADS"
DETERMINISTIC_ENV = "SEROBUST_DETERMINISTIC"
MARKER = "serobust-worker"  # in every worker's command line (ps, /proc/PID/cmdline)
_POLL_S = 1.0


def die_with_parent() -> bool:
    """Linux: SIGKILL this process when its parent dies (``prctl(PR_SET_PDEATHSIG)``); False elsewhere."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def _picklable(error: BaseException) -> BaseException:
    import pickle

    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - any exception that cannot travel is reported by its text
        return RuntimeError(f"{type(error).__name__}: {error}")


def describe() -> dict[str, object]:
    """What this worker runs with (for tests and benchmarks): pid, visible GPUs, thread counts."""
    import torch

    return {"pid": os.getpid(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "torch_threads": torch.get_num_threads()}


def main() -> None:
    """The worker loop (see the module docstring); returns when the driver says so or goes away."""
    die_with_parent()
    parent = int(os.environ.get(PARENT_ENV, "0"))
    if parent and os.getppid() != parent:  # the driver died before prctl took effect
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the driver, which stops the workers
    from multiprocessing.connection import Connection

    conn = Connection(int(sys.argv[-1]))
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s worker %(process)d: %(message)s")
    import torch  # the heavy import, after the death signal is armed

    threads = int(os.environ.get(THREADS_ENV, "0") or 0)
    if threads:
        torch.set_num_threads(threads)
    if os.environ.get(DETERMINISTIC_ENV) == "1":
        from ..runtime import deterministic_cuda

        deterministic_cuda(True)
    while True:
        try:
            if not conn.poll(_POLL_S):
                if parent and os.getppid() != parent:
                    os._exit(1)
                continue
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        fn, args = message
        try:
            answer = ("ok", fn(*args))
        except BaseException as e:  # noqa: BLE001 - the driver reports it with the task's name
            answer = ("error", _picklable(e))
        try:
            conn.send(answer)
        except (EOFError, OSError):
            return
