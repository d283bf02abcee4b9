"""The config sections of what a study is and where it runs: ``[study]``, ``[data]``, ``[model]``,
``[execution]`` (frozen dataclasses that validate themselves; the model and data registries say what is
allowed)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from dataclasses import dataclass

from .rules import MAX_SEED, MAX_SEEDS, ConfigError, positive

__all__ = ["StudySection", "DataSection", "ModelSection", "ExecutionSection"]


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
        from ..data import DATASETS

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
        from ..hub.parse import parse_pair
        from ..hub.specs import MemberError

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
        from ..models import ARCHITECTURES, se_hidden_width

        if self.pairs:
            self.pair_specs()

        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"model.arch = {self.arch!r}: allowed {', '.join(ARCHITECTURES)}")
        if not self.reductions or len(set(self.reductions)) != len(self.reductions):
            raise ConfigError(f"model.reductions = {list(self.reductions)}: give one or more distinct ratios")
        from ..names import twin_name

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
        positive("execution", jobs_per_gpu=self.jobs_per_gpu, threads=self.threads)
        if self.address and self.executor != "ray":
            raise ConfigError("execution.address is for executor = 'ray'; remove it or set executor = 'ray'")
