"""Publishing a report as one unit: built aside, swapped in with one atomic rename.

A run builds its whole report (``index.html``, ``results.json``, ``config.json``, ``figures/``, ``tables/``)
in ``<study>/.runs/<run id>/``, then points the symlink ``<study>/report`` at it with one ``rename`` (atomic
on POSIX). The familiar paths ``<study>/index.html``, ``<study>/figures`` ... are fixed relative symlinks into
``report/``, so at every instant they all show the same run: a run that fails or is killed before the swap
leaves the previous report exactly as it was, and one killed after it leaves the new one whole. Older runs'
folders are removed after the swap.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

__all__ = ["publish", "new_run_id"]

log = logging.getLogger(__name__)

T = TypeVar("T")
RUNS = ".runs"
CURRENT = "report"


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a random suffix."""
    import time

    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def _replace_with_link(path: Path, target: str) -> None:
    """Make ``path`` a symlink to ``target`` atomically (a tmp link renamed over it)."""
    if path.is_symlink() and os.readlink(path) == target:
        return
    if path.is_dir() and not path.is_symlink():  # a real folder from an older serobust: move it aside first
        (path.parent / RUNS).mkdir(exist_ok=True)
        path.rename(path.parent / RUNS / f"legacy-{path.name}-{uuid.uuid4().hex[:6]}")
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.link")
    os.symlink(target, tmp)
    os.replace(tmp, path)


def publish(out: Path, build: Callable[[Path], T], *, run_id: str) -> T:
    """Build a report with ``build(folder)`` in a fresh folder, then swap it in as ``out``'s report.

    Returns whatever ``build`` returned. If ``build`` raises, nothing visible changes.
    """
    runs = out / RUNS
    staging = runs / run_id
    staging.mkdir(parents=True, exist_ok=False)
    try:
        result = build(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        _replace_with_link(out / CURRENT, f"{RUNS}/{run_id}")
    except OSError as e:  # pragma: no cover - no symlinks here (some Windows setups): copy instead
        log.warning("cannot make symlinks in %s (%s); copying the report in place, not atomically", out, e)
        for entry in staging.iterdir():
            dest = out / entry.name
            if entry.is_dir():
                shutil.rmtree(dest, ignore_errors=True)
                shutil.copytree(entry, dest)
            else:
                shutil.copy2(entry, dest)
        return result
    names = {entry.name for entry in staging.iterdir()}
    for name in sorted(names):
        _replace_with_link(out / name, f"{CURRENT}/{name}")
    for link in out.iterdir():  # links to parts the new report no longer has
        if link.is_symlink() and link.name not in names and os.readlink(link).startswith(f"{CURRENT}/"):
            link.unlink()
    for old in runs.iterdir():
        if old.name != run_id:
            shutil.rmtree(old, ignore_errors=True)
    return result
