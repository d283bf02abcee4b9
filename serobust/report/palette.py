"""One colour per pair member and one line style per perturbation kind, for every figure of a report.

A reader who learns in the first figure that the SE twin is vermillion must find it vermillion in the
last one, whatever the figure's own subset of members. So colours are keyed by member NAME, assigned once
per report (:func:`member_palette` over the study's members) and passed to every figure; seaborn's
per-figure hue order never decides a colour. Perturbation kinds (the attack and its random controls of
the same size) are told apart by line style, marker and hatch, never by colour, so a kind cannot be
mistaken for a member. Colours are the Okabe-Ito set (distinguishable with the common colour-vision
deficiencies), baseline in blue, SE twins in order of their reduction ratio.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..names import ADVERSARIAL, BASELINE, GAUSSIAN, SIGN_NOISE, is_twin, twin_reduction

__all__ = ["BASELINE_COLOR", "TWIN_COLORS", "member_palette", "KindStyle", "KIND_STYLES", "kind_style",
           "NEUTRAL", "color_name"]

#: The baseline's colour in every figure (Okabe-Ito blue).
BASELINE_COLOR = "#0072B2"
#: SE twins' colours, by ascending reduction ratio (Okabe-Ito vermillion, bluish green, reddish purple, ...).
TWIN_COLORS = ("#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#8C564B", "#7F7F7F", "#BCBD22")
#: Lines that belong to no member (zero lines, neutral references).
NEUTRAL = "#222222"


_COLOR_NAMES = {BASELINE_COLOR: "blue", "#D55E00": "vermillion", "#009E73": "green", "#CC79A7": "pink",
                "#E69F00": "orange", "#56B4E9": "sky blue", "#8C564B": "brown", "#7F7F7F": "grey",
                "#BCBD22": "olive", NEUTRAL: "black"}


def color_name(color: str) -> str:
    """A word for a palette colour, for alt text and captions (``#D55E00`` -> ``vermillion``)."""
    return _COLOR_NAMES.get(str(color).upper(), str(color))


def member_palette(members: Iterable[str]) -> dict[str, str]:
    """Member name -> colour: the baseline blue, SE twins by ascending r, any other name after them.

    Args:
        members: every member of the study (``results["meta"]["members"]``); order does not matter.

    Returns:
        A dict that every figure of one report shares. Beyond eight non-baseline members colours repeat.
    """
    names = list(dict.fromkeys(str(m) for m in members))
    others = sorted((m for m in names if m != BASELINE),
                    key=lambda m: (not is_twin(m), twin_reduction(m) if is_twin(m) else 0.0, m))
    out = {BASELINE: BASELINE_COLOR} if BASELINE in names else {}
    for i, name in enumerate(others):
        out[name] = TWIN_COLORS[i % len(TWIN_COLORS)]
    return out


@dataclass(frozen=True)
class KindStyle:
    """How one perturbation kind is drawn: line style and marker for lines, hatch and alpha for bars."""

    linestyle: str
    marker: str
    hatch: str
    alpha: float


#: The attack solid with circles; sign noise dashed with squares; Gaussian noise dotted with triangles.
KIND_STYLES: Mapping[str, KindStyle] = {
    ADVERSARIAL: KindStyle(linestyle="-", marker="o", hatch="", alpha=1.0),
    SIGN_NOISE: KindStyle(linestyle="--", marker="s", hatch="//", alpha=0.55),
    GAUSSIAN: KindStyle(linestyle=":", marker="^", hatch="..", alpha=0.35),
}

_OTHER_KIND = KindStyle(linestyle="-.", marker="D", hatch="xx", alpha=0.45)


def kind_style(kind: str) -> KindStyle:
    """The style of a perturbation kind (an unknown kind gets a dash-dot style of its own)."""
    return KIND_STYLES.get(str(kind), _OTHER_KIND)
