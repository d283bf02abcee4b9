"""From finished tasks to the study's tables, statistics and verdicts.

:func:`collect` reads every task's stored parts and stacks them into one long table per kind, tagged with
the seed and member each row belongs to (from the task's params: nothing is guessed from names).
:func:`statistics` adds the tables made from them (paired robust-accuracy differences, McNemar, per-member
means with t intervals, shift statistics, the headline table) and one verdict per SE twin. The summary
tables (means across seeds per group) are the rows of :data:`serobust.stats.summaries.SUMMARIES`, the one
table of recipes the report also uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..config.study_config import StudyConfig
from ..names import BASELINE
from ..stats.summaries import SHIFT_QUANTITIES, summary_table
from .stages import STAGES
from .store import StudyStore
from .tasks import Task

__all__ = ["collect", "statistics", "SHIFT_QUANTITIES"]



def _tag(frame: pd.DataFrame, **cols: Any) -> pd.DataFrame:
    frame = frame.copy()
    for k, v in reversed(cols.items()):
        if k in frame.columns:
            frame = frame.drop(columns=k)
        frame.insert(0, k, v)
    return frame


def _tags(task: Task, table: str) -> dict[str, Any]:
    """What each row of ``task``'s part in ``table`` is tagged with: its seed and member (``twin`` for
    sensitivity: the matched layers pair a twin with its baseline; source and target for transfer)."""
    p = task.params
    if task.stage == "transfer":
        return {"seed": p.seed, "source": p.source, "target": p.target}
    return {"seed": p.seed, ("twin" if table == "sensitivity" else "model"): p.member}


def collect(tasks: Sequence[Task], store: StudyStore) -> tuple[dict[str, pd.DataFrame], dict[str, Any] | None]:
    """Every task's parts as study tables (one long frame per kind), and the example images if any."""
    parts: dict[str, list[pd.DataFrame]] = {}
    examples = None
    for task in tasks:
        out = store.load(task)
        if task.stage == "examples":
            examples = _examples(out, task.params)
        for table, part in STAGES[task.stage].tables:  # (study table, the task output's part)
            frame = out.get(part)
            if frame is not None and len(frame.columns):
                parts.setdefault(table, []).append(_tag(frame, **_tags(task, table)))
    return {k: pd.concat(v, ignore_index=True) for k, v in parts.items()}, examples


def _examples(out: dict[str, Any], p: Any) -> dict[str, Any]:
    return {"x": out["x"], "y": out["y"], "eps": out["meta"]["eps"], "attack": out["meta"]["attack"],
            "models": {m: {f: out[f"{m}.{f}"] for f in ("x_adv", "pred_clean", "pred_adv")} for m in p.members}}


def statistics(tables: dict[str, pd.DataFrame], cfg: StudyConfig, *, main_attack: str,
               twins: Sequence[str]) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Add the statistics tables and compute one verdict per twin; returns ``(tables, verdicts)``.

    The verdicts are :meth:`serobust.stats.verdict.Verdict.to_dict` dicts (what results.json holds); their overall
    outcomes are decided together (:func:`serobust.stats.verdict.decide_overall`: Holm across every twin's
    criteria), and each robustness interval covers seeds and test images from the ``per_example`` table.
    """
    from ..detect.verdict import detection_criterion
    from ..stats.differences import robust_accuracy_table
    from ..stats.paired import pooled_mcnemar
    from ..stats.robust_accuracy import headline_table
    from ..stats.verdict import decide_overall, verdict

    st = cfg.stats
    ci = {"confidence": st.confidence, "n_resamples": st.n_resamples}
    per_255 = bool(cfg.eps_labels)  # the config wrote budgets as fractions: texts say 8/255, not 0.0313725
    per_seed = tables["robust"][["seed", "model", "attack", "eps", "robust_acc"]]
    tables["robust_stats"] = robust_accuracy_table(per_seed, per_example=tables.get("per_example"), **ci)
    _add_summary(tables, "robust_summary", **ci)
    if "per_example" in tables:
        tables["mcnemar"] = pooled_mcnemar(tables["per_example"], confidence=st.confidence)
    for name in ("shift_stats", "interventions_summary", "sensitivity_summary"):
        _add_summary(tables, name, **ci)
    verdicts = {}
    diag = tables.get("diagnostics")
    per_example = tables.get("per_example")
    for twin in twins:
        d = None
        if diag is not None:  # every seed's rows: a check failing on ANY seed fails the guard (verdicts.py)
            d = diag[diag["model"].isin([BASELINE, twin])]
        shift = tables["shift"][tables["shift"]["model"] == twin] if "shift" in tables else None
        verdicts[twin] = verdict(per_seed[per_seed["model"].isin([BASELINE, twin])], shift, d, se_model=twin,
                                 per_example=per_example, attack=main_attack, alpha=1 - st.confidence,
                                 min_effect=st.min_effect, mechanism_margin=st.mechanism_margin, floor=st.floor,
                                 ceiling_gap=st.ceiling_gap, per_255=per_255)
        if "detection" in tables:  # declared beside H1 (counts=False): reported, not part of the conjunction
            verdicts[twin].criteria.append(detection_criterion(
                tables["detection"][tables["detection"]["model"] == twin], margin=cfg.detect.margin,
                level=cfg.detect.level, **ci))
    decide_overall(list(verdicts.values()), alpha=1 - st.confidence)  # Holm across twins and their criteria
    verdicts = {twin: v.to_dict() for twin, v in verdicts.items()}  # the JSON boundary (results.json)
    tested = sorted({e for v in verdicts.values() for e in _robustness(v).get("budgets_tested", [])})
    budgets = _named_budgets(tested, sorted(set(per_seed.loc[per_seed["eps"] > 0, "eps"])))
    if budgets:
        tables["headline"] = headline_table(per_seed, attack=main_attack, budgets=budgets, confidence=st.confidence,
                                            per_255=per_255, n_resamples=st.n_resamples, per_example=per_example)
    _add_summary(tables, "autoattack_summary", **ci)
    if cfg.report.references:
        tables["references"] = _references(cfg, tables["robust_summary"], tables["robust"])
    _add_summary(tables, "detection_summary", **ci)  # rows with a NaN AUROC (nothing to score) left out
    return tables, verdicts


def _add_summary(tables: dict[str, pd.DataFrame], name: str, **ci: Any) -> None:
    """Add the summary table ``name`` (:data:`serobust.stats.summaries.SUMMARIES`) when its source is there."""
    made = summary_table(name, tables, **ci)
    if made is not None:
        tables[name] = made


def _references(cfg: StudyConfig, summary: pd.DataFrame, robust: pd.DataFrame) -> pd.DataFrame:
    """Each published number of ``report.references`` beside this study's mean for the same member, attack
    (matched by name: ``pgd`` matches ``pgd(steps=20)``) and budget; NaN where the study did not measure it."""
    from ..eps import parse_eps

    rows = []
    pairs = [pair.name for pair in cfg.model.pair_specs()] if cfg.model.pairs else []
    for ref in cfg.report.references:
        eps = parse_eps(ref["eps"])
        name = summary["attack"].astype(str).str.split("(").str[0]
        hit = summary[(summary["model"] == ref["member"]) & (name == ref["attack"]) & ((summary["eps"] - eps).abs() < 1e-9)]
        clean = robust[(robust["model"] == ref["member"]) & (robust["eps"] == 0)]["clean_acc"]
        if "pair" in ref:  # one given pair: its own measurement (seed = pair index), no interval
            mine = robust[(robust["model"] == ref["member"]) & (robust["seed"] == pairs.index(ref["pair"]))]
            at = mine[(mine["attack"].astype(str).str.split("(").str[0] == ref["attack"])
                      & ((mine["eps"] - eps).abs() < 1e-9)]
            hit = at.assign(mean=at["robust_acc"], ci_low=float("nan"), ci_high=float("nan"))
            clean = mine[mine["eps"] == 0]["clean_acc"]
        rows.append({"member": ref["member"], **({"pair": ref["pair"]} if "pair" in ref else {}),
                     "attack": hit["attack"].iloc[0] if len(hit) else ref["attack"],
                     "eps": eps, "published_robust_acc": ref["robust_acc"], "protocol": ref.get("protocol", ""),
                     "measured_robust_acc": hit["mean"].iloc[0] if len(hit) else float("nan"),
                     "ci_low": hit["ci_low"].iloc[0] if len(hit) else float("nan"),
                     "ci_high": hit["ci_high"].iloc[0] if len(hit) else float("nan"),
                     "published_clean_acc": ref.get("clean_acc", float("nan")),
                     "measured_clean_acc": float(clean.mean()) if len(clean) else float("nan"),
                     "source": ref["source"]})
    return pd.DataFrame(rows)


def _robustness(verdict: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in verdict["criteria"] if c["id"] == "robustness")


def _named_budgets(tested: list[float], available: list[float]) -> list[float]:
    """Two or three budgets for the headline table: the tested ones (spread out), else the smallest ones."""
    pool = tested or available
    if len(pool) <= 3:
        return pool
    return [pool[0], pool[len(pool) // 2], pool[-1]]
