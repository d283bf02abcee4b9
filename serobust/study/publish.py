"""Publishing a report as one unit: built aside, swapped in with one atomic rename; and whose folder it is.

A run builds its whole report (``index.html``, ``results.json``, ``config.json``, ``figures/``, ``tables/``)
in ``<study>/.runs/<run id>/``, then points the symlink ``<study>/report`` at it with one ``rename`` (atomic
on POSIX). The familiar paths ``<study>/index.html``, ``<study>/figures`` ... are fixed relative symlinks into
``report/``, so at every instant they all show the same run: a run that fails or is killed before the swap
leaves the previous report exactly as it was, and one killed after it leaves the new one whole. Older runs'
folders are removed after the swap.

A study folder is serobust's only where serobust wrote it. The marker file ``.serobust-study`` says it made
the folder; :func:`claim_study_folder` refuses a folder that holds anything serobust would not have created
(a user's ``figures/``, a real ``index.html``, a ``.runs`` that is a symlink), naming the entries, and never
moves or deletes them. Cleanup removes only ``.runs/<run id>`` folders whose names match :func:`new_run_id`,
never through a symlink. A folder made by an older serobust (no marker, only entries serobust creates) is
adopted: the marker is written and nothing else changes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import SerobustError

__all__ = ["publish", "new_run_id", "claim_study_folder", "check_study_folder", "link_into_report",
           "StudyFolderError", "MARKER", "RUN_ID"]

log = logging.getLogger(__name__)

T = TypeVar("T")
RUNS = ".runs"
CURRENT = "report"
MARKER = ".serobust-study"
#: The names of the run folders serobust creates (:func:`new_run_id`); cleanup touches no other name.
RUN_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")
#: Report parts a run links into the study folder (plus the single-file page, see ``serobust report``).
REPORT_PARTS = ("index.html", "index.single.html", "results.json", "config.json", "figures", "tables")
_TMP_LINK = re.compile(r"\.(.+)\.[0-9a-f]{8}\.link")
_TMP_MARKER = re.compile(re.escape(f".{MARKER}.") + r"[A-Za-z0-9_]+\.tmp")


class StudyFolderError(SerobustError, FileExistsError):
    """The study folder holds something serobust did not create, where serobust would write."""


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a random suffix (matches :data:`RUN_ID`)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def _own_link(path: Path) -> bool:
    """A symlink serobust made: ``report`` -> ``.runs/<id>``, a part -> ``report/<part>``."""
    if not path.is_symlink():
        return False
    target = os.readlink(path)
    if path.name == CURRENT:
        return target.startswith(f"{RUNS}/") and RUN_ID.fullmatch(target[len(RUNS) + 1:]) is not None
    return target == f"{CURRENT}/{path.name}"


def _in_the_way(path: Path) -> bool:
    """Something is at ``path`` that serobust may not replace: a real file or folder, or someone else's link."""
    return (path.exists() or path.is_symlink()) and not _own_link(path)


def _foreign(out: Path, *, marked: bool) -> list[str]:
    """Entries of ``out`` that serobust would not have written (``name/`` for folders, ``name@`` for links).

    Unmarked (an older serobust's folder, or a user's): every entry must be one serobust creates. Marked:
    entries of other names are the user's own and left alone; only those in the way of serobust's are listed.
    """
    bad = []
    for entry in sorted(out.iterdir(), key=lambda p: p.name):
        name = entry.name
        if _own_link(entry):
            ok = True
        elif name == MARKER:
            ok = entry.is_file() and not entry.is_symlink()
        elif name == RUNS:
            ok = entry.is_dir() and not entry.is_symlink()
        elif name == "tasks":
            ok = entry.is_dir()  # read and written through, never deleted: a link to a bigger disk is fine
        elif name == ".lock":
            ok = entry.is_file() and not entry.is_symlink()
        elif name == CURRENT or name in REPORT_PARTS:
            ok = False  # not serobust's link (checked above): a real file or folder, or someone's link
        elif _TMP_LINK.fullmatch(name) and entry.is_symlink():
            ok = True  # a link a killed run left before renaming it over its name
        elif _TMP_MARKER.fullmatch(name) and entry.is_file():
            ok = True  # the marker's temporary file, left by a run killed while writing it
        else:
            ok = marked
        if not ok:
            kind = "@" if entry.is_symlink() else "/" if entry.is_dir() else ""
            bad.append(name + kind)
    return bad


def check_study_folder(out: Path) -> None:
    """Refuse (without writing anything) a study folder serobust may not write into.

    Raises:
        StudyFolderError: ``out`` is not a folder, or holds entries serobust did not create (named).
    """
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise StudyFolderError("a file is in the way where the study folder is needed: move it, or write "
                               "elsewhere with --out", where=str(out))
    bad = _foreign(out, marked=(out / MARKER).is_file())
    if bad:
        shown = ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
        hint = ("; index.single.html is an older serobust's single-file page: delete it (serobust report "
                "--single-file rebuilds it)" if "index.single.html" in bad else "")
        raise StudyFolderError(
            f"holds entries serobust did not create ({shown}); serobust writes only into an empty folder or "
            f"one it made, and never moves or deletes others' files: give another --out (e.g. a new "
            f"subfolder) or move those entries away{hint}", where=str(out))


def claim_study_folder(out: Path) -> None:
    """Make ``out`` a study folder (created with its marker), after :func:`check_study_folder` passes.

    A folder an older serobust made (every entry one serobust creates, no marker) is adopted: the marker
    is written, nothing else changes.
    """
    out = Path(out)
    check_study_folder(out)
    marker = out / MARKER
    if marker.is_file():
        return
    adopted = out.is_dir() and any(out.iterdir())
    out.mkdir(parents=True, exist_ok=True)
    from ..io import atomic_write_text

    atomic_write_text(marker, json.dumps({"format": "serobust-study", "version": 1,
                                          "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")
    if adopted:
        log.info("adopted %s, a study folder of an older serobust (marker %s written)", out, MARKER)


def _replace_with_link(path: Path, target: str) -> None:
    """Make ``path`` a symlink to ``target`` atomically (a tmp link renamed over it); never over a real entry."""
    if path.is_symlink() and os.readlink(path) == target:
        return
    if _in_the_way(path):
        raise StudyFolderError(f"{path.name} is not serobust's link (a real file or folder, or a link of "
                               "someone else's) where the report's link goes: move it away, or write "
                               "elsewhere with --out", where=str(path))
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.link")
    os.symlink(target, tmp)
    os.replace(tmp, path)


def link_into_report(out: Path, name: str) -> Path:
    """Link ``out/name`` to ``report/name`` (a part added to the current run's folder, e.g. the single
    page); returns the link's path. Refuses a real entry of that name."""
    _replace_with_link(Path(out) / name, f"{CURRENT}/{name}")
    return Path(out) / name


def _remove_old_runs(runs: Path, keep: str) -> None:
    """Delete ``runs/<run id>`` folders other than ``keep``: only real folders named like :func:`new_run_id`."""
    if runs.is_symlink():  # never clean through a link (checked at claim; a link made since is left alone)
        return
    for old in runs.iterdir():
        if old.name == keep or not RUN_ID.fullmatch(old.name) or old.is_symlink() or not old.is_dir():
            continue
        shutil.rmtree(old, ignore_errors=True)


def publish(out: Path, build: Callable[[Path], T], *, run_id: str) -> T:
    """Build a report with ``build(folder)`` in a fresh folder, then swap it in as ``out``'s report.

    Returns whatever ``build`` returned. If ``build`` raises, nothing visible changes.

    Raises:
        StudyFolderError: ``out`` holds something serobust did not create where the report goes (checked
            before anything is written), or ``run_id`` is not a run id.
    """
    out = Path(out)
    if not RUN_ID.fullmatch(run_id):
        raise ValueError(f"run_id {run_id!r} is not a serobust run id (see new_run_id)")
    claim_study_folder(out)
    runs = out / RUNS
    staging = runs / run_id
    staging.mkdir(parents=True, exist_ok=False)
    try:
        result = build(staging)
        names = sorted(entry.name for entry in staging.iterdir())
        for name in names:  # everything in the way is refused before the swap, so nothing half-swaps
            if _in_the_way(out / name):
                raise StudyFolderError(f"{name} is not serobust's link (a real file or folder) where the report's "
                                       "link goes: move it away, or write elsewhere with --out",
                                       where=str(out / name))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        _replace_with_link(out / CURRENT, f"{RUNS}/{run_id}")
    except StudyFolderError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except OSError as e:  # pragma: no cover - no symlinks here (some Windows setups)
        shutil.rmtree(staging, ignore_errors=True)
        raise StudyFolderError(f"cannot make symlinks here ({e}); a study folder needs a file system with "
                               "symlinks: write elsewhere with --out", where=str(out)) from e
    for name in names:
        _replace_with_link(out / name, f"{CURRENT}/{name}")
    for link in out.iterdir():  # links to parts the new report no longer has (an older run's single page)
        if link.name not in names and link.name != CURRENT and _own_link(link):
            link.unlink()
    _remove_old_runs(runs, run_id)
    return result
