"""Atomic file writes and safe checkpoint loading.

Every result and checkpoint is written to a temporary file in the destination folder, flushed,
fsynced and renamed over the target, so a run killed mid-write leaves either the old file or the new
one, never a truncated one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .errors import SerobustError

__all__ = ["atomic_path", "atomic_write_text", "atomic_write_json", "atomic_torch_save", "load_checkpoint",
           "CheckpointError"]


class CheckpointError(SerobustError, RuntimeError):
    """A checkpoint file is missing, truncated, corrupt or was not written by serobust."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; a written file gets the usual mode
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc/self/status)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, then put it back at once
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot serialize {type(obj).__name__} to JSON")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write JSON atomically; NaN becomes ``null`` so the file is valid JSON for any reader."""
    text = json.dumps(_nan_to_none(obj), indent=2, default=_json_default, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, float) and obj in (float("inf"), float("-inf")):
        return None
    if isinstance(obj, dict):
        return {str(k): _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return _nan_to_none(obj.tolist())
    return obj


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, *, kind: str | None = None, map_location: Any = "cpu") -> dict:
    """Load a serobust checkpoint with ``weights_only=True``.

    Args:
        path: the checkpoint file.
        kind: if given, the checkpoint's ``"kind"`` field must equal it (for example ``"train"``).

    Raises:
        CheckpointError: the file is missing, truncated, corrupt or foreign, with what to do about it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError... depending on damage
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
            "it is truncated, corrupt or not a weights-only PyTorch file. Delete it to start that run afresh."
        ) from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != "serobust":
        raise CheckpointError(
            f"checkpoint {path} was not written by serobust (no 'format': 'serobust' field); "
            "point to a serobust checkpoint or delete the file."
        )
    if kind is not None and ckpt.get("kind") != kind:
        raise CheckpointError(f"checkpoint {path} holds a {ckpt.get('kind')!r} checkpoint, expected {kind!r}")
    return ckpt
