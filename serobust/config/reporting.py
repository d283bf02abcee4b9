"""The config sections of how results are judged and shown: ``[stats]`` (confidence, margins, the budgets
that say nothing) and ``[report]`` (examples, published reference numbers)."""

from __future__ import annotations

from dataclasses import dataclass

from .rules import ConfigError, attack_spec, budgets, positive

__all__ = ["StatsSection", "ReportSection"]


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
            (eps,) = budgets([self.example_eps], "report.example_eps")
            object.__setattr__(self, "example_eps", eps)
        positive("report", examples=self.examples)
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
            budgets([ref["eps"]], f"{key}.eps")
            attack_spec({"name": ref["attack"]}, f"{key}.attack")
