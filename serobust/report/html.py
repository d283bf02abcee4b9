"""Write the report: figures under ``figures/`` and one HTML page linking them relatively.

The page is self-contained apart from its PNGs, which sit beside it (``figures/*.png``) with relative
links, so it opens from the file system in any browser; the tables are inlined.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from ..io import atomic_write_text
from . import figures

__all__ = ["write_report"]

log = logging.getLogger(__name__)


def _table(frame: pd.DataFrame | None, *, max_rows: int = 200) -> str:
    if frame is None or frame.empty:
        return ""
    return frame.head(max_rows).to_html(index=False, classes="tbl", border=0, float_format=lambda v: f"{v:.4g}",
                                        na_rep="")


def write_report(out: Path, results: dict[str, Any], tables: dict[str, pd.DataFrame],
                 examples: dict[str, Any] | None = None) -> Path:
    """Draw every figure whose table exists and render ``out/index.html``; returns the page's path."""
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    conf = results["config"]["stats"]["confidence"]
    main = results["meta"]["main_attack"]
    figs: list[dict[str, str]] = []

    def add(name: str, title: str, caption: str, draw) -> None:
        path = draw(fig_dir / f"{name}.png")
        figs.append({"src": f"figures/{path.name}", "title": title, "caption": caption})

    robust = tables.get("robust")
    if robust is not None:
        add("robust_accuracy", "Robust accuracy vs eps",
            "White-box attacks at every budget; worst_case counts an example as robust only if every attack failed.",
            lambda p: figures.robust_accuracy(robust, p, confidence=conf))
        add("paired_differences", "Per-seed paired differences",
            f"SE twin minus baseline for {main}, one dot per seed; the verdict's unit of replication is the seed.",
            lambda p: figures.paired_differences(robust, p, attack=main))
    if "shift" in tables:
        add("excitation_shift", "Excitation shift per block",
            "Relative change of s, z and u under the attack and under random noise of the same size.",
            lambda p: figures.excitation_shift(tables["shift"], p))
        add("damping", "Damping ratio per block",
            "Relative change of s*u over relative change of u (below 1: the gate damps), and z over u.",
            lambda p: figures.damping(tables["shift"], p))
    if "shift_channels" in tables:
        ch = tables["shift_channels"]
        value = next((c for c in ("s_abs_change", "s_max_abs_change", "s_rel_change") if c in ch.columns), None)
        if value is not None and "channel" in ch.columns:
            add("channel_heatmap", "Block x channel excitation change",
                "Mean absolute change of each channel's excitation under attack.",
                lambda p: figures.channel_heatmap(ch, p, value=value))
    if "sensitivity" in tables:
        sens = tables["sensitivity"]
        value = next((c for c in ("rel_change", "relative_change", "feature_rel_change") if c in sens.columns), None)
        if value is not None and "layer" in sens.columns:
            add("sensitivity", "Feature sensitivity through depth",
                "Relative change of matched block outputs, baseline vs SE twin, each under its own attack.",
                lambda p: figures.sensitivity(sens, p, value=value))
    if "interventions" in tables:
        add("interventions", "Interventions on the excitations",
            "Accuracy on adversarial inputs when s is replaced by the clean input's own s (excitation swap) or by "
            "the dataset-mean s (frozen gate).", lambda p: figures.interventions(tables["interventions"], p))
    if "history" in tables:
        add("training", "Training", "Loss and clean test accuracy per epoch (mean over seeds).",
            lambda p: figures.training_curves(tables["history"], p))
    if examples is not None:
        add("examples", "Examples", "Clean and adversarial images with each model's prediction (seed 0).",
            lambda p: figures.examples_grid(examples, p))

    env = Environment(loader=PackageLoader("serobust", "report/templates"), autoescape=select_autoescape(["html", "j2"]))
    page = env.get_template("report.html.j2").render(
        meta=results["meta"],
        verdicts=results["verdict"],
        figures=figs,
        tables={
            "Robust accuracy: SE twin vs baseline across seeds": _table(tables.get("robust_stats")),
            "Gradient-masking diagnostics": _table(_diag_view(tables.get("diagnostics"))),
            "Black-box checks (Square; compare with PGD in the robust-accuracy table)": _table(_mean_view(tables.get("blackbox"), ["model", "attack", "eps"],
                                                                       ["robust_acc"])),
            "Transfer between the twins": _table(tables.get("transfer")),
            "Adaptive attacks on the mechanism": _table(tables.get("adaptive")),
            "Per-example McNemar tests": _table(tables.get("mcnemar")),
            "Excitation shift (mean over seeds, CI)": _table(tables.get("shift_stats")),
            "Interventions": _table(_mean_view(tables.get("interventions"), ["model", "condition", "block"], ["accuracy"])),
            "Adversarial excitations and class profiles": _table(tables.get("profile_shift")),
        },
        config=json.dumps(results["config"], indent=2, default=str),
        table_files=results.get("tables", {}),
    )
    path = out / "index.html"
    atomic_write_text(path, page)
    return path


def _diag_view(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    if frame is None:
        return None
    cols = [c for c in ("seed", "model", "check", "passed", "detail") if c in frame.columns]
    return frame[cols]


def _mean_view(frame: pd.DataFrame | None, by: list[str], values: list[str]) -> pd.DataFrame | None:
    if frame is None:
        return None
    by = [b for b in by if b in frame.columns]
    return frame.groupby(by, dropna=False)[values].mean().reset_index()
