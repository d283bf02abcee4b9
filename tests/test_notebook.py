"""examples/harness.ipynb runs top to bottom (nbclient, the venv's python3 kernel) and shows what it says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "harness.ipynb"

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


@pytest.fixture(scope="module")
def executed():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=240,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    return nb


def _outputs(nb, kind: str) -> list[dict]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
            if o.get("output_type") == kind]


def test_every_cell_runs_without_error(executed):
    assert not _outputs(executed, "error")
    assert all(cell.get("execution_count") for cell in executed.cells if cell.cell_type == "code")


def test_it_trains_a_pair_attacks_it_and_probes_every_se_block(executed):
    printed = "".join(o.get("text", "") for o in _outputs(executed, "stream"))
    summary = json.loads(re.search(r"SUMMARY (\{.*\})", printed).group(1))
    assert set(summary["clean_acc"]) == {"baseline", "se_r4"}
    assert all(acc > 0.8 for acc in summary["clean_acc"].values())  # trained, not random
    assert all(summary["pgd_acc_at_0.2"][m] < summary["clean_acc"][m] for m in summary["clean_acc"])
    import serobust as sr

    _, se = sr.build_pair("cnn", num_classes=10, in_channels=1, reduction=4, seed=0)
    se.eval()
    with sr.ExcitationProbe(se) as probe:
        assert summary["blocks"] == probe.blocks  # every SE block of the twin, in network order
    assert summary["seconds"] < 60


def test_it_draws_the_sweep_and_the_shift_with_seaborn(executed):
    images = [o for o in _outputs(executed, "display_data") if "image/png" in o.get("data", {})]
    assert len(images) == 2
    tables = [o["data"]["text/html"] for o in _outputs(executed, "execute_result") if "text/html" in o.get("data", {})]
    sweep = [t for t in tables if "pgd(steps=10)" in t and "worst_case" in t]
    assert sweep and "baseline" in sweep[0] and "se_r4" in sweep[0]
