"""The verdict on the detection idea: beyond the baseline control, and surviving the adaptive attack."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .features import DETECTOR_FEATURES
from .study import ADAPTIVE

__all__ = ["DetectionVerdict", "detection_verdict"]


@dataclass(frozen=True)
class DetectionVerdict:
    """Whether the excitation detector supports the conjecture, with the numbers behind it.

    Attributes:
        supported: at every eps, the excitation detector's AUROC against ``attack`` beats the pooled
            control's by more than ``margin`` AND its AUROC against the adaptive attack is at least
            ``level``.
        table: one row per eps: ``auroc_excitation``, ``auroc_pooled``, ``auroc_difference``,
            ``auroc_adaptive``, ``adaptive_success`` (the adaptive attack's success rate on the SE
            twin), ``beyond_control``, ``survives_adaptive``, ``supported``.
        attack, margin, level: the criterion's settings.
    """

    supported: bool
    table: pd.DataFrame
    attack: str
    margin: float
    level: float

    def __str__(self) -> str:
        verdict = "supported" if self.supported else "not supported"
        return (f"excitation detection {verdict}: AUROC(excitation) - AUROC(pooled) > {self.margin:g} against "
                f"{self.attack} and adaptive AUROC >= {self.level:g} at every eps")


def detection_verdict(frame: pd.DataFrame, *, attack: str = "pgd", margin: float = 0.05,
                      level: float = 0.7) -> DetectionVerdict:
    """Read :func:`detection_analysis`: does the excitation signal the attack beyond the baseline
    control, and does it survive the adaptive attack?

    Two conditions per eps, both required at every eps: ``AUROC(excitation) - AUROC(pooled) > margin``
    against ``attack`` (SE's excitations carry what the baseline's own pooled features do not), and
    the excitation detector's AUROC against the adaptive attack ``>= level`` (Carlini & Wagner 2017:
    a detector that an attacker who knows it evades is no defence). A NaN AUROC (no positives) fails
    its condition: absence of evidence is not support. Defaults: ``margin = 0.05`` (five AUROC points:
    larger than the sampling spread of an AUROC on a few hundred images), ``level = 0.7`` (well above
    chance, 0.5, yet below what an undefended detector reaches against plain PGD).

    Raises:
        ValueError: ``frame`` lacks the rows for ``attack`` or ``adaptive`` of either detector.
    """
    needed = {(f, p) for f in DETECTOR_FEATURES for p in (attack, ADAPTIVE)}
    present = set(zip(frame["features"], frame["perturbation"]))
    if not needed <= present:
        raise ValueError(f"frame lacks rows {sorted(needed - present)}; pass detection_analysis(...)'s frame, "
                         f"and an attack it ran (perturbations present: {sorted(set(frame['perturbation']))})")
    wide = frame.pivot_table(index="eps", columns=["features", "perturbation"], values=["auroc", "attack_success"],
                             dropna=False)
    table = pd.DataFrame({
        "auroc_excitation": wide[("auroc", "excitation", attack)],
        "auroc_pooled": wide[("auroc", "pooled", attack)],
        "auroc_adaptive": wide[("auroc", "excitation", ADAPTIVE)],
        "adaptive_success": wide[("attack_success", "excitation", ADAPTIVE)],
    })
    table["auroc_difference"] = table["auroc_excitation"] - table["auroc_pooled"]
    table["beyond_control"] = table["auroc_difference"] > margin  # NaN compares False
    table["survives_adaptive"] = table["auroc_adaptive"] >= level
    table["supported"] = table["beyond_control"] & table["survives_adaptive"]
    table = table.reset_index()
    return DetectionVerdict(supported=bool(table["supported"].all()), table=table, attack=attack,
                            margin=margin, level=level)
