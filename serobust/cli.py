"""Command line: ``serobust run CONFIG`` runs (or resumes) a study, ``serobust check CONFIG...`` validates
configs, ``serobust report FOLDER --single-file`` writes a finished report as one mailable HTML file.

Errors a user can fix (a bad config, missing data, a full disk, a folder in the way) print one line,
``serobust: error: <config key or path>: <what is wrong and how to fix it>``, and exit with status 2; only
bugs print a traceback.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from pathlib import Path

__all__ = ["main"]

DEFAULT_CONFIG = Path("experiments/mnist.toml")

_OS_HINTS = {
    errno.ENOSPC: "no space left on the device: free some space or write elsewhere with --out",
    errno.EDQUOT: "disk quota exceeded: free some space or write elsewhere with --out",
    errno.EACCES: "permission denied: make it writable, or write elsewhere with --out",
    errno.EPERM: "operation not permitted: make it writable, or write elsewhere with --out",
    errno.EROFS: "read-only file system: write elsewhere with --out",
    errno.EEXIST: "a file is in the way where a folder is needed: move it, or write elsewhere with --out",
    errno.ENOTDIR: "a file is in the way where a folder is needed: move it, or write elsewhere with --out",
    errno.EISDIR: "a folder is in the way where a file is needed: move it",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="serobust", description="Adversarial-robustness studies of SE networks.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run or resume a study and write its report")
    run.add_argument("config", type=Path, nargs="?", default=None,
                     help=f"study TOML file (default {DEFAULT_CONFIG})")
    run.add_argument("--out", type=Path, default=None, help="study folder (default reports/<study name>)")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None, help="override study.device")
    run.add_argument("--jobs", type=int, default=None,
                     help="tasks at once (overrides execution.jobs; 0 = one per CPU core or GPU slot)")
    run.add_argument("--quiet", action="store_true", help="log warnings only, no progress bar")
    run.add_argument("--yes", action="store_true",
                     help="run a study larger than the limit (serobust check prints its tasks and rough cost)")
    check = sub.add_parser("check", help="validate study TOML files (prints the resolved config of one)")
    check.add_argument("configs", type=Path, nargs="*", help=f"study TOML files (default {DEFAULT_CONFIG})")
    report = sub.add_parser("report", help="re-render a finished study's report")
    report.add_argument("folder", type=Path, help="a study folder, e.g. reports/mnist")
    report.add_argument("--single-file", action="store_true",
                        help="write index.single.html with every figure inlined, to mail or attach (in a "
                             "study folder: inside the run it renders, linked from the folder)")
    return p


def _error(where: object, message: str) -> int:
    prefix = f"{where}: " if where else ""
    print(f"serobust: error: {prefix}{message}", file=sys.stderr)
    return 2


def _os_error(e: OSError) -> int:
    hint = _OS_HINTS.get(e.errno, e.strerror or str(e))
    return _error(e.filename, hint)


def _check(paths: list[Path]) -> int:
    """One config: its resolved form as JSON on stdout, its size on stderr; several: one line each."""
    from .config.load import load_study_config
    from .study.cost import estimate

    if len(paths) == 1:
        import json

        cfg = load_study_config(paths[0])
        lines = _check_pairs(paths[0], cfg)
        print(json.dumps(cfg.to_dict(), indent=2, default=str))
        print(f"{paths[0]}: ok, {_size(estimate(cfg))}", file=sys.stderr)
        _warn(lines)
        return 0
    for path in paths:
        cfg = load_study_config(path)
        lines = _check_pairs(path, cfg)
        print(f"{path}: ok, {_size(estimate(cfg))}")
        _warn(lines)
    return 0


def _size(cost) -> str:
    from .study.cost import MAX_PASSES, MAX_TASKS

    more = (f"; above the limit ({MAX_TASKS} tasks, {MAX_PASSES:.0e} image passes): serobust run asks for --yes"
            if cost.too_big else "")
    return cost.describe() + more


def _warn(lines: list[str]) -> None:
    for line in lines:
        print(f"serobust: warning: {line}", file=sys.stderr)


def _check_pairs(path: Path, cfg) -> list[str]:
    """Given pairs: an SE member without SE modules is an error (its architecture is built on the meta device);
    weights not on disk are one warning line per file, saying where to put it (``run`` fetches or refuses)."""
    from .config.rules import ConfigError
    from .hub.load import check_se_member
    from .hub.specs import MemberError
    from .hub.weights import missing_weights

    if not cfg.model.pairs:
        return []
    for i, pair in enumerate(cfg.model.pair_specs()):  # a baseline given as se fails here, not after loading
        try:
            check_se_member(pair.se, f"model.pairs[{i}].se")
        except MemberError as e:
            raise ConfigError(str(e), where=str(path)) from None
    lines = [line for pair in cfg.model.pair_specs() for m in (pair.baseline, pair.se)
             if (line := missing_weights(m, cfg.model.weights_dir))]
    return [f"{path}: {line}" for line in dict.fromkeys(lines)]


def _run(args: argparse.Namespace) -> int:
    from .config.load import load_study_config
    from .pipeline import run_study

    cfg = load_study_config(args.config or DEFAULT_CONFIG)
    if args.jobs is not None and args.jobs < 0:
        return _error("--jobs", f"{args.jobs} is negative: give 1 or more, or 0 for one per core / GPU slot")
    if not args.yes:
        from .study.cost import MAX_PASSES, MAX_TASKS, estimate

        cost = estimate(cfg)
        if cost.too_big:
            return _error(cfg.source or "config", f"{cost.describe()}, above the limit of a run without "
                          f"confirmation ({MAX_TASKS} tasks, {MAX_PASSES:.0e} image passes); check seeds, budgets "
                          "and steps, then run again with --yes")
    results = run_study(cfg, out_dir=args.out, device=args.device, jobs=args.jobs,
                        progress=False if args.quiet else None)
    print(f"report: {results['report']}")
    for twin, v in results["verdict"].items():
        print(f"verdict ({twin}): {v['outcome']}: {v.get('headline') or v['summary']}")
        if v.get("design"):
            print(f"design: {v['design']}")
    print(f"time: {results['meta']['time_s']} s")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report import SINGLE_FILE_NAME, render_single_file
    from .study.publish import CURRENT, link_into_report
    from .study.store import study_lock

    if not (args.folder / "results.json").is_file():
        return _error(args.folder, "not a finished study folder (no results.json): run the study first")
    if not args.single_file:
        return _error("report", "say what to write: --single-file")
    current = args.folder / CURRENT
    if current.is_symlink() and current.is_dir():  # a study folder: the page lives in the run it renders,
        with study_lock(args.folder):  # so the next run's swap replaces it (its link goes with the old run)
            render_single_file(current)
            page = link_into_report(args.folder, SINGLE_FILE_NAME)
    else:  # a plain report folder (a run's own folder, a copy)
        page = render_single_file(args.folder)
    print(f"report: {page}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    from .errors import SerobustError
    from .study.executors import TaskFailed

    try:
        if args.command == "check":
            return _check(args.configs or [DEFAULT_CONFIG])
        if args.command == "report":
            return _report(args)
        return _run(args)
    except SerobustError as e:
        return _error(e.where, str(e))
    except TaskFailed as e:
        cause = e.error
        task = f" (task {e.task.label!r}, stage {e.task.stage}, key {e.task.key}; finished tasks are kept)"
        if isinstance(cause, SerobustError):
            return _error(cause.where, f"{cause}{task}")
        if isinstance(cause, OSError):
            return _error(cause.filename, f"{_OS_HINTS.get(cause.errno, cause.strerror or cause)}{task}")
        raise
    except OSError as e:
        return _os_error(e)
    except KeyboardInterrupt:
        print("serobust: interrupted; finished tasks are kept, run the same command again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
