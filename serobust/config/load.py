"""Reading a study: a TOML file (:func:`load_study_config`) or a parsed document
(:func:`study_config_from_dict`) validated whole into a :class:`~serobust.config.study_config.StudyConfig`."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Any

from ..errors import SerobustError
from .coerce import read_section
from .rules import MAX_CONFIG_BYTES, ConfigError, bounded_text
from .study_config import SECTIONS, STAGE_SECTIONS, StudyConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["load_study_config", "study_config_from_dict", "tomllib"]


def _eps_labels(raw: Any) -> dict[str, str]:
    """Every ``"k/n"`` string of the file, keyed by the repr of its value, so reports write budgets as given."""
    out: dict[str, str] = {}
    if isinstance(raw, dict):
        for v in raw.values():
            out.update(_eps_labels(v))
    elif isinstance(raw, list):
        for v in raw:
            out.update(_eps_labels(v))
    elif isinstance(raw, str) and re.fullmatch(r"\s*\d+\s*/\s*\d+\s*", raw):
        num, den = (int(x) for x in raw.split("/"))
        if den:
            out[repr(num / den)] = f"{num}/{den}"
    return out


def study_config_from_dict(raw: dict[str, Any], *, source: str = "", base_dir: Path | None = None) -> StudyConfig:
    """Validate a parsed TOML document; ``base_dir`` resolves a relative ``data.path``.

    Raises:
        ConfigError: the first invalid key, named.
        DeviceError: ``study.device = "cuda"`` on a machine without a GPU.
    """
    from ..runtime import resolve_device

    if not isinstance(raw, dict):
        raise ConfigError(f"a study config is a table of sections, got {type(raw).__name__}")
    from ..study import stages  # noqa: F401 - the stages declare their own sections when imported

    unknown = set(raw) - set(SECTIONS) - set(STAGE_SECTIONS)
    if unknown:
        raise ConfigError(
            f"unknown section(s) {', '.join(sorted(unknown))}; allowed sections: "
            f"{', '.join([*SECTIONS, *STAGE_SECTIONS])}"
        )
    if "study" not in raw or not isinstance(raw["study"], dict) or "name" not in raw["study"]:
        raise ConfigError("study.name is required ([study] name = \"...\")")
    bounded_text(raw, "")
    sections = {name: read_section(cls, raw[name], name) for name, cls in SECTIONS.items() if name in raw}
    if "data" in sections and sections["data"].path and base_dir is not None:
        sections["data"] = dataclasses.replace(sections["data"], path=_resolve(sections["data"].path, base_dir))
    if "model" in sections and sections["model"].pairs:
        sections = _pairs_study(raw, sections, base_dir)
    elif "data" in sections and sections["data"].name == "imagenet":
        raise ConfigError("data.name = 'imagenet' evaluates published or saved models: give them as [[model.pairs]] "
                          "(see serobust.hub); trained twins need a training split (data.name = 'imagefolder')")
    declared = {name: read_section(cls, raw[name], name) for name, cls in STAGE_SECTIONS.items() if name in raw}
    cfg = StudyConfig(**sections, source=source, eps_labels=_eps_labels(raw), sections=declared)
    if cfg.attacks.main == "autoattack" and not cfg.autoattack.enabled:
        raise ConfigError("attacks.main = 'autoattack' needs [autoattack] enabled = true (its budgets and subset)")
    try:
        resolve_device(cfg.study.device)
    except SerobustError as e:
        raise ConfigError(f"study.device = {cfg.study.device!r}: {e}") from None
    return cfg


def _resolve(path: str, base_dir: Path | None) -> str:
    """A path from the config file: ``~`` expanded, a relative one read against the file's folder."""
    p = Path(path).expanduser()
    return str(p if p.is_absolute() or base_dir is None else (base_dir / p).resolve())


def _pairs_study(raw: dict[str, Any], sections: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """A study of given pairs: no training, the pair index is the replicate; member files read relative to
    the config file."""
    model = raw["model"]
    for key in ("arch", "reductions", "min_hidden"):
        if key in model:
            raise ConfigError(f"model.{key} describes twins trained here; with model.pairs the members are given: "
                              f"remove model.{key}")
    if "train" in raw:
        raise ConfigError("[train]: the members of model.pairs are loaded, not trained; remove the [train] section")
    if "seeds" in raw["study"]:
        raise ConfigError("study.seeds: with model.pairs the pairs are the replicates (seed i = pair i); remove "
                          "study.seeds and list one pair per replicate")
    def member(value: Any) -> Any:
        table = {"source": value} if isinstance(value, str) else dict(value) if isinstance(value, dict) else value
        if not isinstance(table, dict):
            return value
        src = table.get("source")
        if isinstance(src, str) and src.startswith("torchscript:"):
            table["source"] = "torchscript:" + _resolve(src.split(":", 1)[1], base_dir)
        if isinstance(table.get("weights"), str) and table["weights"]:
            table["weights"] = _resolve(table["weights"], base_dir)
        return table

    pairs = tuple({**t, **{k: member(t[k]) for k in ("baseline", "se") if k in t}} if isinstance(t, dict) else t
                  for t in sections["model"].pairs)
    weights_dir = _resolve(sections["model"].weights_dir, base_dir) if sections["model"].weights_dir else ""
    sections["model"] = dataclasses.replace(sections["model"], pairs=pairs, weights_dir=weights_dir)
    study = sections["study"]
    sections["study"] = dataclasses.replace(study, seeds=tuple(range(len(pairs))))
    names = [pair.name for pair in sections["model"].pair_specs()]
    for i, ref in enumerate(sections["report"].references if "report" in sections else ()):
        if "pair" in ref and ref["pair"] not in names:
            raise ConfigError(f"report.references[{i}].pair = {ref['pair']!r}: allowed the model.pairs names {names}")
    return sections


def load_study_config(path: str | Path) -> StudyConfig:
    """Read and validate a study TOML file.

    Raises:
        ConfigError: missing or unreadable file, invalid TOML or UTF-8, unknown keys, wrong types or
            out-of-range values (named in the message); ``where`` is the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study config {path} not found; the bundled ones live in experiments/", where=str(path))
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"is {size / 1e6:.1f} MB; a study config is a few KB (at most "
                              f"{MAX_CONFIG_BYTES // 1024} KB): shorten its text fields", where=str(path))
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text[1:] if text.startswith("\ufeff") else text)  # a UTF-8 BOM (Windows editors)
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte {e.start}): save the file as UTF-8", where=str(path)) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}", where=str(path)) from None
    except OSError as e:
        raise ConfigError(f"cannot be read: {e.strerror}", where=str(path)) from None
    try:
        return study_config_from_dict(raw, source=str(path), base_dir=path.parent.resolve())
    except ConfigError as e:
        raise ConfigError(str(e), where=str(path)) from None
