"""Display text of the report: budgets as the config wrote them, attack and block names, numbers.

The tables keep machine names (``pgd(random_start=True, steps=10)``, ``features.0.se``, eps as a float);
a reader wants ``PGD-10``, ``features.0`` and ``8/255``. Every figure and table of the report formats
through these functions, so one budget or one attack reads the same everywhere on the page.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

from ..names import GAUSSIAN, SIGN_NOISE, WORST_CASE

__all__ = ["EpsLabeler", "attack_name", "block_label", "kind_label", "percent", "points", "number"]

_KIND_LABELS = {SIGN_NOISE: "sign noise", GAUSSIAN: "Gaussian noise"}


class EpsLabeler:
    """Writes a budget the way the study's config wrote it: ``8/255`` where given so, else ``%g``.

    Args:
        labels: ``results["meta"]["eps_labels"]``, ``{str(eps): "8/255" or "0.1"}``; ``None`` or ``{}``
            writes every budget with ``%g`` (the baseline results.json has no such map).

    Keys are matched by value (within 1e-9), not by their text, so ``0.031372549019607843`` finds the
    label written for ``8/255`` whichever float repr the JSON round trip produced.
    """

    def __init__(self, labels: Mapping[str, str] | None = None) -> None:
        self._known: list[tuple[float, str]] = []
        for key, text in (labels or {}).items():
            try:
                self._known.append((float(key), str(text)))
            except ValueError:
                continue  # a key that is not a number cannot name a budget: ignore it

    def __call__(self, eps: Any) -> str:
        value = float(eps)
        for known, text in self._known:
            if math.isclose(known, value, rel_tol=0.0, abs_tol=1e-9):
                return text
        return f"{value:g}"

    def many(self, values: Any) -> str:
        """A comma-separated list of budgets (``0.05, 0.1``)."""
        return ", ".join(self(v) for v in values)


def attack_name(label: Any) -> str:
    """``PGD-10`` for ``pgd(random_start=True, steps=10)``, ``FGSM``, ``Square (100 queries)``, ...

    The label is read back into its :class:`~serobust.attacks.base.AttackSpec` (options it leaves out take
    the registered defaults) and named by the attack's own ``display``. A label the registry does not know
    (another version's table, a notebook's attack), or whose options it rejects, is returned unchanged, so
    it still shows under its own label.
    """
    text = str(label)
    if text == WORST_CASE:
        return "worst case (every attack)"
    from ..attacks.base import AttackSpec  # the attacks bring torch: imported only to name one

    try:
        with warnings.catch_warnings():  # a wasteful combination was reported when the attack ran
            warnings.simplefilter("ignore")
            spec = AttackSpec.from_label(text)
    except (TypeError, ValueError):  # not a label, or options this version does not accept
        return text
    return text if spec is None else spec.display


def block_label(name: Any) -> str:
    """``features.0`` for the SE module ``features.0.se``: the block's place in the network."""
    text = str(name)
    for suffix in (".se", ".gate", ".excitation"):
        if text.endswith(suffix) and len(text) > len(suffix):
            return text[: -len(suffix)]
    return text


def kind_label(kind: Any, *, attack: str | None = None) -> str:
    """``adversarial (PGD-10)``, ``sign noise``, ``Gaussian noise``."""
    text = str(kind)
    if text in _KIND_LABELS:
        return _KIND_LABELS[text]
    return f"{text} ({attack})" if attack else text


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def percent(value: Any, *, digits: int = 1) -> str:
    """A fraction in [0, 1] as a percentage (``0.9783`` -> ``97.8%``); empty for missing values."""
    return f"{100 * float(value):.{digits}f}%" if _finite(value) else ""


def points(value: Any, *, digits: int = 1, unit: bool = True) -> str:
    """A difference of fractions in signed percentage points (``-0.0075`` -> ``-0.8 pp``)."""
    if not _finite(value):
        return ""
    text = f"{100 * float(value):+.{digits}f}".replace("-", "\u2212")
    return f"{text} pp" if unit else text


def number(value: Any, *, digits: int = 3) -> str:
    """A number with ``digits`` significant digits (``1.0294`` -> ``1.03``); empty for missing values."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{float(value):.{digits}g}" if _finite(value) else ""
