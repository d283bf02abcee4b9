"""The report's glossary: every quantity and label a reader meets, defined where it is first used.

Each part of the page (the answer, the headline table, each figure, each table) names the terms it uses;
:func:`place_terms` gives each term to the FIRST part that uses it, and the page prints those definitions
right there (and all of them, linked, in the glossary section at the end). Definitions follow
``docs/DESIGN.md`` (u, z, s, relative change, damping ratio) and the statistics in :mod:`serobust.stats`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Term", "TERMS", "place_terms"]


@dataclass(frozen=True)
class Term:
    """One glossary entry: ``key`` (the page anchor ``term-<key>``), the name shown, its definition."""

    key: str
    name: str
    text: str


def _terms(*entries: tuple[str, str, str]) -> dict[str, Term]:
    return {key: Term(key, name, text) for key, name, text in entries}


#: Every term the page can use, in reading order.
TERMS: Mapping[str, Term] = _terms(
    ("seed", "seed / pair",
     "One seed trains one baseline and its SE twin from the same initial shared weights on the same batches. "
     "Seeds are the unit of replication: every interval is across seeds."),
    ("pp", "pp (percentage points)",
     "Difference of two accuracies in percent: 72% vs 70% is +2 pp."),
    ("interval", "interval (CI)",
     "Confidence interval of a mean across seeds: Student's t interval with fewer than 20 seeds, bootstrap "
     "from 20 on (serobust.stats.mean_ci); the figures draw the same intervals, n is stated in each caption."),
    ("supported", "supported",
     "The criterion's interval lies wholly on the hypothesis's side of its threshold (and, for robustness, "
     "the estimate exceeds the smallest effect worth reporting)."),
    ("not_supported", "not supported",
     "The interval rules out an effect of practical size in the hypothesis's direction, without lying wholly "
     "on the other side."),
    ("opposite", "opposite",
     "The interval lies wholly on the WRONG side: the SE twin is less robust than its baseline, or the gate "
     "amplifies (damping ratio above 1). The data contradict the hypothesis."),
    ("inconclusive", "inconclusive",
     "The interval contains the threshold: these seeds cannot tell. More seeds or more test images narrow it."),
    ("informative", "informative budget",
     "A budget at which the BASELINE's robust accuracy is neither at the floor (about 0%) nor at its clean "
     "accuracy: only there can the twins differ. Chosen on the baseline alone, so the choice cannot favour "
     "the SE twin; the others are dropped from the robustness criterion and named with the reason."),
    ("eps", "eps (budget)",
     "Largest allowed perturbation per pixel (Linf) in [0, 1] pixel units; written k/255 where the config "
     "wrote it so (8/255 = 0.0314). An L2 attack's eps is a radius."),
    ("clean_acc", "clean accuracy", "Accuracy on the unperturbed test images that are attacked."),
    ("robust_acc", "robust accuracy",
     "Accuracy on the attacked images: an image counts if the attack at that budget did not change the "
     "prediction away from the label. The worst case counts an image only if every attack failed."),
    ("diff", "paired difference",
     "SE twin minus baseline within each seed, then averaged over seeds (and over the tested budgets for the "
     "verdict): positive = the SE twin keeps more accuracy."),
    ("params", "params", "Number of trainable parameters of the model."),
    ("u", "u", "The feature map entering an SE gate (a block's residual branch output before the addition)."),
    ("z", "z (squeeze)", "The channel means of u over height and width: the block's global state."),
    ("s", "s (excitation)",
     "The gate's output per channel, s = sigmoid(W2 relu(W1 z)), in (0, 1); the block outputs s * u."),
    ("g", "s*u (gated output)", "The feature map after the gate rescales each channel of u by its s."),
    ("rel_change", "relative change",
     "For a quantity q and a perturbation x -> x': |q(x') - q(x)| / |q(x)|, per image, with |.| the L2 norm "
     "over channels (z, s) or over channels x height x width (u, s*u); then averaged over images."),
    ("damping", "damping ratio",
     "Relative change of s*u over relative change of u, per block. Below 1 the gate damps the perturbation, "
     "above 1 it amplifies it, 1 is neutral."),
    ("z_over_u", "z/u",
     "Relative change of z over relative change of u. Below 1 the global state moves less than the features: "
     "the premise of the conjecture."),
    ("absorb", "absorb ratio",
     "The gated change splits exactly into two parts, s'u' - su = s * (u' - u) + (s' - s) * u': what a frozen gate "
     "would pass, and what the excitation's own change adds. The absorb ratio is |s'u' - su| / |s * (u' - u)| per "
     "image (L2 over channels x height x width): exactly 1 for a frozen gate, below 1 only when the excitation's "
     "change opposes the feature change (the gate absorbs the perturbation), above 1 when it amplifies it. "
     "gate_passed_rel and gate_added_rel are the two parts' sizes relative to |s*u|, gate_added_cos the cosine "
     "between them. Unlike the damping ratio, it does not move away from 1 just because s is uneven across "
     "channels."),
    ("noise_relative", "relative to noise",
     "A quantity under the attack divided by the same quantity under Gaussian noise whose L2 norm, image by image "
     "and after clipping to [0, 1], equals the attack's; on the same seed, budget and block. At 1 the attack does "
     "what chance of its size does. (Sign noise at the attack's Linf budget is not L2-matched: on digits its "
     "zero background clips it to about three quarters of its L2 size.)"),
    ("kinds", "adversarial / sign noise / Gaussian noise",
     "The perturbation kinds of the excitation probe: the attack itself, and two random controls of the same "
     "size (uniform random signs times eps; Gaussian noise scaled to each attack perturbation's L2 norm)."),
    ("beyond_noise", "beyond noise",
     "The adversarial damping ratio minus the sign-noise one on the same (budget, block) cells: below 0 the "
     "gate damps the attack more than it damps random noise of the same size."),
    ("masking", "gradient masking",
     "A defence that only breaks the attack's gradients looks robust without being so (Carlini et al. 2019). "
     "The checks: accuracy falls with eps and reaches about 0 at a large eps, more steps or restarts never "
     "help the model, black-box and transfer attacks never beat white-box ones. A gain that fails them "
     "does not count."),
    ("abs_change", "|change of s| per channel", "Mean over images of |s(x_adv) - s(x)| for one channel."),
    ("sensitivity", "feature sensitivity",
     "Relative change of a block's whole output under each model's own attack, at matched blocks of the "
     "baseline and the SE twin: where in depth the perturbation grows."),
    ("interventions", "excitation swap / frozen gate",
     "Excitation swap: on the adversarial image, each gate's s is replaced by the s of the clean image (all "
     "blocks, or one block at a time). Frozen gate: s fixed at its mean over clean images. If accuracy "
     "recovers, the attack works through the excitations."),
    ("adaptive", "adaptive attacks",
     "Attacks aware of the mechanism: excitation-PGD also pushes every s away from its clean value; "
     "frozen-gate PGD computes its gradients with every gate frozen at the clean image's s (a BPDA-like "
     "attack) and scores the real model. Either beating plain PGD would show the gate hides robustness."),
    ("mcnemar", "McNemar b01 / b10",
     "Per-image comparison of the two models on the same images in one seed: b01 = images the baseline gets "
     "wrong and the SE twin right, b10 = the reverse, n11 / n00 = both right / both wrong. Only b01 and b10 "
     "carry information; fisher_p combines the per-seed p-values (does ANY seed's pair differ?)."),
    ("transfer", "transfer",
     "Adversarial images made on one twin and scored on the other; transfer beating the target's own "
     "white-box attack is a sign of gradient masking."),
    ("profiles", "class profiles",
     "Mean excitation vector per class on clean images; share_closer_to_fooled is the share of fooled images "
     "whose excitations moved closer to the fooled class's profile."),
    ("detection", "AUROC / TPR at 5% FPR",
     "How well a score separates attacked from clean images: area under the ROC curve (0.5 = chance, 1 = "
     "perfect) and the share of attacked images caught when 5% of clean images are flagged."),
    ("run_time", "run time", "Wall-clock time of the whole study run that wrote this report."),
)


def place_terms(parts: Sequence[tuple[str, Iterable[str]]]) -> dict[str, list[Term]]:
    """Part id -> the terms first used there, for parts listed in page order as ``(id, term keys)``.

    Raises:
        KeyError: a part names a term the glossary lacks (a typo in the page's own code).
    """
    seen: set[str] = set()
    out: dict[str, list[Term]] = {}
    for part, keys in parts:
        fresh = []
        for key in keys:
            if key not in TERMS:
                raise KeyError(f"no glossary term {key!r}; add it to serobust.report.glossary.TERMS")
            if key not in seen:
                seen.add(key)
                fresh.append(TERMS[key])
        out[part] = fresh
    return out
