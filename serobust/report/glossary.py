"""The report's glossary: every quantity and label a reader meets, defined where it is first used.

Each part of the page (the answer, the headline table, each figure, each table) names the terms it uses;
:func:`place_terms` gives each term to the FIRST part that uses it, and the page prints those definitions
right there (and all of them, linked, in the glossary section at the end). The definitions of u, z, s,
relative change and damping ratio are the ones H1 is stated in (DESIGN.md, "What is tested"); the
statistics follow :mod:`serobust.stats`.
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
     "Seeds are one unit of replication (training randomness); the test images are the other (the robustness "
     "interval covers both)."),
    ("pp", "pp (percentage points)",
     "Difference of two accuracies in percent: 72% vs 70% is +2 pp."),
    ("interval", "interval (CI)",
     "The robustness effect's interval covers both sources of variation, training seeds and test images "
     "(Bouthillier et al. 2021): seeds and images are crossed (every seed is scored on the same images), so "
     "the mean per-image difference has the variance of a two-way random-effects model, seed part + image "
     "part + residual, estimated from per-image correctness (serobust.stats.intervals.crossed_mean_ci) with a t "
     "quantile on Welch-Satterthwaite degrees of freedom. The seed part is the paired t variance across "
     "seeds, never below what the finite image sample alone implies, and Agresti & Min's pseudo-counts keep "
     "a width even without a single discordant image: seeds that happen to agree never give a zero-width "
     "interval. An analytic interval rather than a bootstrap, because with 3 to 5 seeds a percentile "
     "bootstrap over seeds is far too narrow (Agarwal et al. 2021 recommend stratified bootstrap intervals "
     "only with more runs; rliable); its error rate is checked by simulation in "
     "benchmarks/verdict_calibration.py (Dror et al. 2018 on significance testing in practice). Without "
     "per-image results, and for the mechanism ratios (per-seed values), it is Student's t interval across "
     "seeds. Figures draw t intervals across seeds, n stated in each caption."),
    ("supported", "supported",
     "The criterion's interval lies wholly beyond its margin of practical size on the hypothesis's side: "
     "robustness above +min_effect (1 point), a mechanism ratio below 1 - margin (0.95)."),
    ("not_supported", "not supported",
     "The interval rules out an effect of practical size in the hypothesis's direction (it lies wholly "
     "below +min_effect, or above 1 - margin for a ratio), without lying wholly beyond the margin on the "
     "other side. Overall, H1 is not supported only when such a criterion survives Holm's correction."),
    ("opposite", "opposite",
     "The interval lies wholly beyond the margin on the WRONG side (symmetric with supported): the SE twin "
     "is less robust by more than min_effect, or a ratio is above 1 + margin. A smaller loss is never "
     "opposite."),
    ("inconclusive", "inconclusive",
     "The interval reaches into the practical-effect region but does not lie wholly in it: these seeds and "
     "images cannot tell. The stated minimum detectable effect says what they could have seen."),
    ("holm", "Holm correction / overall outcome",
     "H1 is a conjunction: it is supported only when every counted criterion is (an intersection-union "
     "test, level alpha without correction; Holm across twins when a study has several). 'Not supported' "
     "or 'opposite' rests on ANY one criterion, so those claims need a criterion refuted after Holm's "
     "step-down correction across every counted criterion of every twin (p_holm). The gradient-masking "
     "guard and the detector are not counted: the guard voids claims, the detector is reported beside H1."),
    ("mde", "minimum detectable effect (power)",
     "The smallest true robustness gain the study would call supported with 80% probability: min_effect + "
     "(t_{1-alpha/2} + t_{0.8}) x standard error, from the measured seed and image variance. An "
     "'inconclusive' or 'not supported' verdict says nothing about gains smaller than this. With 3 seeds it is "
     "optimistic (the seed variance is measured on 2 degrees of freedom): in simulation a true gain of the "
     "stated size is called supported in about half of 3-seed studies, not 80% (benchmarks/verdict_calibration.py)."),
    ("informative", "informative budget",
     "A budget at which the PAIR's mean robust accuracy (the average of the two twins) is neither at the "
     "floor (about 0%) nor within 2 points of the pair's clean accuracy: only there can the twins differ. "
     "The mean cannot favour either twin (with no effect, the sum and the difference of two equally "
     "variable accuracies are uncorrelated), and a budget where only the SE twin keeps accuracy is tested. "
     "Per-budget labels are descriptive: the verdict tests the average over the informative budgets."),
    ("eps", "eps (budget)",
     "Largest allowed perturbation per pixel (Linf) in [0, 1] pixel units; written k/255 where the config "
     "wrote it so (8/255 = 0.0314). An L2 attack's eps is a radius."),
    ("clean_acc", "clean accuracy", "Accuracy on the unperturbed test images that are attacked."),
    ("robust_acc", "robust accuracy",
     "Accuracy on the attacked images: an image counts if the attack at that budget did not change the "
     "prediction away from the label. The worst case counts an image only if every attack failed."),
    ("diff", "paired difference",
     "SE twin minus baseline on the same images within each seed, then averaged over images and seeds (and "
     "over the tested budgets for the verdict): positive = the SE twin keeps more accuracy."),
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
    ("beyond_noise", "beyond noise (attack / Gaussian)",
     "A mechanism quantity under the attack divided by the same quantity under Gaussian noise of the same "
     "L2 size, on the same (seed, budget, block) cells (geometric mean within seed). z is a spatial average, "
     "so random perturbations cancel in it and z/u < 1 for almost any perturbation; the damping ratio "
     "differs from 1 even for a frozen gate when s is uneven. Only the ratio to the L2-matched noise "
     "isolates what is specific to the attack; below 1 - margin (0.95) counts as support. Sign noise is not "
     "used here: clipping at MNIST's zero background shrinks it to about three quarters of its L2 size (0.74 measured on mnist5k)."),
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
