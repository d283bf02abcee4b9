"""Write the report: figures under ``figures/``, one HTML page, and on request one self-contained file.

``index.html`` links its PNGs relatively (``figures/*.png``), so the folder opens from the file system in
any browser. ``index.single.html`` (``single_file=True``, or :func:`render_single_file` on a finished report
folder) is the same page with every figure inlined as a base64 data URI: one file to mail or attach. Text
from configs and results is escaped by jinja2's autoescape; the only markup inserted as-is is the tables'
HTML, which pandas escapes itself.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from ..errors import SerobustError
from ..io import atomic_write_text
from ..names import BASELINE
from ..stats.summaries import with_summaries
from .figures import FigureStyle
from .glossary import TERMS, place_terms
from .headline import attacked_images, headline_frame, headline_view
from .labels import EpsLabeler, attack_name
from .meta_view import attack_rows, meta_rows
from .palette import member_palette
from .plan import FigureSpec, PlanInput, plan_figures
from .tables import table_views
from .verdict_view import verdict_views

__all__ = ["write_report", "render_single_file", "SINGLE_FILE_NAME", "ReportFolderError"]

log = logging.getLogger(__name__)

#: Name of the self-contained page beside ``index.html``.
SINGLE_FILE_NAME = "index.single.html"


class ReportFolderError(SerobustError, FileNotFoundError):
    """A folder given as a finished report lacks ``results.json`` (the report was never written there)."""


def _settings(results: Mapping[str, Any]) -> tuple[float, int]:
    stats = results.get("config", {}).get("stats", {})
    return float(stats.get("confidence", 0.95)), int(stats.get("n_resamples", 10_000))


def _style(results: Mapping[str, Any], tables: Mapping[str, pd.DataFrame], confidence: float) -> FigureStyle:
    """One palette over every member the study names or a table holds (baseline first, twins by r)."""
    members = list(results.get("meta", {}).get("members", []))
    for name, column in (("robust", "model"), ("shift", "model"), ("sensitivity", "member")):
        frame = tables.get(name)
        if frame is not None and column in frame.columns:
            members += [str(m) for m in frame[column].unique()]
    return FigureStyle(palette=member_palette(members or [BASELINE]), confidence=confidence,
                       eps_label=EpsLabeler(results.get("meta", {}).get("eps_labels")),
                       attack=_probe_attack(results.get("meta", {})))


def _probe_attack(meta: Mapping[str, Any]) -> str | None:
    """The attack behind the "adversarial" rows of the shift and mechanism figures: the probe's (results of
    older runs did not record it; their probe ran the main attack)."""
    return attack_name(meta.get("probe_attack") or meta.get("main_attack", "")) or None


def _prepare(results: Mapping[str, Any], tables: Mapping[str, pd.DataFrame],
             examples: Mapping[str, Any] | None) -> tuple[dict[str, pd.DataFrame], FigureStyle, list[FigureSpec]]:
    confidence, n_resamples = _settings(results)
    tables = with_summaries(tables, confidence=confidence, n_resamples=n_resamples)
    style = _style(results, tables, confidence)
    return tables, style, plan_figures(PlanInput(results, tables, examples, style, n_resamples))


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _render(folder: Path, results: Mapping[str, Any], tables: Mapping[str, pd.DataFrame], style: FigureStyle,
            specs: Sequence[FigureSpec], *, inline: bool) -> str:
    """The page's HTML; ``inline`` puts every figure in as a data URI instead of a relative link."""
    meta = results.get("meta", {})
    files = {k: v for k, v in (results.get("tables") or {}).items() if k in tables}
    views = table_views(tables, files=files, eps_label=style.eps_label)
    head = headline_frame(results, tables, style)
    parts = [("answer", ("seed", "pp", "interval", "supported", "not_supported", "opposite", "inconclusive",
                         "holm", "mde", "informative")),
             ("headline", ("params", "clean_acc", "robust_acc", "eps", "diff")),
             ("criteria", ("u", "z", "s", "damping", "z_over_u", "beyond_noise", "masking"))]
    parts += [(f"fig-{s.name}", s.terms) for s in specs]
    parts += [(f"table-{t['name']}", t["terms"]) for t in views]
    parts.append(("meta", ("run_time",)))
    placed = place_terms(parts)
    shown = {t.key for terms in placed.values() for t in terms}
    figs = [{"number": i, "name": s.name, "title": s.title, "caption": s.caption, "alt": s.alt,
             "src": _data_uri(folder / "figures" / f"{s.name}.png") if inline else f"figures/{s.name}.png"}
            for i, s in enumerate(specs, start=1)]
    env = Environment(loader=PackageLoader("serobust", "report/templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    return env.get_template("report.html.j2").render(
        meta=meta, verdicts=verdict_views(results, style=style),
        headline=headline_view(head, results=results, style=style) if head is not None else None,
        attack=attack_name(meta.get("main_attack", "")), attack_label=meta.get("main_attack", ""),
        attacked_images=attacked_images(tables, meta.get("main_attack", "")),
        members=[{"name": m, "color": c} for m, c in style.palette.items()],
        figures=figs, tables=views, terms=placed, glossary=[t for t in TERMS.values() if t.key in shown],
        meta_rows=meta_rows(meta), attack_rows=attack_rows(meta), level=style.level,
        config=json.dumps(results.get("config", {}), indent=2, default=str), single=inline,
        table_files=files)


def write_report(out_dir: str | Path, results: Mapping[str, Any], tables: Mapping[str, pd.DataFrame],
                 examples: Mapping[str, Any] | None = None, *, single_file: bool = False) -> Path:
    """Draw every figure the tables allow and render ``out_dir/index.html``; returns the page's path.

    Args:
        out_dir: the report folder (figures go to ``out_dir/figures``).
        results: the content of results.json (``meta``, ``config``, ``verdict``, ``tables``).
        tables: the study's tables by name; missing summary tables are made here with the same intervals.
        examples: example images for the example grid (``None``: no grid).
        single_file: also write ``out_dir/index.single.html`` with every figure inlined.
    """
    out = Path(out_dir)
    tables, style, specs = _prepare(results, tables, examples)
    drawn = []
    for spec in specs:
        if spec.draw is not None:
            spec.draw(out / "figures" / f"{spec.name}.png")
            drawn.append(spec)
    path = out / "index.html"
    atomic_write_text(path, _render(out, results, tables, style, drawn, inline=False))
    if single_file:
        atomic_write_text(out / SINGLE_FILE_NAME, _render(out, results, tables, style, drawn, inline=True))
    log.info("report page %s with %d figures", path, len(drawn))
    return path


def render_single_file(folder: str | Path, *, path: str | Path | None = None) -> Path:
    """Rebuild the self-contained page of a finished report folder (results.json, tables/, figures/).

    Figures are not redrawn: each PNG in ``figures/`` that the page would show is inlined. Returns the
    written path (``folder/index.single.html`` unless ``path`` is given).

    Raises:
        ReportFolderError: ``folder`` has no results.json (not a finished report folder).
    """
    folder = Path(folder)
    source = folder / "results.json"
    if not source.is_file():
        raise ReportFolderError(f"{folder} is not a finished report folder: results.json is missing; run the "
                                f"study first (serobust run CONFIG) or give the folder that holds index.html",
                                where=str(folder))
    results = json.loads(source.read_text())
    tables = {p.stem: pd.read_csv(p) for p in sorted((folder / "tables").glob("*.csv"))}
    tables, style, specs = _prepare(results, tables, None)
    shown = [s for s in specs if (folder / "figures" / f"{s.name}.png").is_file()]
    target = Path(path) if path is not None else folder / SINGLE_FILE_NAME
    atomic_write_text(target, _render(folder, results, tables, style, shown, inline=True))
    return target
