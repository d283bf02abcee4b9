"""Names the stages of a study exchange: members, perturbation kinds, table names.

Every module that writes or reads these strings imports them from here, so a table written by one
stage is found by the next without string conventions spread over the code.
"""

from __future__ import annotations

import re

__all__ = [
    "BASELINE",
    "SE_MEMBER",
    "twin_name",
    "is_twin",
    "twin_reduction",
    "ADVERSARIAL",
    "SIGN_NOISE",
    "GAUSSIAN",
    "CONTROLS",
    "KINDS",
    "WORST_CASE",
]

#: The pair member without SE modules.
BASELINE = "baseline"

#: The SE member of a given (published or user-trained) pair: it shares a recipe with the baseline, not weights.
SE_MEMBER = "se"

_TWIN = re.compile(r"se_r(?P<r>[0-9.e+-]+)")


def twin_name(reduction: float) -> str:
    """The member name of the SE twin with reduction ratio ``reduction`` (``se_r4``, ``se_r16``)."""
    return f"se_r{float(reduction):g}"


def is_twin(member: str) -> bool:
    """Whether ``member`` names an SE twin (as :func:`twin_name` writes it)."""
    return _TWIN.fullmatch(str(member)) is not None


def twin_reduction(member: str) -> float:
    """The reduction ratio of an SE twin's member name; ``ValueError`` for anything else."""
    match = _TWIN.fullmatch(str(member))
    if match is None:
        raise ValueError(f"{member!r} is not an SE twin name (expected se_r<ratio>, e.g. se_r16)")
    return float(match["r"])


#: ``kind`` of an excitation-shift row: the attack, or a random control of the same size.
ADVERSARIAL = "adversarial"
SIGN_NOISE = "sign_noise"
GAUSSIAN = "gaussian"
CONTROLS = (SIGN_NOISE, GAUSSIAN)
KINDS = (ADVERSARIAL, *CONTROLS)

#: The ``attack`` value of evaluate()'s per-eps row that combines every attack (worst case per example).
WORST_CASE = "worst_case"
