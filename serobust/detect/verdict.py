"""The verdict on the detection idea: beyond the baseline control, and surviving the adaptive attack."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .features import DETECTOR_FEATURES
from .study import ADAPTIVE, TWIN_CONTROL

__all__ = ["DetectionVerdict", "detection_verdict", "detection_criterion"]


@dataclass(frozen=True)
class DetectionVerdict:
    """Whether the excitation detector supports the conjecture, with the numbers behind it.

    Attributes:
        supported: at every eps, the excitation detector's AUROC against ``attack`` beats the pooled
            control's by more than ``margin`` (the baseline's, and, when the frame has it, the SE twin's
            own pooled features on the same adversarial images) AND its AUROC against the adaptive
            attack is at least ``level``.
        table: one row per eps: ``auroc_excitation``, ``auroc_pooled``, ``auroc_difference``,
            ``auroc_adaptive``, ``adaptive_success`` (the adaptive attack's success rate on the SE
            twin), ``beyond_control``, ``survives_adaptive``, ``supported``; with the within-twin control
            also ``auroc_pooled_twin``, ``auroc_difference_twin`` (excitation minus it) and
            ``beyond_twin_control``.
        attack, margin, level: the criterion's settings.
        twin_control: whether the within-twin control was in the frame (and so in ``supported``).
    """

    supported: bool
    table: pd.DataFrame
    attack: str
    margin: float
    level: float
    twin_control: bool = False

    def __str__(self) -> str:
        verdict = "supported" if self.supported else "not supported"
        controls = "AUROC(pooled)" + (" and AUROC(pooled_twin)" if self.twin_control else "")
        return (f"excitation detection {verdict}: AUROC(excitation) - {controls} > {self.margin:g} against "
                f"{self.attack} and adaptive AUROC >= {self.level:g} at every eps")


def detection_verdict(frame: pd.DataFrame, *, attack: str = "pgd", margin: float = 0.05,
                      level: float = 0.7) -> DetectionVerdict:
    """Read :func:`detection_analysis`: does the excitation signal the attack beyond the baseline
    control, and does it survive the adaptive attack?

    Two conditions per eps, both required at every eps: ``AUROC(excitation) - AUROC(pooled) > margin``
    against ``attack`` (SE's excitations carry what the baseline's own pooled features do not; when the
    frame has the ``pooled_twin`` rows, also against the SE twin's own pooled features on the same
    adversarial images: the excitations carry what the features they summarise do not), and
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
    twin = (TWIN_CONTROL, attack) in present
    if twin:
        table["auroc_pooled_twin"] = wide[("auroc", TWIN_CONTROL, attack)]
        table["auroc_difference_twin"] = table["auroc_excitation"] - table["auroc_pooled_twin"]
        table["beyond_twin_control"] = table["auroc_difference_twin"] > margin
        table["supported"] &= table["beyond_twin_control"]
    table = table.reset_index()
    return DetectionVerdict(supported=bool(table["supported"].all()), table=table, attack=attack,
                            margin=margin, level=level, twin_control=twin)


def detection_criterion(frame: pd.DataFrame, *, attack: str = "pgd", margin: float = 0.05, level: float = 0.7,
                        confidence: float = 0.95, n_resamples: int = 10_000):
    """The detector's criterion across seeds, for the verdict's declared criterion list (``counts=False``).

    "The excitation signals the attack beyond the baseline control, and survives the adaptive attack".
    Per seed (the unit of replication, as everywhere in the verdict): the AUROC difference excitation minus
    pooled control against ``attack``, and the excitation detector's AUROC under the adaptive attack, each
    averaged over eps; with the within-twin control in the frame (``pooled_twin``) also the difference
    excitation minus the twin's own pooled features on the same images. Each is judged by
    :func:`serobust.stats.decisions.judge` on its t interval: the differences must lie above ``margin``, the adaptive
    AUROC above ``level``. Outcome: "supported" when all are, "opposite" when the excitation detector is
    worse than a control (a difference interval below 0), "not supported" when any part is not supported
    or opposite, else "inconclusive".

    The detector is reported beside H1, not as part of it: H1 is the conjecture that SE gates damp
    adversarial sensitivity; the detector is a use of the excitations, so it joins the verdict's criterion
    list with ``counts=False`` (outside the conjunction and the Holm family) and the summary says so.

    Args:
        frame: :func:`detection_analysis` frames of several seeds, with a ``seed`` column.

    Returns:
        A :class:`serobust.stats.criterion.Criterion` (``id`` ``excitation_detector``, ``role`` ``detector``), with
        the adaptive part in ``extra``: ``adaptive_auroc``, ``adaptive_ci_low``, ``adaptive_ci_high``, and the
        within-twin control's difference in ``twin_control_effect``, ``twin_control_ci_low``,
        ``twin_control_ci_high`` (NaN without it).
    """
    from ..stats.criterion import Criterion
    from ..stats.decisions import claim_p_values, judge
    from ..stats.intervals import mean_ci

    if "seed" not in frame.columns:
        frame = frame.assign(seed=0)
    cells = frame.groupby(["seed", "features", "perturbation"])["auroc"].mean()  # over eps within seed
    def cell(features: str, perturbation: str) -> pd.Series:
        return cells.xs((features, perturbation), level=("features", "perturbation"))

    try:
        diff = (cell("excitation", attack) - cell("pooled", attack)).dropna()
        adaptive = cell("excitation", ADAPTIVE).dropna()
    except KeyError:
        diff = adaptive = pd.Series(dtype=float)
    try:
        twin_diff = (cell("excitation", attack) - cell(TWIN_CONTROL, attack)).dropna()
    except KeyError:
        twin_diff = pd.Series(dtype=float)
    statement = (f"The excitation detector flags {attack} examples better than the same detector on pooled block "
                 f"features (the baseline's, and the SE twin's own on the same images; AUROC difference > {margin:g}) "
                 f"and keeps AUROC >= {level:g} under an adaptive attack that also lowers its score.")
    if diff.empty or adaptive.empty:
        return Criterion("excitation_detector", "detector", statement, counts=False,
                         detail="no detection results with finite AUROCs (no successful adversarial examples?)")
    d = mean_ci(diff.to_numpy(), confidence=confidence, n_resamples=n_resamples)
    a = mean_ci(adaptive.to_numpy(), confidence=confidence, n_resamples=n_resamples)
    beyond, why_beyond = judge(d["mean"], d["ci_low"], d["ci_high"], expect="above", threshold=margin)
    survives, why_survives = judge(a["mean"], a["ci_low"], a["ci_high"], expect="above", threshold=level)
    parts, differences = [beyond, survives], [d]
    twin = {"twin_control_effect": float("nan"), "twin_control_ci_low": float("nan"),
            "twin_control_ci_high": float("nan")}
    twin_text = ""
    if not twin_diff.empty:
        t = mean_ci(twin_diff.to_numpy(), confidence=confidence, n_resamples=n_resamples)
        beyond_twin, why_twin = judge(t["mean"], t["ci_low"], t["ci_high"], expect="above", threshold=margin)
        parts.append(beyond_twin)
        differences.append(t)
        twin = {"twin_control_effect": float(t["mean"]), "twin_control_ci_low": float(t["ci_low"]),
                "twin_control_ci_high": float(t["ci_high"])}
        twin_text = (f"; minus the SE twin's own pooled features on the same images: {t['mean']:+.3f} "
                     f"[{t['ci_low']:+.3f}, {t['ci_high']:+.3f}] ({why_twin})")
    if all(part == "supported" for part in parts):
        outcome = "supported"
    elif any(judge(x["mean"], x["ci_low"], x["ci_high"], expect="above", threshold=0.0)[0] == "opposite"
             for x in differences):
        outcome = "opposite"
    elif set(parts) & {"not supported", "opposite"}:
        outcome = "not supported"
    else:
        outcome = "inconclusive"
    detail = (f"AUROC excitation minus pooled control against {attack}: {d['mean']:+.3f} [{d['ci_low']:+.3f}, "
              f"{d['ci_high']:+.3f}] ({why_beyond}){twin_text}; excitation AUROC under the adaptive attack: "
              f"{a['mean']:.3f} [{a['ci_low']:.3f}, {a['ci_high']:.3f}] ({why_survives}); t intervals across "
              f"{d['n']} seeds.")
    se = d["sd"] / d["n"] ** 0.5 if d["n"] > 1 else float("nan")
    p = claim_p_values(d["mean"], se, d["n"] - 1, threshold=margin)
    return Criterion("excitation_detector", "detector", statement, outcome, d["mean"], d["ci_low"], d["ci_high"],
                     d["n"], detail, counts=False, p_supported=float(p["supported"]),
                     p_not_supported=float(p["not_supported"]), p_opposite=float(p["opposite"]),
                     extra={"adaptive_auroc": float(a["mean"]), "adaptive_ci_low": float(a["ci_low"]),
                            "adaptive_ci_high": float(a["ci_high"]), **twin})
