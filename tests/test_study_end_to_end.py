"""A tiny study end to end (digits, 2 seeds, few steps): files, verdict fields, caching and resume."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_study

from serobust.config import study_config_from_dict
from serobust.pipeline import run_study

TINY = tiny_study()
OUTCOMES = {"supported", "not supported", "inconclusive"}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    cfg = study_config_from_dict(TINY)
    results = run_study(cfg, out_dir=out, progress=False)
    return cfg, out, results


def test_report_files_appear(study):
    _, out, results = study
    assert (out / "index.html").is_file() and (out / "results.json").is_file()
    for name in ("robust_accuracy", "paired_differences", "excitation_shift", "damping", "channel_heatmap",
                 "interventions", "examples"):
        png = out / "figures" / f"{name}.png"
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    for name in ("robust", "per_example", "robust_stats", "mcnemar", "diagnostics", "shift", "interventions",
                 "adaptive", "transfer"):
        assert (out / "tables" / f"{name}.csv").is_file(), name
    assert not list(out.rglob("*.tmp"))
    html = (out / "index.html").read_text()
    for img in Path(out).glob("figures/*.png"):
        assert f'src="figures/{img.name}"' in html


def test_results_json_holds_the_verdict(study):
    cfg, out, _ = study
    results = json.loads((out / "results.json").read_text())
    v = results["verdict"]["se_r4"]
    assert v["outcome"] in OUTCOMES and v["summary"]
    ids = {c["id"] for c in v["criteria"]}
    assert {"robustness", "global_state_stable", "gate_damps", "gate_absorbs", "gradient_masking"} <= ids
    assert all(c["outcome"] in {*OUTCOMES, "opposite"} for c in v["criteria"])
    rob = next(c for c in v["criteria"] if c["id"] == "robustness")
    if rob["budgets_tested"]:  # the study's per-image results reach the verdict: seeds x images interval
        assert rob["method"] == "crossed seeds x images" and v["power"]["n_images"] > 0
        assert v["power"]["mde"] > 0 and v["settings"]["interval"] == "crossed seeds x images"
    assert results["meta"]["seeds"] == [0, 1] and results["meta"]["time_s"] > 0
    assert results["config"]["study"]["name"] == "tiny"


def test_robust_table_is_consistent(study):
    _, out, _ = study
    import pandas as pd

    robust = pd.read_csv(out / "tables" / "robust.csv")
    assert set(robust["model"]) == {"baseline", "se_r4"} and set(robust["seed"]) == {0, 1}
    clean = robust[robust["eps"] == 0]
    assert (clean["robust_acc"] == clean["clean_acc"]).all()
    assert (robust["robust_acc"] <= robust["clean_acc"] + 1e-12).all()


def test_cli_reports_config_errors_without_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[study]\nname = "x"\n[attacks]\neps = [0.1, 2.0]\n')
    proc = subprocess.run([sys.executable, "-m", "serobust.cli", "run", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "attacks.eps[1] must be <= 1" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                    reason="chromium is not installed")
def test_report_renders_in_headless_chromium_and_every_image_loads(study, tmp_path):
    _, out, _ = study
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    probe = out / "_probe.html"
    html = (out / "index.html").read_text()
    script = """<script>
    window.addEventListener('load', () => {
      const imgs = [...document.images];
      const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);
      document.title = 'IMAGES ' + imgs.length + ' BROKEN ' + bad.length;
    });</script>"""
    probe.write_text(html.replace("</body>", script + "</body>"))
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files",
         "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120)
    probe.unlink()
    n_figs = len(list((out / "figures").glob("*.png")))
    assert f"<title>IMAGES {n_figs} BROKEN 0</title>" in proc.stdout, proc.stdout[:500] + proc.stderr[-2000:]
    assert "Verdict" in proc.stdout


def test_imagefolder_study_with_two_reduction_ratios(tmp_path):
    """Switching to an ImageFolder tree is one [data] section; several r give one twin each, side by side."""
    import copy

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("test", 30)):
        for c, name in enumerate(("ring", "bar", "dot")):
            folder = tmp_path / "tree" / split / name
            folder.mkdir(parents=True)
            for i in range(n // 3):
                img = rng.integers(0, 60, (12, 12, 3), dtype=np.uint8)
                img[2 + c * 3 : 5 + c * 3, 2:10] = 230  # the class is a bright band at a class-specific row
                Image.fromarray(img).save(folder / f"{i}.png")
    raw = copy.deepcopy(TINY)
    raw["study"]["name"] = "folder"
    raw["data"] = {"name": "imagefolder", "path": str(tmp_path / "tree"), "root": str(tmp_path / "cache"),
                   "eval_size": 30}
    raw["model"]["reductions"] = [4, 8]
    raw["diagnostics"]["enabled"] = False
    results = run_study(study_config_from_dict(raw), out_dir=tmp_path / "out", progress=False)
    assert set(results["verdict"]) == {"se_r4", "se_r8"}
    assert all(v["outcome"] in OUTCOMES for v in results["verdict"].values())
    assert results["meta"]["dataset"]["num_classes"] == 3 and results["meta"]["dataset"]["image_size"] == [12, 12]
    import pandas as pd

    robust = pd.read_csv(tmp_path / "out" / "tables" / "robust.csv")
    assert set(robust["model"]) == {"baseline", "se_r4", "se_r8"}
    assert (tmp_path / "out" / "figures" / "paired_differences.png").is_file()
    assert list((tmp_path / "cache" / "imagefolder-cache").glob("*.pt"))


def test_single_file_report_from_the_command_line(study, capsys):
    from serobust.cli import main

    _, out, _ = study
    assert main(["report", str(out), "--single-file"]) == 0
    page = (out / "index.single.html").read_text()
    assert "data:image/png;base64," in page and 'src="figures/' not in page
    assert str(out / "index.single.html") in capsys.readouterr().out


def test_report_leads_with_the_verdict_sentence_and_names_the_run(study):
    _, out, results = study
    html = (out / "index.html").read_text()
    headline = results["verdict"]["se_r4"]["headline"]
    import html as html_lib

    assert html_lib.escape(headline, quote=False).split(" (")[0] in html
    assert html.index("Headline table") > html.index(html_lib.escape(headline.split(" (")[0], quote=False))
    assert results["meta"]["run_id"] in html
    if results["verdict"]["se_r4"]["power"]:  # the power statement and the glossary's method are on the page
        assert "Power: with 2 seeds x" in html and "minimum detectable effect" in html
        assert "Holm" in html and "descriptive" in html
