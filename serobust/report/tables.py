"""The page's reference tables: what each study table is, the view shown, and its HTML.

Each entry of :data:`TABLES` names a study table, a title, one sentence on how to read it and the glossary
terms it uses; the view keeps the columns a reader needs (the CSV beside the page has all of them). Tables
longer than :data:`FOLD_ROWS` rows are folded in ``<details>``; every table sits in its own horizontally
scrolling box so the page never scrolls sideways. Budgets are written as the config wrote them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .labels import EpsLabeler

__all__ = ["TableSpec", "TABLES", "FOLD_ROWS", "frame_html", "table_views"]

#: Tables with more rows than this are folded (closed ``<details>``).
FOLD_ROWS = 12
_MAX_ROWS = 400


@dataclass(frozen=True)
class TableSpec:
    """A reference table: study table ``name``, title, how to read it, glossary terms, the view shown."""

    name: str
    title: str
    about: str
    terms: tuple[str, ...] = ()
    view: Callable[[pd.DataFrame], pd.DataFrame] | None = None


def _columns(*names: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda f: f[[c for c in names if c in f.columns]]


def _mean_over_seeds(by: list[str], values: list[str]) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def view(f: pd.DataFrame) -> pd.DataFrame:
        keys = [b for b in by if b in f.columns]
        return f.groupby(keys, dropna=False, sort=False)[[v for v in values if v in f.columns]].mean().reset_index()
    return view


#: The reference tables in page order (a study table not listed and not raw appears under "other tables").
TABLES: tuple[TableSpec, ...] = (
    TableSpec("robust_stats", "Robust accuracy: SE twin vs baseline per attack and budget",
              "Seed-paired differences (mean_diff = SE twin minus baseline) with t and bootstrap intervals; "
              "ci_low/ci_high is the interval the verdict uses (over seeds and test images where per-image "
              "results exist: ci_method), t_p the paired t test across seeds.", ("diff", "interval"),
              _columns("model", "attack", "eps", "n_seeds", "n_images", "mean_baseline", "mean_model", "mean_diff",
                       "ci_low", "ci_high", "ci_method", "t_p", "d_z")),
    TableSpec("robust_summary", "Robust accuracy per member across seeds",
              "Mean robust accuracy per member, attack and budget with its interval (the bands of Figure 1).",
              ("robust_acc",), _columns("model", "attack", "eps", "n", "mean", "ci_low", "ci_high", "ci_method")),
    TableSpec("mcnemar", "Per-image McNemar tests",
              "Both models on the same images within one seed: b01 / b10 count the images only one of them gets "
              "right; fisher_p combines the seeds.", ("mcnemar",),
              _columns("model", "attack", "eps", "seed", "n", "n11", "b01", "b10", "n00", "diff", "diff_ci_low",
                       "diff_ci_high", "test", "p_value", "fisher_p")),
    TableSpec("diagnostics", "Gradient-masking checks",
              "Each check per member and seed, passed or failed, with the numbers behind it.", ("masking",),
              _columns("seed", "model", "check", "passed", "detail")),
    TableSpec("blackbox", "Black-box checks (Square; compare with PGD above)",
              "Robust accuracy under the black-box attack, mean over seeds; it must not beat the white-box attacks.",
              (), _mean_over_seeds(["model", "attack", "eps"], ["clean_acc", "robust_acc"])),
    TableSpec("transfer", "Transfer between the twins",
              "Adversarial images from one twin scored on the other, per seed.", ("transfer",),
              _columns("seed", "source", "target", "attack", "eps", "transfer_robust_acc",
                       "target_whitebox_robust_acc", "transfer_success_rate", "n")),
    TableSpec("adaptive", "Adaptive attacks on the mechanism",
              "Attacks that know about the gates; stronger_than_pgd flags one that beats plain PGD.", ("adaptive",),
              _columns("seed", "model", "attack", "eps", "robust_acc", "clean_acc", "stronger_than_pgd", "n")),
    TableSpec("shift_stats", "Excitation shift across seeds",
              "Each shift quantity averaged over blocks and budgets within seed, then across seeds.",
              ("rel_change", "damping", "z_over_u"),
              _columns("quantity", "model", "kind", "eps", "n", "mean", "ci_low", "ci_high", "ci_method")),
    TableSpec("interventions_summary", "Interventions on the excitations",
              "Accuracy under attack with the excitations replaced, across seeds (Figure: interventions).",
              ("interventions",), _columns("model", "condition", "block", "n", "mean", "ci_low", "ci_high")),
    TableSpec("sensitivity_summary", "Feature sensitivity across seeds",
              "Relative change of matched block outputs per member, budget and layer.", ("sensitivity",),
              _columns("member", "eps", "layer", "n", "mean", "ci_low", "ci_high")),
    TableSpec("profile_shift", "Adversarial excitations and class profiles",
              "Per block: do fooled images' excitations move towards the fooled class's clean profile?",
              ("profiles",)),
    TableSpec("references", "Published numbers beside ours",
              "Robust accuracy reported in the literature for a comparable training recipe, next to this study's "
              "mean over seeds for the same member, attack and budget (different code, seeds and schedules: "
              "a sanity check of the setup, not a replication; protocol names how each reference was trained "
              "where it differs from this study); for a published pair (pair column), that pair's own "
              "measurement beside the library's published number.", ("robust_acc",),
              _columns("member", "pair", "attack", "eps", "published_robust_acc", "protocol", "measured_robust_acc",
                       "ci_low",
                       "ci_high", "published_clean_acc", "measured_clean_acc", "source")),
    TableSpec("autoattack_summary", "AutoAttack, component by component",
              "Robust accuracy after each AutoAttack component in turn (each runs on the images still robust), "
              "as AutoAttack reports it; the last line of each budget is the AutoAttack robust accuracy.",
              ("robust_acc",), _columns("model", "eps", "step", "component", "n", "mean", "ci_low", "ci_high")),
    TableSpec("detection_summary", "Detecting the attack from the excitations",
              "AUROC of a Mahalanobis detector on the SE twin's excitations (s, z per block; features = "
              "excitation) vs the same detector on pooled block outputs: the SE twin's own on the same adversarial "
              "images (features = pooled_twin) and the baseline's (features = pooled), against FGSM, PGD, "
              "equal-norm Gaussian noise and an adaptive attack that also lowers the detector's score (no random "
              "start; adaptive(w=...) one loss weight, adaptive the strongest per image); mean over seeds with "
              "its interval.", ("detection",),
              _columns("model", "features", "perturbation", "eps", "n", "mean", "ci_low", "ci_high")),
    TableSpec("detection", "Detection per seed",
              "AUROC and TPR at 5% FPR per seed, with the numbers of positives (successful adversarial images) "
              "and negatives (clean images classified correctly).", ("detection",)),
)

#: Tables shown elsewhere (headline) or too raw to print (the CSVs hold them).
_NOT_LISTED = {"headline", "robust", "per_example", "shift", "shift_channels", "sensitivity", "history",
               "interventions", "autoattack"}


def frame_html(frame: pd.DataFrame, *, eps_label: EpsLabeler | None = None, max_rows: int = _MAX_ROWS) -> str:
    """An escaped HTML table of ``frame`` (4 significant digits; eps written as the config wrote it)."""
    shown = frame.head(max_rows).copy()
    if eps_label is not None:
        for col in [c for c in shown.columns if c == "eps" or str(c).endswith("_eps")]:
            shown[col] = [eps_label(v) if pd.notna(v) else "" for v in shown[col]]
    return shown.to_html(index=False, classes="tbl", border=0, escape=True, na_rep="",
                         float_format=lambda v: f"{v:.4g}")


def table_views(tables: Mapping[str, pd.DataFrame], *, files: Mapping[str, str],
                eps_label: EpsLabeler) -> list[dict[str, Any]]:
    """Every reference table present, as ``{name, title, about, terms, html, rows, folded, file}``."""
    specs = list(TABLES)
    known = {s.name for s in specs} | _NOT_LISTED
    specs += [TableSpec(name, name.replace("_", " "), "") for name in tables if name not in known]
    out = []
    for spec in specs:
        frame = tables.get(spec.name)
        if frame is None or frame.empty:
            continue
        view = spec.view(frame) if spec.view else frame
        out.append({"name": spec.name, "title": spec.title, "about": spec.about, "terms": spec.terms,
                    "html": frame_html(view, eps_label=eps_label), "rows": len(view),
                    "truncated": len(view) > _MAX_ROWS, "folded": len(view) > FOLD_ROWS,
                    "file": files.get(spec.name, f"tables/{spec.name}.csv")})
    return out
