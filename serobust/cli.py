"""Command line: ``serobust run CONFIG`` runs (or resumes) a study; ``serobust check CONFIG`` validates one."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="serobust", description="Adversarial-robustness studies of SE networks.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run or resume a study and write its report")
    run.add_argument("config", type=Path, help="study TOML file, e.g. experiments/mnist.toml")
    run.add_argument("--out", type=Path, default=None, help="output folder (default reports/<study name>)")
    run.add_argument("--device", choices=["cpu", "cuda"], default=None, help="override study.device")
    run.add_argument("--quiet", action="store_true", help="log warnings only, no progress bar")
    check = sub.add_parser("check", help="validate a study TOML file and print the resolved config")
    check.add_argument("config", type=Path)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    from .config import ConfigError, load_study_config
    from .io import CheckpointError

    known_errors: tuple[type[BaseException], ...] = (ConfigError, CheckpointError, FileNotFoundError)
    try:
        cfg = load_study_config(args.config)
        if args.command == "check":
            import json

            print(json.dumps(cfg.to_dict(), indent=2, default=str))
            return 0
        from .pipeline import run_study

        results = run_study(cfg, out_dir=args.out, device=args.device, progress=None if not args.quiet else False)
    except known_errors as e:
        print(f"serobust: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("serobust: interrupted; finished stages are kept, run the same command again to resume",
              file=sys.stderr)
        return 130
    print(f"report: {results['report']}")
    for twin, v in results["verdict"].items():
        print(f"verdict ({twin}): {v['outcome']}: {v['summary']}")
    print(f"time: {results['meta']['time_s']} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
