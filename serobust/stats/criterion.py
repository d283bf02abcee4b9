"""One declared criterion of a verdict, typed: its estimate, interval, outcome, claim p values and text.

A :class:`Criterion` is what every criterion builder returns (robustness, the gradient-masking guard and
the mechanism criteria in :mod:`serobust.stats.criteria`, the excitation detector in
:mod:`serobust.detect.verdict`) and what a :class:`serobust.stats.verdict.Verdict` is made of; it turns into
a dict only at the JSON boundary (:meth:`Criterion.to_dict`, what results.json holds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from .decisions import OUTCOMES

__all__ = ["Criterion", "format_interval"]

_NAN = math.nan


def format_interval(effect: float, low: float, high: float) -> str:
    """``0.123 [0.0456, 0.2]``: an estimate and its interval as the criteria's texts write them."""
    return f"{effect:.3g} [{low:.3g}, {high:.3g}]"


@dataclass
class Criterion:
    """One declared criterion of the verdict, with its estimate, interval, outcome and claim p values.

    ``counts``: part of H1's conjunction (and of the Holm family); False for the guard and the detector.
    ``p_supported``, ``p_not_supported``, ``p_opposite``: p values of the three claims of
    :func:`serobust.stats.decisions.decide` (``p < alpha`` exactly when the interval makes that claim);
    ``p_holm``: the Holm-adjusted p of its "not supported" claim across the study's counted criteria
    (set by :func:`serobust.stats.verdict.decide_overall`). ``extra``: criterion-specific fields (robustness: ``per_eps``,
    ``budgets_tested``, ``budgets_dropped``, ``power``, ``method``).
    """

    id: str
    role: str
    statement: str
    outcome: str = "inconclusive"
    effect: float = _NAN
    ci_low: float = _NAN
    ci_high: float = _NAN
    n_seeds: int = 0
    detail: str = ""
    counts: bool = True
    p_supported: float = 1.0
    p_not_supported: float = 1.0
    p_opposite: float = 1.0
    p_holm: float = _NAN
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise InputError(f"criterion {self.id!r}: outcome must be one of {list(OUTCOMES)}, got {self.outcome!r}")
        for key in ("effect", "ci_low", "ci_high", "p_supported", "p_not_supported", "p_opposite", "p_holm"):
            setattr(self, key, float(getattr(self, key)))
        self.n_seeds = int(self.n_seeds)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (results.json): the fields, then ``extra``'s keys at the top level."""
        out = {k: getattr(self, k) for k in ("id", "role", "statement", "outcome", "effect", "ci_low", "ci_high",
                                             "n_seeds", "detail", "counts", "p_supported", "p_not_supported",
                                             "p_opposite", "p_holm")}
        return {**out, **self.extra}
