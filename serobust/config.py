"""Study configurations: TOML files loaded into frozen dataclasses, validated whole at load.

A study file has one table per section (``[study]``, ``[data]``, ``[model]``, ``[train]``, ``[attacks]``,
``[diagnostics]``, ``[probe]``, ``[mechanism]``, ``[stats]``, ``[report]``, ``[autoattack]``, ``[detect]``,
``[execution]``); every key is
optional except ``study.name``. ``experiments/mnist.toml`` documents every key.

Everything a run will need is checked here, through the same registries the run uses (attack names and
options through :func:`serobust.attack`, architectures and SE reductions through the model registry,
dataset names through :data:`serobust.DATASETS`, the device through :func:`serobust.runtime.resolve_device`),
so ``serobust check`` and ``serobust run`` can never disagree about a config. A few rules cover every key
of their kind: every number must be finite, every budget list non-empty and free of duplicates (``0.1`` and
``"1/10"`` are the same budget), every attack table a registered attack with valid options. Violations raise
:class:`ConfigError` naming the key (``section.key``) and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import math
import re
import sys
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from .eps import parse_eps
from .errors import SerobustError
from .names import CONTROLS
from .training.config import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["ConfigError", "StudyConfig", "load_study_config", "study_config_from_dict"]


class ConfigError(SerobustError, ValueError):
    """A study configuration is invalid; the message names the key and what is allowed."""


# ---------------------------------------------------------------------------------------------- shared rules

MAX_CONFIG_BYTES = 1 << 20  # a config file's size
MAX_TEXT = 10_000  # characters of any string value (description, paths, sources): it is copied into reports
MAX_SEEDS = 1000
MAX_BUDGETS = 100  # budgets in one list
MAX_SEED = 2**31 - 1


def _bounded_text(raw: Any, key: str) -> None:
    """Every string of the parsed file at most :data:`MAX_TEXT` characters (a description is copied into
    every report and every results.json)."""
    if isinstance(raw, dict):
        for k, v in raw.items():
            _bounded_text(v, f"{key}.{k}" if key else str(k))
    elif isinstance(raw, list):
        for i, v in enumerate(raw):
            _bounded_text(v, f"{key}[{i}]")
    elif isinstance(raw, str) and len(raw) > MAX_TEXT:
        raise ConfigError(f"{key} is {len(raw)} characters long; at most {MAX_TEXT} allowed (it is copied into "
                          "every report): shorten it or link to a longer text")

def _budgets(values: Sequence[Any], key: str, *, upper: float | None = 1.0) -> tuple[float, ...]:
    """A non-empty list of distinct budgets in [0, 1] pixel units (``"8/255"`` strings allowed), at most
    :data:`MAX_BUDGETS` of them."""
    if len(values) > MAX_BUDGETS:
        raise ConfigError(f"{key} has {len(values)} budgets; at most {MAX_BUDGETS} allowed (a curve needs a dozen, "
                          "each budget multiplies the attacks' cost)")
    try:
        out = tuple(parse_eps(v, name=f"{key}[{i}]", upper=upper) for i, v in enumerate(values))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if not out:
        raise ConfigError(f"{key} is empty: give at least one budget")
    seen: dict[float, int] = {}
    for i, e in enumerate(out):
        if e in seen:
            raise ConfigError(f"{key}[{i}] = {values[i]!r} repeats {key}[{seen[e]}] = {values[seen[e]]!r} "
                              f"(both are {e:g}): give each budget once")
        seen[e] = i
    return out


def _attack_spec(table: Any, key: str):
    """The AttackSpec of a config attack table, validated by the attack registry the run uses."""
    from .attacks import attack

    if not isinstance(table, dict) or not isinstance(table.get("name"), str):
        raise ConfigError(f"{key} must be a table with a 'name' key, e.g. {{ name = \"pgd\", steps = 10 }}; got {table!r}")
    options = {k: v for k, v in table.items() if k != "name"}
    try:
        return attack(table["name"], **options)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{key} ({table['name']}): {e}") from None


def _positive(section: str, **values: float) -> None:
    for name, v in values.items():
        if not v >= 1:
            raise ConfigError(f"{section}.{name} = {v!r}: must be >= 1")


# ---------------------------------------------------------------------------------------------- sections

@dataclass(frozen=True)
class StudySection:
    name: str  # folder name under reports/ (letters, digits, '-', '_', '.'; not starting with '.')
    seeds: tuple[int, ...] = (0, 1, 2)  # one baseline/SE pair per seed; seeds are the unit of replication
    device: str = "auto"  # "auto" (CUDA when available), "cpu" or "cuda"
    description: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", self.name) or len(self.name) > 100:
            raise ConfigError(f"study.name = {self.name!r}: use letters, digits, '-', '_' or '.' (not first), "
                              "at most 100; it names the folder reports/<name>/")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or any(s < 0 for s in self.seeds):
            raise ConfigError(f"study.seeds = {list(self.seeds)}: give at least one seed >= 0, without repeats")
        if len(self.seeds) > MAX_SEEDS or max(self.seeds) > MAX_SEED:
            raise ConfigError(f"study.seeds: {len(self.seeds)} seeds up to {max(self.seeds)}; allowed at most "
                              f"{MAX_SEEDS} seeds, each in [0, {MAX_SEED}] (e.g. seeds = [0, 1, 2])")
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
        from .data import DATASETS

        if self.name not in DATASETS:
            raise ConfigError(f"data.name = {self.name!r}: allowed {', '.join(DATASETS)}")
        if self.train_size < 0 or self.eval_size < 0:
            raise ConfigError("data.train_size and data.eval_size must be >= 0 (0 = whole split)")
        if self.name == "imagefolder" and not self.path:
            raise ConfigError("data.path is required when data.name = 'imagefolder' (a split/class/image tree)")
        if self.name == "imagenet" and not self.path:
            raise ConfigError("data.path is required when data.name = 'imagenet' (the validation folder: class "
                              "folders, or the flat images with the devkit labels)")
        if self.path and self.name not in ("imagefolder", "imagenet"):
            raise ConfigError(f"data.path is only read for data.name = 'imagefolder' or 'imagenet', not {self.name!r}: "
                              "remove it")


_PAIR_SPECS: dict[str, tuple] = {}  # model.pairs (as JSON) -> its validated PairSpecs


@dataclass(frozen=True)
class ModelSection:
    arch: str = "cnn"  # a name in serobust.ARCHITECTURES
    reductions: tuple[float, ...] = (16.0,)  # one SE twin per reduction ratio r, all against the same baseline
    min_hidden: int = 8  # floor of the SE bottleneck width
    # published or user-trained pairs instead of training (serobust.hub): [[model.pairs]] name, baseline, se;
    # each member "timm:<name>", "torchvision:<name>", "pytorchcv:<name>", "robustbench:<ds>/<threat>/<name>",
    # "torchscript:<file>", or a table { source, weights = "<state dict file>", mean, std, input_size, crop_pct,
    # interpolation }. The pairs are the replicates (study.seeds is then the pair index); nothing is trained.
    pairs: tuple[dict, ...] = ()
    weights_dir: str = ""  # offline pretrained weights: <weights_dir>/<library>/...; "" = each library's cache
    download: bool = True  # let a library download pretrained weights that are not on disk

    def pair_specs(self) -> tuple:
        """The pairs as :class:`serobust.hub.PairSpec` (validated; names default to ``pair0``, ``pair1``...)."""
        from .hub import MemberError, parse_pair

        memo = json.dumps(self.pairs, sort_keys=True, default=str)
        if memo in _PAIR_SPECS:
            return _PAIR_SPECS[memo]
        out = []
        for i, table in enumerate(self.pairs):
            try:
                pair = parse_pair(table, f"model.pairs[{i}]")
            except MemberError as e:
                raise ConfigError(str(e)) from None
            out.append(dataclasses.replace(pair, name=pair.name or f"pair{i}"))
        names = [p.name for p in out]
        for i, n in enumerate(names):
            if names.index(n) != i:
                raise ConfigError(f"model.pairs[{i}].name = {n!r} repeats model.pairs[{names.index(n)}]: name each pair once")
        _PAIR_SPECS[memo] = tuple(out)
        return _PAIR_SPECS[memo]

    def __post_init__(self) -> None:
        from .models import ARCHITECTURES, se_hidden_width

        if self.pairs:
            self.pair_specs()

        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"model.arch = {self.arch!r}: allowed {', '.join(ARCHITECTURES)}")
        if not self.reductions or len(set(self.reductions)) != len(self.reductions):
            raise ConfigError(f"model.reductions = {list(self.reductions)}: give one or more distinct ratios")
        from .names import twin_name

        names = [twin_name(r) for r in self.reductions]
        for i, name in enumerate(names):
            if names.index(name) != i:
                j = names.index(name)
                raise ConfigError(f"model.reductions[{i}] = {self.reductions[i]!r} and model.reductions[{j}] = "
                                  f"{self.reductions[j]!r} both name the twin {name!r}: give ratios that differ "
                                  "visibly (e.g. 4 and 8)")
        for i, r in enumerate(self.reductions):
            try:  # the function every SE gate sizes itself with
                se_hidden_width(64, r, self.min_hidden)
            except ValueError as e:
                raise ConfigError(f"model.reductions[{i}] = {r!r}: {e}") from None
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
        object.__setattr__(self, "eps", _budgets(self.eps, "attacks.eps"))
        if self.black_box or self.transfer:
            object.__setattr__(self, "black_box_eps", _budgets(self.black_box_eps, "attacks.black_box_eps"))
        if not self.white_box:
            raise ConfigError("attacks.white_box is empty: give at least the main attack, e.g. [{ name = \"pgd\" }]")
        for key in ("white_box", "black_box"):
            specs = [_attack_spec(t, f"attacks.{key}[{i}]") for i, t in enumerate(getattr(self, key))]
            labels = [s.label for s in specs]
            for i, label in enumerate(labels):
                if labels.index(label) != i:
                    raise ConfigError(f"attacks.{key}[{i}] repeats attacks.{key}[{labels.index(label)}] ({label})")
        names = [a["name"] for a in self.white_box]
        if self.main not in names and self.main != "autoattack":
            raise ConfigError(f"attacks.main = {self.main!r} must be one of the white_box attacks {names} "
                              "or 'autoattack' (with [autoattack] enabled = true)")
        if names.count(self.main) > 1:
            raise ConfigError(f"attacks.main = {self.main!r} names {names.count(self.main)} white_box attacks; "
                              "keep one attack of that name")
        _positive("attacks", black_box_size=self.black_box_size, batch_size=self.batch_size)


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
    extra_attacks: tuple[dict, ...] = ()  # more attacks (any registered) that must not beat PGD of their norm
    l2_eps: tuple[float, ...] = ()  # L2 radii for L2 extra attacks (compared with pgd_l2 there)

    def __post_init__(self) -> None:
        specs = [_attack_spec(t, f"diagnostics.extra_attacks[{i}]") for i, t in enumerate(self.extra_attacks)]
        if any(s.norm == "L2" for s in specs):
            object.__setattr__(self, "l2_eps", _budgets(self.l2_eps, "diagnostics.l2_eps", upper=None))
        elif self.l2_eps:
            raise ConfigError("diagnostics.l2_eps is only used by L2 extra_attacks: remove it or add one")
        eps = _budgets(self.eps, "diagnostics.eps")
        if not any(e > 0 for e in eps):
            raise ConfigError("diagnostics.eps needs at least one budget > 0")
        object.__setattr__(self, "eps", eps)
        (large,) = _budgets([self.large_eps], "diagnostics.large_eps")
        object.__setattr__(self, "large_eps", large)
        if not self.steps or not self.restarts:
            raise ConfigError("diagnostics.steps and diagnostics.restarts need at least one value each")
        if any(s < 1 for s in self.steps) or any(r < 1 for r in self.restarts):
            raise ConfigError("diagnostics.steps and diagnostics.restarts must be >= 1")
        _positive("diagnostics", size=self.size, square_queries=self.square_queries)
        if self.seeds < 0:
            raise ConfigError("diagnostics.seeds must be >= 0 (0 = every seed)")


@dataclass(frozen=True)
class ProbeSection:
    enabled: bool = True
    size: int = 300  # examples probed
    eps: tuple[float, ...] = (0.1, 0.2, 0.3)
    attack: str = "pgd"  # a registered attack; its options come from attacks.white_box when listed there
    controls: tuple[str, ...] = ("sign_noise", "gaussian")  # random perturbations of the same size
    per_channel: bool = True  # block x channel table (heatmap)

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", _budgets(self.eps, "probe.eps"))
        _attack_spec({"name": self.attack}, "probe.attack")
        if not self.controls:
            raise ConfigError(f"probe.controls is empty: the shift under attack is read against random noise; "
                              f"give one or more of {list(CONTROLS)}")
        bad = [c for c in self.controls if c not in CONTROLS]
        if bad or len(set(self.controls)) != len(self.controls):
            raise ConfigError(f"probe.controls = {list(self.controls)}: allowed {list(CONTROLS)}, each once")
        _positive("probe", size=self.size)


@dataclass(frozen=True)
class MechanismSection:
    enabled: bool = True
    size: int = 300
    eps: float = 0.2  # budget for interventions and adaptive attacks
    steps: int = 20  # PGD steps of the adaptive attacks
    weight: float = 1.0  # weight of the excitation-shift term of excitation_pgd

    def __post_init__(self) -> None:
        (eps,) = _budgets([self.eps], "mechanism.eps")
        if eps == 0:
            raise ConfigError("mechanism.eps must be > 0: interventions compare clean and adversarial inputs")
        object.__setattr__(self, "eps", eps)
        _positive("mechanism", size=self.size, steps=self.steps)
        if self.weight < 0:
            raise ConfigError(f"mechanism.weight = {self.weight}: must be >= 0")


@dataclass(frozen=True)
class StatsSection:
    confidence: float = 0.95
    n_resamples: int = 10_000
    min_effect: float = 0.01  # margin of practical size (fraction): support needs the interval above it
    mechanism_margin: float = 0.05  # margin of the mechanism ratios: support needs the interval below 0.95
    alpha: float = 0.05
    floor: float = 0.02  # a budget where the pair's mean robust accuracy is <= floor says nothing: not tested
    ceiling_gap: float = 0.02  # nor one where it is within ceiling_gap of the pair's mean clean accuracy

    def __post_init__(self) -> None:
        if not 0.5 < self.confidence < 1:
            raise ConfigError(f"stats.confidence = {self.confidence}: must be in (0.5, 1), e.g. 0.95")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"stats.alpha = {self.alpha}: must be in (0, 1)")
        if self.n_resamples < 100:
            raise ConfigError(f"stats.n_resamples = {self.n_resamples}: must be >= 100 (10000 recommended)")
        for key in ("min_effect", "mechanism_margin", "floor", "ceiling_gap"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"stats.{key} = {getattr(self, key)}: a fraction of accuracy in [0, 1), e.g. 0.02")


_REFERENCE_KEYS = {"member": str, "attack": str, "eps": (int, float, str), "robust_acc": (int, float),
                   "clean_acc": (int, float), "source": str, "protocol": str,
                   "pair": str}  # pair: a model.pairs name


@dataclass(frozen=True)
class ReportSection:
    examples: int = 8  # clean/adversarial image pairs shown
    example_eps: float | str = "auto"  # "auto": the tested budget where the members differ most
    # published numbers shown beside the measurement: { member, attack, eps, robust_acc, clean_acc?, source,
    # protocol? (how the reference was trained, where it differs from this config) }
    references: tuple[dict, ...] = ()

    def __post_init__(self) -> None:
        if self.example_eps != "auto":
            if isinstance(self.example_eps, str):
                raise ConfigError(f"report.example_eps = {self.example_eps!r}: give a budget or 'auto'")
            (eps,) = _budgets([self.example_eps], "report.example_eps")
            object.__setattr__(self, "example_eps", eps)
        _positive("report", examples=self.examples)
        for i, ref in enumerate(self.references):
            key = f"report.references[{i}]"
            if not isinstance(ref, dict) or not {"member", "attack", "eps", "robust_acc", "source"} <= set(ref):
                raise ConfigError(f"{key} must be a table with member, attack, eps, robust_acc and source")
            for k, v in ref.items():
                if k not in _REFERENCE_KEYS or not isinstance(v, _REFERENCE_KEYS[k]) or isinstance(v, bool):
                    raise ConfigError(f"{key}.{k} = {v!r}: allowed keys {sorted(_REFERENCE_KEYS)} (accuracies as "
                                      "fractions in [0, 1])")
            if not all(0 <= ref[k] <= 1 for k in ("robust_acc", "clean_acc") if k in ref):
                raise ConfigError(f"{key}: accuracies are fractions in [0, 1]")
            _budgets([ref["eps"]], f"{key}.eps")
            _attack_spec({"name": ref["attack"]}, f"{key}.attack")


@dataclass(frozen=True)
class AutoAttackSection:
    """AutoAttack (Croce & Hein 2020) with its published budgets on a subset: for adversarially trained studies.

    Runs per member and seed on the first ``size`` examples of the eval set, at ``eps`` (clean accuracy at
    eps 0 is added); its per-component robust accuracy goes to the report. Set ``attacks.main =
    "autoattack"`` to make the verdict test it (PGD stays the cheap curve over every budget).
    """

    enabled: bool = False
    eps: tuple[float, ...] = (0.1,)
    size: int = 100
    version: str = "standard"  # "standard" (the published evaluation) or "fast" (a screen, not a claim)

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", _budgets(self.eps, "autoattack.eps"))
        _attack_spec({"name": "autoattack", "version": self.version}, "autoattack.version")
        _positive("autoattack", size=self.size)


@dataclass(frozen=True)
class DetectSection:
    """The excitation detector (serobust.detect) against its pooled-feature control and an adaptive attack."""

    enabled: bool = True
    size: int = 200  # eval examples scored (clean negatives, perturbed positives)
    fit_size: int = 2000  # training images the class-conditional statistics are fitted on
    eps: float = 0.1  # the budget of FGSM, PGD, the noise control and the adaptive attack
    adaptive_steps: int = 50  # from the clean image (no random start)
    adaptive_weights: tuple[float, ...] = (0.0, 1.0, 10.0)  # detector-loss weights; per image the strongest
    margin: float = 0.05  # AUROC the excitation detector must gain over the control to count
    level: float = 0.7  # AUROC it must keep under the adaptive attack to count

    def __post_init__(self) -> None:
        (eps,) = _budgets([self.eps], "detect.eps")
        if eps == 0:
            raise ConfigError("detect.eps must be > 0")
        object.__setattr__(self, "eps", eps)
        _positive("detect", size=self.size, fit_size=self.fit_size, adaptive_steps=self.adaptive_steps)
        weights = tuple(self.adaptive_weights)
        if not weights or any(isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < float("inf")
                              for w in weights):
            raise ConfigError(f"detect.adaptive_weights = {list(weights)}: give one or more finite weights >= 0 "
                              "(e.g. [0, 1, 10])")
        object.__setattr__(self, "adaptive_weights", tuple(float(w) for w in weights))
        if not (0 <= self.margin < 1 and 0.5 <= self.level <= 1):
            raise ConfigError(f"detect.margin = {self.margin} must be in [0, 1) and detect.level = {self.level} "
                              "in [0.5, 1]")


@dataclass(frozen=True)
class ExecutionSection:
    """How the study's tasks run; never what they compute, except the CPU thread count (see ``threads``)."""

    executor: str = "local"  # "local" (this machine) or "ray" (a local Ray or an existing cluster)
    jobs: int = 1  # tasks at once; 1 = in this process; 0 = one per CPU core / threads, jobs_per_gpu per GPU
    jobs_per_gpu: int = 4  # on CUDA, tasks sharing one GPU (small models leave a GPU mostly idle)
    threads: int = 1  # CPU intra-op threads per task: fixed per study because CPU results depend on it
    address: str = ""  # ray: "" starts a local Ray for the run; "auto" or "ray://host:10001" joins a cluster
    # CUDA only: deterministic kernels (torch.use_deterministic_algorithms(warn_only=True), cuBLAS workspace):
    # repeatable on one machine, slower; recorded in the run metadata. CPU runs are bit-identical anyway.
    deterministic: bool = False

    def __post_init__(self) -> None:
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"execution.executor = {self.executor!r}: allowed 'local', 'ray'")
        if self.executor == "ray" and importlib.util.find_spec("ray") is None:
            raise ConfigError("execution.executor = 'ray' needs Ray installed: pip install 'serobust[ray]'")
        if self.jobs < 0:
            raise ConfigError(f"execution.jobs = {self.jobs}: give 1 or more tasks at once, or 0 for one per core "
                              "or GPU slot")
        _positive("execution", jobs_per_gpu=self.jobs_per_gpu, threads=self.threads)
        if self.address and self.executor != "ray":
            raise ConfigError("execution.address is for executor = 'ray'; remove it or set executor = 'ray'")


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
    autoattack: AutoAttackSection = field(default_factory=AutoAttackSection)
    detect: DetectSection = field(default_factory=DetectSection)
    execution: ExecutionSection = field(default_factory=ExecutionSection)
    source: str = ""  # the file it came from (not part of the hash)
    eps_labels: dict = field(default_factory=dict, compare=False)  # budget -> how the file wrote it ("8/255")
    sections: dict = field(default_factory=dict)  # name -> the given sections of stages that declare one

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source", None)
        d.pop("eps_labels", None)
        if not d["sections"]:
            d.pop("sections")
        else:
            d.update(d.pop("sections"))
        return d

    def section(self, name: str) -> Any:
        """The section a stage declared (:data:`STAGE_SECTIONS`) as given, or its defaults when absent."""
        if name in self.sections:
            return self.sections[name]
        if name not in STAGE_SECTIONS:
            raise KeyError(f"no stage declares a config section [{name}]; declared: {', '.join(STAGE_SECTIONS)}")
        return STAGE_SECTIONS[name]()


#: config sections declared by study stages (``Stage.section``, serobust/study/stages): name -> frozen dataclass
STAGE_SECTIONS: dict[str, type] = {}


def register_section(name: str, cls: type) -> None:
    """Declare the config section ``[name]`` (a frozen dataclass of its keys and defaults) for a stage."""
    if name in _SECTIONS or STAGE_SECTIONS.get(name, cls) is not cls:
        raise ValueError(f"config section [{name}] is already declared")
    STAGE_SECTIONS[name] = cls


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
    "autoattack": AutoAttackSection,
    "detect": DetectSection,
    "execution": ExecutionSection,
}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (the small subset the sections use)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        for arg in args:
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
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
        return _number(value, key)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} = {value!r}: expected a string")
        return value
    if tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} = {value!r}: expected a table")
        return dict(value)
    raise ConfigError(f"{key}: unsupported type {tp}")  # a serobust bug


def _number(value: Any, key: str) -> float:
    """A finite number; strings such as ``"8/255"`` or ``"0.1"`` are read as numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{key} = {value!r}: expected a number")
    try:
        out = float(Fraction(value.strip())) if isinstance(value, str) and "/" in value else float(value)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{key} = {value!r}: expected a number (fractions like '8/255' allowed)") from None
    if not math.isfinite(out):
        raise ConfigError(f"{key} = {value!r}: expected a finite number")
    return out


def _section(cls: type, raw: Any, section: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{section}] must be a table, got {raw!r}")
    if section == "train" and "seed" in raw:
        raise ConfigError("train.seed is not read: each seed of study.seeds trains its own pair (its tasks set "
                          "the training seed); remove train.seed and list the seeds in [study] seeds = [0, 1, 2]")
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
    from .runtime import resolve_device

    if not isinstance(raw, dict):
        raise ConfigError(f"a study config is a table of sections, got {type(raw).__name__}")
    from .study import stages  # noqa: F401 - the stages declare their own sections when imported

    unknown = set(raw) - set(_SECTIONS) - set(STAGE_SECTIONS)
    if unknown:
        raise ConfigError(
            f"unknown section(s) {', '.join(sorted(unknown))}; allowed sections: "
            f"{', '.join([*_SECTIONS, *STAGE_SECTIONS])}"
        )
    if "study" not in raw or not isinstance(raw["study"], dict) or "name" not in raw["study"]:
        raise ConfigError("study.name is required ([study] name = \"...\")")
    _bounded_text(raw, "")
    sections = {name: _section(cls, raw[name], name) for name, cls in _SECTIONS.items() if name in raw}
    if "data" in sections and sections["data"].path and base_dir is not None:
        p = Path(sections["data"].path).expanduser()
        if not p.is_absolute():
            p = (base_dir / p).resolve()
        sections["data"] = dataclasses.replace(sections["data"], path=str(p))
    if "model" in sections and sections["model"].pairs:
        sections = _pairs_study(raw, sections, base_dir)
    elif "data" in sections and sections["data"].name == "imagenet":
        raise ConfigError("data.name = 'imagenet' evaluates published or saved models: give them as [[model.pairs]] "
                          "(see serobust.hub); trained twins need a training split (data.name = 'imagefolder')")
    declared = {name: _section(cls, raw[name], name) for name, cls in STAGE_SECTIONS.items() if name in raw}
    cfg = StudyConfig(**sections, source=source, eps_labels=_eps_labels(raw), sections=declared)
    if cfg.attacks.main == "autoattack" and not cfg.autoattack.enabled:
        raise ConfigError("attacks.main = 'autoattack' needs [autoattack] enabled = true (its budgets and subset)")
    try:
        resolve_device(cfg.study.device)
    except SerobustError as e:
        raise ConfigError(f"study.device = {cfg.study.device!r}: {e}") from None
    return cfg


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
    def resolve(path: str) -> str:
        p = Path(path).expanduser()
        return str(p if p.is_absolute() or base_dir is None else (base_dir / p).resolve())

    def member(value: Any) -> Any:
        table = {"source": value} if isinstance(value, str) else dict(value) if isinstance(value, dict) else value
        if not isinstance(table, dict):
            return value
        src = table.get("source")
        if isinstance(src, str) and src.startswith("torchscript:"):
            table["source"] = "torchscript:" + resolve(src.split(":", 1)[1])
        if isinstance(table.get("weights"), str) and table["weights"]:
            table["weights"] = resolve(table["weights"])
        return table

    pairs = tuple({**t, **{k: member(t[k]) for k in ("baseline", "se") if k in t}} if isinstance(t, dict) else t
                  for t in sections["model"].pairs)
    weights_dir = resolve(sections["model"].weights_dir) if sections["model"].weights_dir else ""
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
