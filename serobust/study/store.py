"""Where a study keeps what its tasks computed, and who is running it.

Layout under the study folder (``reports/<study>/``; on a Ray cluster it must be a filesystem every node
sees, such as NFS, because workers write their results there)::

    tasks/<stage>/<label>-<key>/   one folder per task: its parts (CSV frames, .npy arrays, JSON) and,
                                   for training, the checkpoint last.pt; manifest.json is written last
    .lock                          held while a run is active (who holds it is written inside)

A task is done when its ``manifest.json`` exists; every part is written atomically before it, so a run
killed at any point leaves finished tasks readable and unfinished ones absent, and a re-run resumes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import SerobustError
from ..io import atomic_path, atomic_write_json, atomic_write_text
from .tasks import Task

__all__ = ["StudyStore", "StudyLockedError", "study_lock", "frame_to_csv"]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


class StudyLockedError(SerobustError, RuntimeError):
    """Another run holds the study folder."""


def frame_to_csv(frame: pd.DataFrame) -> str:
    """CSV text of a frame; cells holding dicts or lists become JSON so they read back as text."""
    frame = frame.copy()
    for col in frame.columns:
        if frame[col].dtype == object and frame[col].map(lambda v: isinstance(v, (dict, list, tuple))).any():
            frame[col] = frame[col].map(
                lambda v: json.dumps(v, default=str) if isinstance(v, (dict, list, tuple)) else v)
    return frame.to_csv(index=False)


class StudyStore:
    """Task results on disk, keyed by task key (see :mod:`serobust.study.tasks`)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def task_dir(self, task: Task) -> Path:
        return self.root / "tasks" / task.stage / task.slug

    def done(self, task: Task) -> bool:
        return (self.task_dir(task) / MANIFEST).is_file()

    def save(self, task: Task, outputs: Mapping[str, Any], *, seconds: float) -> None:
        """Write every part atomically, then the manifest (the completion mark)."""
        folder = self.task_dir(task)
        folder.mkdir(parents=True, exist_ok=True)
        parts: dict[str, str] = {}
        for name, value in outputs.items():
            if isinstance(value, pd.DataFrame):
                atomic_write_text(folder / f"{name}.csv", frame_to_csv(value))
                parts[name] = "csv"
            elif isinstance(value, np.ndarray):
                with atomic_path(folder / f"{name}.npy") as tmp, open(tmp, "wb") as f:
                    np.save(f, value, allow_pickle=False)
                parts[name] = "npy"
            else:
                atomic_write_json(folder / f"{name}.json", value)
                parts[name] = "json"
        atomic_write_json(folder / MANIFEST, {
            "stage": task.stage, "label": task.label, "key": task.key, "params": task.params,
            "deps": {role: dep.key for role, dep in task.deps.items()}, "parts": parts,
            "seconds": round(seconds, 3), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })

    def load(self, task: Task) -> dict[str, Any]:
        """The parts of a finished task (frames read back from CSV, so every reader sees the same types)."""
        folder = self.task_dir(task)
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        out: dict[str, Any] = {}
        for name, kind in manifest["parts"].items():
            path = folder / f"{name}.{kind}"
            if kind == "csv":
                out[name] = pd.read_csv(path) if path.stat().st_size > 1 else pd.DataFrame()
            elif kind == "npy":
                out[name] = np.load(path, allow_pickle=False)
            else:
                out[name] = json.loads(path.read_text(encoding="utf-8"))
        return out

    def seconds(self, task: Task) -> float:
        manifest = json.loads((self.task_dir(task) / MANIFEST).read_text(encoding="utf-8"))
        return float(manifest.get("seconds", 0.0))


@contextlib.contextmanager
def study_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder/.lock`` for the run; a second run of the same study fails at once, naming the holder.

    The lock is an OS file lock (``fcntl.flock``): it is released when the process ends, however it ends,
    so a killed run never leaves a stale lock behind.

    Raises:
        StudyLockedError: another live process holds it.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks in the standard library
        log.warning("no file locking on this platform: do not run the same study twice at once")
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text(encoding="utf-8", errors="replace").strip() or "another process"
            raise StudyLockedError(
                f"another run of this study is active ({holder}); wait for it to finish or stop it. "
                "The lock frees itself when that process exits.", where=str(folder)) from None
        os.ftruncate(fd, 0)
        os.write(fd, (f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                      f"{' '.join(sys.argv[:3])}\n").encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
