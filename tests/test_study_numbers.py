"""The default study's numbers are what they were before the restructure of issue 19 (marked slow: ~3 min).

``tests/data/mnist_table_digests.json`` holds the sha256 of every table of ``make robustness``
(experiments/mnist.toml, timing columns dropped) and of its verdict, recorded from the code before the
restructure (commit 5cd1e0c) on the project's 2-core CPU machine. A move of code must leave every digest
equal; a change that means to change a number re-records the file and says why in its commit. Floats are
compared to the last digit, so the check holds on the CPU type it was recorded on (the study fixes its
thread count; another CPU may differ in the last bits).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _digests_module():
    spec = importlib.util.spec_from_file_location("table_digests", ROOT / "benchmarks" / "table_digests.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digests_name_every_changed_table(tmp_path):
    digests = _digests_module()
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "robust.csv").write_text("seed,acc,time_s\n0,0.5,1.0\n")
    (tmp_path / "results.json").write_text('{"verdict": {"se": {"outcome": "not supported"}}}')
    before = digests.digests(tmp_path)
    (tmp_path / "tables" / "robust.csv").write_text("seed,acc,time_s\n0,0.5,9.0\n")  # timing only
    assert digests.compare(digests.digests(tmp_path), before) == []
    (tmp_path / "tables" / "robust.csv").write_text("seed,acc,time_s\n0,0.50000001,1.0\n")
    assert digests.compare(digests.digests(tmp_path), before) == ["robust: differs"]


@pytest.mark.slow
def test_default_study_tables_equal_the_recorded_digests(tmp_path):
    out = tmp_path / "mnist"
    run = subprocess.run([sys.executable, "-m", "serobust.cli", "run", str(ROOT / "experiments" / "mnist.toml"),
                          "--out", str(out), "--quiet"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    check = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "table_digests.py"), str(out), "--check",
                            str(ROOT / "tests" / "data" / "mnist_table_digests.json")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
