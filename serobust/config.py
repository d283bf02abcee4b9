"""Study configurations: TOML files loaded into frozen dataclasses, validated once at load.

A study file has one table per section (``[study]``, ``[data]``, ``[model]``, ``[train]``, ``[attacks]``,
``[diagnostics]``, ``[probe]``, ``[mechanism]``, ``[stats]``, ``[report]``); every key is optional except
``study.name``. Unknown keys, wrong types and out-of-range values raise :class:`ConfigError` naming the
key (as ``section.key``) and what is allowed. ``experiments/mnist.toml`` documents every key.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .eps import parse_eps
from .trainer import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "ConfigError",
    "StudyConfig",
    "load_study_config",
    "study_config_from_dict",
    "config_hash",
]


class ConfigError(ValueError):
    """A study configuration is invalid; the message names the key and what is allowed."""


@dataclass(frozen=True)
class StudySection:
    name: str  # folder name under reports/ (letters, digits, '-', '_')
    seeds: tuple[int, ...] = (0, 1, 2)  # one baseline/SE pair per seed; seeds are the unit of replication
    device: str = "auto"  # "auto" (CUDA when available), "cpu" or "cuda"
    description: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise ConfigError(f"study.name = {self.name!r}: use letters, digits, '-', '_' or '.' only")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"study.seeds = {list(self.seeds)}: give at least one seed, without repeats")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"study.device = {self.device!r}: allowed 'auto', 'cpu', 'cuda'")


@dataclass(frozen=True)
class DataSection:
    name: str = "mnist5k"  # a serobust dataset name (see serobust.DATASETS), or "imagefolder"
    root: str = ""  # data root for torchvision sets; "" means $SEROBUST_DATA or ~/.cache/serobust/data
    path: str = ""  # the tree for name = "imagefolder" (split/class/image), relative to the config file
    download: bool = True  # allow torchvision to download missing files
    train_size: int = 0  # stratified training subset; 0 = the whole training split
    eval_size: int = 500  # stratified test subset that attacks and probes use; 0 = the whole test split

    def __post_init__(self) -> None:
        if self.train_size < 0 or self.eval_size < 0:
            raise ConfigError("data.train_size and data.eval_size must be >= 0 (0 = whole split)")
        if self.name == "imagefolder" and not self.path:
            raise ConfigError("data.path is required when data.name = 'imagefolder' (a split/class/image tree)")


@dataclass(frozen=True)
class ModelSection:
    arch: str = "cnn"  # a name in serobust.ARCHITECTURES
    reductions: tuple[float, ...] = (16.0,)  # one SE twin per reduction ratio r, all against the same baseline
    min_hidden: int = 8  # floor of the SE bottleneck width

    def __post_init__(self) -> None:
        from .models import ARCHITECTURES

        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"model.arch = {self.arch!r}: allowed {', '.join(ARCHITECTURES)}")
        if not self.reductions or any(not r > 0 for r in self.reductions) or len(set(self.reductions)) != len(
            self.reductions
        ):
            raise ConfigError(f"model.reductions = {list(self.reductions)}: give distinct positive ratios")
        if self.min_hidden < 1:
            raise ConfigError("model.min_hidden must be >= 1")


@dataclass(frozen=True)
class AttacksSection:
    eps: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)  # Linf budgets in [0, 1] pixel units
    white_box: tuple[dict, ...] = ({"name": "fgsm"}, {"name": "pgd", "steps": 10})  # run at every eps
    main: str = "pgd"  # the attack (by name) whose robust accuracy the verdict tests
    black_box: tuple[dict, ...] = ({"name": "square", "n_queries": 300},)  # gradient-free checks
    black_box_eps: tuple[float, ...] = (0.1, 0.2)  # budgets for the black-box checks
    black_box_size: int = 200  # examples for the black-box checks (a subset of the eval set)
    batch_size: int = 500
    transfer: bool = True  # baseline <-> SE transfer at black_box_eps

    def __post_init__(self) -> None:
        for key in ("eps", "black_box_eps"):
            vals = getattr(self, key)
            try:
                object.__setattr__(self, key, tuple(parse_eps(v, name=f"attacks.{key}[{i}]") for i, v in enumerate(vals)))
            except ValueError as e:
                raise ConfigError(str(e)) from None
        if not self.eps:
            raise ConfigError("attacks.eps is empty: give at least one budget")
        names = [a.get("name") for a in self.white_box]
        if self.main not in names:
            raise ConfigError(f"attacks.main = {self.main!r} must be one of the white_box attacks: {names}")
        for key in ("white_box", "black_box"):
            for i, spec in enumerate(getattr(self, key)):
                if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                    raise ConfigError(f"attacks.{key}[{i}] must be a table with a 'name' key, got {spec!r}")
        if self.black_box_size < 1 or self.batch_size < 1:
            raise ConfigError("attacks.black_box_size and attacks.batch_size must be >= 1")


@dataclass(frozen=True)
class DiagnosticsSection:
    enabled: bool = True
    seeds: int = 0  # check the models of the first N seeds; 0 = every seed
    size: int = 200  # examples used by the gradient-masking checks
    eps: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3)
    steps: tuple[int, ...] = (10, 50)  # PGD steps compared (more steps must never help the model)
    restarts: tuple[int, ...] = (1, 3)
    square_queries: int = 300
    large_eps: float = 0.6  # accuracy must be near 0 here

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "eps", tuple(parse_eps(v, name=f"diagnostics.eps[{i}]") for i, v in enumerate(self.eps)))
            parse_eps(self.large_eps, name="diagnostics.large_eps")
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.size < 1 or any(s < 1 for s in self.steps) or any(r < 1 for r in self.restarts):
            raise ConfigError("diagnostics.size, steps and restarts must be >= 1")
        if self.seeds < 0:
            raise ConfigError("diagnostics.seeds must be >= 0 (0 = every seed)")


@dataclass(frozen=True)
class ProbeSection:
    enabled: bool = True
    size: int = 300  # examples probed
    eps: tuple[float, ...] = (0.1, 0.2, 0.3)
    attack: str = "pgd"
    controls: tuple[str, ...] = ("sign_noise", "gaussian")  # random perturbations of the same size
    per_channel: bool = True  # block x channel table (heatmap)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "eps", tuple(parse_eps(v, name=f"probe.eps[{i}]") for i, v in enumerate(self.eps)))
        except ValueError as e:
            raise ConfigError(str(e)) from None
        allowed = {"sign_noise", "gaussian"}
        if not set(self.controls) <= allowed:
            raise ConfigError(f"probe.controls = {list(self.controls)}: allowed {sorted(allowed)}")
        if self.size < 1:
            raise ConfigError("probe.size must be >= 1")


@dataclass(frozen=True)
class MechanismSection:
    enabled: bool = True
    size: int = 300
    eps: float = 0.2  # budget for interventions and adaptive attacks
    steps: int = 20  # PGD steps of the adaptive attacks
    weight: float = 1.0  # weight of the excitation-shift term of excitation_pgd

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "eps", parse_eps(self.eps, name="mechanism.eps"))
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.size < 1 or self.steps < 1 or self.weight < 0:
            raise ConfigError("mechanism.size and steps must be >= 1 and weight >= 0")


@dataclass(frozen=True)
class StatsSection:
    confidence: float = 0.95
    n_resamples: int = 10_000
    min_effect: float = 0.01  # smallest robust-accuracy gain (fraction) that counts as support
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if not 0.5 < self.confidence < 1:
            raise ConfigError("stats.confidence must be in (0.5, 1)")
        if not 0 < self.alpha < 1 or self.n_resamples < 100 or self.min_effect < 0:
            raise ConfigError("stats.alpha must be in (0, 1), n_resamples >= 100, min_effect >= 0")


@dataclass(frozen=True)
class ReportSection:
    examples: int = 8  # clean/adversarial image pairs shown
    example_eps: float = 0.2

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "example_eps", parse_eps(self.example_eps, name="report.example_eps"))
        except ValueError as e:
            raise ConfigError(str(e)) from None


@dataclass(frozen=True)
class StudyConfig:
    """A whole study: what to train, attack, probe and report. Build with :func:`load_study_config`."""

    study: StudySection
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainConfig = field(default_factory=TrainConfig)
    attacks: AttacksSection = field(default_factory=AttacksSection)
    diagnostics: DiagnosticsSection = field(default_factory=DiagnosticsSection)
    probe: ProbeSection = field(default_factory=ProbeSection)
    mechanism: MechanismSection = field(default_factory=MechanismSection)
    stats: StatsSection = field(default_factory=StatsSection)
    report: ReportSection = field(default_factory=ReportSection)
    source: str = ""  # the file it came from (not part of the hash)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source", None)
        return d


_SECTIONS: dict[str, type] = {
    "study": StudySection,
    "data": DataSection,
    "model": ModelSection,
    "train": TrainConfig,
    "attacks": AttacksSection,
    "diagnostics": DiagnosticsSection,
    "probe": ProbeSection,
    "mechanism": MechanismSection,
    "stats": StatsSection,
    "report": ReportSection,
}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (the small subset the sections use)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        errors = []
        for arg in args:
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key} = {value!r}: expected {' or '.join(_type_name(a) for a in args)}")
    if origin is tuple:
        (inner, _ellipsis) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} = {value!r}: expected a list of {_type_name(inner)}")
        return tuple(_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} = {value!r}: expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} = {value!r}: expected an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{key} = {value!r}: expected a number")
        if isinstance(value, str):
            try:
                return parse_eps(value, name=key) if "/" in value else float(value)
            except ValueError:
                raise ConfigError(f"{key} = {value!r}: expected a number (fractions like '8/255' allowed)") from None
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} = {value!r}: expected a string")
        return value
    if tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} = {value!r}: expected a table")
        return dict(value)
    raise ConfigError(f"{key}: unsupported type {tp}")  # a serobust bug


def _section(cls: type, raw: Any, section: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{section}] must be a table, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        if key not in fields:
            close = difflib.get_close_matches(key, sorted(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown key {section}.{key}{hint}; allowed keys in [{section}]: {', '.join(sorted(fields))}")
        kwargs[key] = _coerce(value, hints[key], f"{section}.{key}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(f"[{section}] {e}") from None


def study_config_from_dict(raw: dict[str, Any], *, source: str = "", base_dir: Path | None = None) -> StudyConfig:
    """Validate a parsed TOML document; ``base_dir`` resolves a relative ``data.path``."""
    unknown = set(raw) - set(_SECTIONS)
    if unknown:
        raise ConfigError(
            f"unknown section(s) {', '.join(sorted(unknown))}; allowed sections: {', '.join(_SECTIONS)}"
        )
    if "study" not in raw or "name" not in raw.get("study", {}):
        raise ConfigError("study.name is required ([study] name = \"...\")")
    sections = {name: _section(cls, raw[name], name) for name, cls in _SECTIONS.items() if name in raw}
    if "data" in sections and sections["data"].path and base_dir is not None:
        p = Path(sections["data"].path).expanduser()
        if not p.is_absolute():
            p = (base_dir / p).resolve()
        sections["data"] = dataclasses.replace(sections["data"], path=str(p))
    cfg = StudyConfig(**sections, source=source)
    return cfg


def load_study_config(path: str | Path) -> StudyConfig:
    """Read and validate a study TOML file.

    Raises:
        FileNotFoundError: the file does not exist.
        ConfigError: invalid TOML, unknown keys, wrong types or out-of-range values (named in the message).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study config {path} not found; the bundled ones live in experiments/")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    try:
        return study_config_from_dict(raw, source=str(path), base_dir=path.parent.resolve())
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def config_hash(obj: Any, length: int = 12) -> str:
    """A short stable hash of a JSON-able object (dataclasses are converted), for cache keys."""
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
