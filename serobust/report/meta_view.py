"""The run's metadata as label/value rows: what ran, where, with which versions, for how long.

Reads ``results["meta"]`` as the pipeline writes it (git, versions, device, executor, params, attacks,
diagnostics, ``time_s``); results of older runs (flat ``torch``/``python`` keys, ``device`` as a string)
show what they have. The run time is shown exactly as ``time_s`` holds it: the page states one number.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["meta_rows", "attack_rows"]


def _join(values: Any) -> str:
    return ", ".join(str(v) for v in values) if isinstance(values, (list, tuple)) else str(values)


def _versions(meta: Mapping[str, Any]) -> str:
    versions = meta.get("versions")
    if isinstance(versions, Mapping):
        return ", ".join(f"{k} {v}" for k, v in versions.items())
    old = [f"{k} {meta[k]}" for k in ("serobust", "torch", "python") if meta.get(k)]
    return ", ".join(old + ([str(meta["platform"])] if meta.get("platform") else []))


def _git(meta: Mapping[str, Any]) -> str:
    git = meta.get("git")
    if not isinstance(git, Mapping) or not git.get("commit"):
        return "not recorded" if git is None else "not a git checkout"
    dirty = git.get("dirty")
    state = "uncommitted changes (dirty)" if dirty else "clean" if dirty is False else "state unknown"
    return f"{git['commit']} ({state})"


def _device(meta: Mapping[str, Any]) -> str:
    dev = meta.get("device")
    if not isinstance(dev, Mapping):
        return str(dev or "")
    text = f"{dev.get('type', '')}: {dev.get('name') or 'unknown model'}"
    return text + (f", {dev['threads']} threads" if dev.get("threads") else "")


def _dataset(meta: Mapping[str, Any]) -> str:
    d = meta.get("dataset") or {}
    if not d:
        return ""
    size = "x".join(str(s) for s in d.get("image_size", []))
    return (f"{d.get('name', '')}: {d.get('train', '?')} train / {d.get('test', '?')} test images, "
            f"{d.get('eval', '?')} attacked, {d.get('num_classes', '?')} classes" + (f", {size} px" if size else ""))


def _pairs(pairs: Any) -> str:
    """Given pairs (published or user-trained): seed = pair index, each member's source and size."""
    if not pairs:
        return ""

    def member(m: Mapping[str, Any]) -> str:
        weights = "" if m.get("weights") in ("pretrained", None) else f" ({m['weights']})"
        return f"{m.get('source', '?')}{weights}, {int(m.get('params', 0)):,} parameters, {m.get('input_size', '?')} px"

    return "; ".join(f"seed {p.get('seed')} = {p.get('name')}: baseline {member(p.get('baseline', {}))}, "
                     f"SE {member(p.get('se', {}))} with {p.get('se', {}).get('se_blocks', '?')} SE blocks"
                     for p in pairs)


def meta_rows(meta: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows for the metadata table; rows whose value is unknown are left out."""
    params = meta.get("params") or {}
    executor = meta.get("executor") or {}
    diag = meta.get("diagnostics") or {}
    rows = [
        ("study", str(meta.get("study", ""))),
        ("config file", str(meta.get("config_file", ""))),
        ("run id", str(meta.get("run_id", ""))),
        ("started", str(meta.get("started", ""))),
        ("finished", str(meta.get("finished", ""))),
        ("run time", f"{meta['time_s']} s" if meta.get("time_s") is not None else ""),
        ("git commit", _git(meta)),
        ("versions", _versions(meta)),
        ("device", _device(meta)),
        ("executor", f"{executor.get('name', '')}, {executor.get('jobs', '?')} job(s)" if executor else ""),
        ("dataset", _dataset(meta)),
        ("members", _join(meta.get("members", []))),
        ("parameters", ", ".join(f"{m}: {int(n):,}" for m, n in params.items())),
        ("seeds", _join(meta.get("seeds", []))),
        ("pairs", _pairs(meta.get("pairs"))),
        ("design", str(meta.get("design", ""))),
        ("main attack", str(meta.get("main_attack", ""))),
        ("probe attack", str(meta.get("probe_attack", ""))),
        ("masking checks", f"seeds {_join(diag.get('seeds', []))} on {diag.get('n_images', '?')} images"
         if diag else ""),
    ]
    return [(label, value) for label, value in rows if value not in ("", "[]")]


def attack_rows(meta: Mapping[str, Any]) -> list[dict[str, str]]:
    """One row per configured attack: label, norm and its budget in words (step size, restarts, queries)."""
    return [{"label": str(a.get("label", "")), "norm": str(a.get("norm", "")), "budget": str(a.get("budget", ""))}
            for a in meta.get("attacks") or []]
