"""Digests of a finished study's numbers: one sha256 per table (timing columns dropped) and one of the verdict.

The restructure of issue 19 must change no number. This script makes that checkable: ``--write`` records
the digests of a study folder, ``--check`` compares another folder with a recorded file and names every
table that differs. Timing columns (``time_s``, ``images_per_s`` of the training history) are dropped, since
wall time is not a result; everything else is compared as the CSV text serobust wrote (row order, column
order and every digit of every float).

    python benchmarks/table_digests.py reports/mnist --write tests/data/mnist_table_digests.json
    python benchmarks/table_digests.py reports/mnist --check tests/data/mnist_table_digests.json

``tests/test_study_numbers.py`` (marked slow) runs the default study and checks it against the committed file.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import sys
from pathlib import Path

#: Columns that measure the machine, not the model.
TIMING_COLUMNS = frozenset({"time_s", "images_per_s"})


def table_digest(path: Path) -> str:
    """The sha256 of a CSV's text without its timing columns."""
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    keep = [i for i, name in enumerate(rows[0] if rows else []) if name not in TIMING_COLUMNS]
    text = "\n".join(",".join(row[i] for i in keep) for row in rows)
    return hashlib.sha256(text.encode()).hexdigest()


def digests(folder: Path) -> dict[str, str]:
    """``{table name: digest}`` for every ``tables/*.csv`` of a study folder, plus ``"verdict"``."""
    tables = sorted((folder / "tables").glob("*.csv"))
    if not tables:
        raise SystemExit(f"{folder}: no tables/*.csv (give a finished study folder)")
    out = {p.stem: table_digest(p) for p in tables}
    verdict = json.loads((folder / "results.json").read_text(encoding="utf-8"))["verdict"]
    out["verdict"] = hashlib.sha256(json.dumps(verdict, sort_keys=True).encode()).hexdigest()
    return out


def compare(found: dict[str, str], recorded: dict[str, str]) -> list[str]:
    """One line per table that is missing, extra or different; empty when every number is equal."""
    lines = [f"{name}: missing" for name in sorted(set(recorded) - set(found))]
    lines += [f"{name}: not in the record" for name in sorted(set(found) - set(recorded))]
    lines += [f"{name}: differs" for name in sorted(set(found) & set(recorded)) if found[name] != recorded[name]]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a finished study folder (reports/<study>)")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path, help="record the digests in this JSON file")
    group.add_argument("--check", type=Path, help="compare with the digests recorded in this JSON file")
    args = parser.parse_args(argv)
    found = digests(args.folder)
    if args.write:
        args.write.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"recorded {len(found)} digests in {args.write}")
        return 0
    diff = compare(found, json.loads(args.check.read_text(encoding="utf-8")))
    print("\n".join(diff) if diff else f"all {len(found)} tables and the verdict equal the record")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
