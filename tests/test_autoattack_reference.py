"""serobust's AutoAttack against Croce & Hein's own code (``pyautoattack``) on a trained digits model.

Slow (the standard version's 100-step components and 5,000-query Square on CPU): ``pytest -m slow``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "autoattack_reference.py"
    spec = importlib.util.spec_from_file_location("autoattack_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.usefixtures("one_thread")
def test_standard_autoattack_matches_the_reference_within_a_few_images():
    pytest.importorskip("pyautoattack")
    bench = _benchmark()
    model, data = bench.trained_model("digits", epochs=6, seed=0)
    x, y = data.test.subset(120, seed=0).tensors()
    r = bench.compare(model, x, y, 0.1, seed=0)
    assert r["reference_linf"] <= 0.1 + 1e-6
    assert 0.1 * r["n"] < r["reference"] < r["clean"]  # a budget where the attack matters but does not win all
    assert abs(r["serobust"] - r["reference"]) <= 3, bench.report(r)
    # per image: only borderline images may differ
    assert r["only_serobust_robust"] + r["only_reference_robust"] <= 5, bench.report(r)
