"""Where a study keeps what its tasks computed, and who is running it.

Layout under the study folder (``reports/<study>/``; on a Ray cluster it must be a filesystem every node
sees, such as NFS, because workers write their results there)::

    tasks/<stage>/<label>-<key>/   one folder per task: its parts (CSV frames, .npy arrays, JSON) and,
                                   for training, the checkpoint last.pt; manifest.json is written last
    .lock                          held while a run is active (who holds it is written inside)

A task is done when its ``manifest.json`` exists and every file it records still has the recorded size and
sha256; every part is written atomically before it, so a run killed at any point leaves finished tasks
readable and unfinished ones absent, and a re-run resumes. A folder that fails the check is never reused
and never silently recomputed: the run stops before new work, naming the folder to delete.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
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

__all__ = ["StudyStore", "StudyLockedError", "TaskStoreError", "study_lock", "frame_to_csv", "file_digest"]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
#: The manifest format: 2 records a digest of every file (older manifests are recomputed, never trusted).
FORMAT = 2


class StudyLockedError(SerobustError, RuntimeError):
    """Another run holds the study folder."""


class TaskStoreError(SerobustError, RuntimeError):
    """A finished task's folder cannot be trusted: its manifest is unreadable or foreign, or a part differs
    from the digest the manifest recorded. The fix is always the same: delete the folder; a rerun recomputes it."""


def frame_to_csv(frame: pd.DataFrame) -> str:
    """CSV text of a frame; cells holding dicts or lists become JSON so they read back as text."""
    frame = frame.copy()
    for col in frame.columns:
        if frame[col].dtype == object and frame[col].map(lambda v: isinstance(v, (dict, list, tuple))).any():
            frame[col] = frame[col].map(
                lambda v: json.dumps(v, default=str) if isinstance(v, (dict, list, tuple)) else v)
    return frame.to_csv(index=False)


def _digest_bytes(data: bytes) -> dict[str, Any]:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def file_digest(path: Path) -> dict[str, Any]:
    """``{"size": bytes, "sha256": hex}`` of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": h.hexdigest()}


class StudyStore:
    """Task results on disk, keyed by task key (see :mod:`serobust.study.tasks`).

    Every manifest (format :data:`FORMAT`) records the size and sha256 of every file of its task folder
    (the parts and, for training, ``last.pt``) and, for a train task, the training config that produced
    the checkpoint. Nothing is reused unverified: :meth:`done` checks every digest, :meth:`load` the
    bytes it parses, :meth:`check_file` a file read elsewhere (the checkpoint). A mismatch, a truncated
    or foreign manifest raises :class:`TaskStoreError` naming the folder and the fix.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def task_dir(self, task: Task) -> Path:
        return self.root / "tasks" / task.stage / task.slug

    def _fail(self, task: Task, why: str) -> TaskStoreError:
        folder = self.task_dir(task)
        return TaskStoreError(f"the stored result of task {task.label!r} ({task.stage}) cannot be trusted: {why}; "
                              f"delete the folder {folder} and run again (the run recomputes it)", where=str(folder))

    def manifest(self, task: Task) -> dict[str, Any] | None:
        """The task's manifest, checked for form and key; None when absent or written by an older serobust
        without digests (then the task runs again and overwrites it).

        Raises:
            TaskStoreError: unreadable, not JSON (truncated), not a serobust task manifest, another task's.
        """
        path = self.task_dir(task) / MANIFEST
        if not path.is_file():
            if path.exists() or path.is_symlink():
                raise self._fail(task, f"{MANIFEST} is not a regular file")
            return None
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise self._fail(task, f"{MANIFEST} is unreadable or not valid JSON (truncated?): "
                                   f"{type(e).__name__}: {e}") from None
        if not isinstance(manifest, dict) or manifest.get("key") != task.key or manifest.get("stage") != task.stage:
            raise self._fail(task, f"{MANIFEST} is not this task's manifest (stage "
                                   f"{manifest.get('stage') if isinstance(manifest, dict) else None!r}, key "
                                   f"{manifest.get('key') if isinstance(manifest, dict) else None!r}; "
                                   f"expected {task.stage!r}, {task.key!r})")
        if "format" not in manifest and isinstance(manifest.get("parts"), dict):
            log.warning("task %s (%s) was stored by an older serobust without digests; computing it again",
                        task.label, self.task_dir(task))
            return None
        parts, files = manifest.get("parts"), manifest.get("files")
        if (manifest.get("format") != FORMAT or not isinstance(parts, dict) or not isinstance(files, dict)
                or not all(isinstance(k, str) and kind in ("csv", "npy", "json") and f"{k}.{kind}" in files
                           for k, kind in parts.items())
                or not all(isinstance(d, dict) and isinstance(d.get("size"), int) and isinstance(d.get("sha256"), str)
                           and "/" not in name and name not in ("", ".", "..", MANIFEST)
                           for name, d in files.items())):
            raise self._fail(task, f"{MANIFEST} is not a serobust task manifest of format {FORMAT} (fields "
                                   "parts/files missing or malformed)")
        if task.stage == "train" and manifest.get("train_config") != task.record.get("train"):
            raise self._fail(task, f"{MANIFEST} records a checkpoint trained with another config "
                                   f"({manifest.get('train_config')!r})")
        return manifest

    def _check(self, task: Task, name: str, recorded: Mapping[str, Any], actual: Mapping[str, Any] | None) -> None:
        if actual is None:
            raise self._fail(task, f"{name} is missing")
        if actual["size"] != recorded["size"]:
            raise self._fail(task, f"{name} is {actual['size']} bytes, the manifest recorded {recorded['size']} "
                                   "(emptied, truncated or replaced)")
        if actual["sha256"] != recorded["sha256"]:
            raise self._fail(task, f"{name} differs from the sha256 its manifest recorded (replaced or damaged)")

    def _actual(self, path: Path) -> dict[str, Any] | None:
        if not path.is_file():
            return None
        return file_digest(path)

    def done(self, task: Task) -> bool:
        """Whether the task is finished and every file of it matches its manifest.

        Raises:
            TaskStoreError: it claims to be finished but cannot be trusted (see :meth:`manifest`).
        """
        manifest = self.manifest(task)
        if manifest is None:
            return False
        folder = self.task_dir(task)
        for name, recorded in manifest["files"].items():
            self._check(task, name, recorded, self._actual(folder / name))
        return True

    def check_file(self, task: Task, name: str) -> Path:
        """The path of ``name`` in a finished task's folder, after checking it against its recorded digest."""
        manifest = self.manifest(task)
        if manifest is None:
            raise self._fail(task, f"{MANIFEST} is missing, so {name} cannot be verified")
        if name not in manifest["files"]:
            raise self._fail(task, f"{MANIFEST} records no {name}")
        path = self.task_dir(task) / name
        self._check(task, name, manifest["files"][name], self._actual(path))
        return path

    def save(self, task: Task, outputs: Mapping[str, Any], *, seconds: float) -> None:
        """Write every part atomically, then the manifest (the completion mark) with every file's digest."""
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
        files = {}  # every part, and whatever else the stage wrote in its folder (the checkpoint)
        for path in sorted(folder.iterdir()):
            if path.name != MANIFEST and not path.name.startswith(".") and path.is_file() and not path.is_symlink():
                files[path.name] = file_digest(path)
        manifest = {
            "format": FORMAT, "stage": task.stage, "label": task.label, "key": task.key, "params": task.record,
            "deps": {role: dep.key for role, dep in task.deps.items()}, "parts": parts, "files": files,
            "seconds": round(seconds, 3), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        if task.stage == "train":
            manifest["train_config"] = task.record.get("train")
        atomic_write_json(folder / MANIFEST, manifest)

    def load(self, task: Task) -> dict[str, Any]:
        """The parts of a finished task (frames read back from CSV, so every reader sees the same types),
        each checked against its recorded digest as it is read."""
        folder = self.task_dir(task)
        manifest = self.manifest(task)
        if manifest is None:
            raise self._fail(task, f"{MANIFEST} is missing (the task never finished)")
        out: dict[str, Any] = {}
        for name, kind in manifest["parts"].items():
            filename = f"{name}.{kind}"
            try:
                data = (folder / filename).read_bytes()
            except OSError:
                data = None
            self._check(task, filename, manifest["files"][filename], None if data is None else _digest_bytes(data))
            if kind == "csv":
                out[name] = pd.read_csv(io.BytesIO(data)) if len(data) > 1 else pd.DataFrame()
            elif kind == "npy":
                out[name] = np.load(io.BytesIO(data), allow_pickle=False)
            else:
                out[name] = json.loads(data.decode("utf-8"))
        return out

    def seconds(self, task: Task) -> float:
        """The seconds ``task`` took when it ran (0 when unrecorded); benchmarks/gpu_study_cut.py reads it."""
        manifest = self.manifest(task) or {}
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
