"""Calibration and power of the verdict's robustness criterion, by simulation (issue 16).

Simulates whole studies (seeds x test images x budgets of per-image correctness for a baseline and its SE
twin) and runs the SAME code the verdict runs on them: :func:`serobust.stats.robust_accuracy.robustness_test`
(informative budgets from the pair's mean accuracy, the crossed seeds-and-images interval of
:func:`serobust.stats.intervals.crossed_mean_ci`, the rule :func:`serobust.stats.decisions.decide`), vectorised over studies.
The verdict's interval is analytic (no bootstrap), so the simulation uses exactly the verdict's method.

The data model, per study: image difficulty ``theta_j ~ N(logit p, sd_image)`` shared by both twins and
every seed (the same test images), a per-seed random effect per twin ``a_i, b_i ~ N(0, sd_seed)`` on the
logit scale (seed-to-seed training variation, independent between the twins), optional twin-specific
image effects ``+-delta_j / 2`` (one twin better on some images, worse on others, zero on average over the
image population), and the twins' per-image outcomes correlated through a Gaussian copula with correlation
``rho`` (both fail on the same images). With no planted gain both twins have the same expected accuracy,
so any "supported" or "opposite" is a false claim; a planted gain shifts the SE twin's logit so that its
expected accuracy is that many points higher at every budget.

Run: ``python benchmarks/verdict_calibration.py [--studies 2000] [--seed 0]`` (about a minute on 1 core).

Measured (``--studies 2000 --seed 0``, 64 s on this project's shared 2-core machine):

No true effect: how often the robustness criterion claims one ("supported" or "opposite"), 2,000 studies per scenario, alpha = 0.05, min_effect = 1 point; Monte Carlo error = 2 binomial standard errors of a 5% rate (0.97 points):

| scenario | seeds | images | claims an effect | supported | opposite | within alpha + MC error |
|---|---|---|---|---|---|---|
| standard training, 200 images, 2 budgets | 3 | 200 | 2.5% | 1.3% | 1.1% | yes |
| standard training, 200 images, 2 budgets | 5 | 200 | 2.1% | 1.1% | 1.0% | yes |
| AutoAttack, 30 images at 95%, near-identical twins | 3 | 30 | 0.1% | 0.1% | 0.1% | yes |
| AutoAttack, 30 images at 95%, near-identical twins | 5 | 30 | 0.2% | 0.1% | 0.1% | yes |
| budget near the floor (3%), 200 images | 3 | 200 | 0.1% | 0.1% | 0.0% | yes |
| budget near the floor (3%), 200 images | 5 | 200 | 0.1% | 0.0% | 0.1% | yes |
| budget near the ceiling (95.5%, clean 97%) | 3 | 200 | 0.2% | 0.1% | 0.1% | yes |
| budget near the ceiling (95.5%, clean 97%) | 5 | 200 | 0.1% | 0.1% | 0.0% | yes |
| twin-specific image effects (delta 1.0) | 3 | 200 | 2.9% | 1.7% | 1.3% | yes |
| twin-specific image effects (delta 1.0) | 5 | 200 | 1.5% | 0.5% | 0.9% | yes |
| large seed effects (sd 0.4 logit) | 3 | 200 | 5.4% | 2.9% | 2.5% | yes |
| moderate seed effects (sd 0.08), uncorrelated | 3 | 200 | 1.4% | 0.7% | 0.8% | yes |
| independent twins, 1000 images | 3 | 1000 | 0.5% | 0.3% | 0.1% | yes |

Power: the share of studies called "supported" with a planted gain at every tested budget (Monte Carlo error up to 2.2 points), and the median minimum detectable effect the verdict states:

| scenario | seeds | images | +2 pp | +5 pp | +10 pp | stated MDE |
|---|---|---|---|---|---|---|
| standard training, 200 images | 3 | 200 | 6% | 24% | 57% | 10.8 pp |
| standard training, 200 images | 5 | 200 | 7% | 43% | 95% | 6.9 pp |
| standard training, 200 images | 10 | 200 | 11% | 80% | 100% | 4.8 pp |
| adversarial training, 200 images at 90% | 3 | 200 | 7% | 53% | 91% | 5.0 pp |
| adversarial training, 200 images at 90% | 5 | 200 | 9% | 83% | 99% | 4.6 pp |
| AutoAttack, 30 images at 85% | 3 | 30 | 2% | 8% | 38% | 14.9 pp |
| AutoAttack, 30 images at 85% | 5 | 30 | 2% | 13% | 66% | 11.3 pp |

The stated MDE comes from each study's measured standard error, and with few seeds the measured seed variance (2 degrees of freedom with 3 seeds) is more often below the true one than above, so the stated MDE is optimistic: in the table above, 3 seeds of standard training state a median MDE of 10.8 points, yet a true gain of +10 points is called supported in only 57% of studies; 5 seeds state 6.9 and detect +5 in 43%; adversarial training at 90% with 3 seeds states 5.0 and detects +5 in 53%. Read the stated MDE as a lower bound on what a 3-seed study can see.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, ndtr

from serobust.stats.robust_accuracy import robustness_test

ALPHA = 0.05
MIN_EFFECT = 0.01


@dataclass(frozen=True)
class Scenario:
    name: str
    seeds: int
    images: int
    acc: tuple[float, ...]  # expected robust accuracy per budget
    clean: float  # expected clean accuracy (for the ceiling rule)
    sd_image: float = 1.5  # spread of image difficulty (logit)
    sd_seed: float = 0.15  # per-seed random effect of each twin (logit)
    rho: float = 0.6  # correlation of the twins' per-image outcomes (latent)
    delta: float = 0.0  # sd of twin-specific image effects (logit)


NULL = [
    Scenario("standard training, 200 images, 2 budgets", 3, 200, (0.45, 0.15), 0.97),
    Scenario("standard training, 200 images, 2 budgets", 5, 200, (0.45, 0.15), 0.97),
    Scenario("AutoAttack, 30 images at 95%, near-identical twins", 3, 30, (0.95,), 0.98, 1.0, 0.05, 0.95),
    Scenario("AutoAttack, 30 images at 95%, near-identical twins", 5, 30, (0.95,), 0.98, 1.0, 0.05, 0.95),
    Scenario("budget near the floor (3%), 200 images", 3, 200, (0.03,), 0.97, 1.0, 0.2),
    Scenario("budget near the floor (3%), 200 images", 5, 200, (0.03,), 0.97, 1.0, 0.2),
    Scenario("budget near the ceiling (95.5%, clean 97%)", 3, 200, (0.955,), 0.97, 1.0, 0.2, 0.7),
    Scenario("budget near the ceiling (95.5%, clean 97%)", 5, 200, (0.955,), 0.97, 1.0, 0.2, 0.7),
    Scenario("twin-specific image effects (delta 1.0)", 3, 200, (0.45, 0.15), 0.97, 1.5, 0.15, 0.6, 1.0),
    Scenario("twin-specific image effects (delta 1.0)", 5, 200, (0.45, 0.15), 0.97, 1.5, 0.15, 0.6, 1.0),
    Scenario("large seed effects (sd 0.4 logit)", 3, 200, (0.45, 0.15), 0.97, 1.5, 0.4),
    Scenario("moderate seed effects (sd 0.08), uncorrelated", 3, 200, (0.3,), 0.97, 1.5, 0.08, 0.0),
    Scenario("independent twins, 1000 images", 3, 1000, (0.3,), 0.97, 1.5, 0.05, 0.0),
]

POWER = [
    Scenario("standard training, 200 images", 3, 200, (0.45, 0.15), 0.97),
    Scenario("standard training, 200 images", 5, 200, (0.45, 0.15), 0.97),
    Scenario("standard training, 200 images", 10, 200, (0.45, 0.15), 0.97),
    Scenario("adversarial training, 200 images at 90%", 3, 200, (0.90,), 0.98, 1.0, 0.1, 0.8),
    Scenario("adversarial training, 200 images at 90%", 5, 200, (0.90,), 0.98, 1.0, 0.1, 0.8),
    Scenario("AutoAttack, 30 images at 85%", 3, 30, (0.85,), 0.98, 1.0, 0.1, 0.8),
    Scenario("AutoAttack, 30 images at 85%", 5, 30, (0.85,), 0.98, 1.0, 0.1, 0.8),
]

GAINS = (0.02, 0.05, 0.10)


def _mean_acc(shift: float, mu: float, sc: Scenario, z: np.ndarray) -> float:
    """Population accuracy at logit location ``mu + shift`` (image and seed effects integrated out)."""
    sd = math.sqrt(sc.sd_image**2 + sc.sd_seed**2 + sc.delta**2 / 4)
    return float(expit(mu + shift + sd * z).mean())


def _location(target: float, sc: Scenario, z: np.ndarray, shift: float = 0.0) -> float:
    """The logit location whose population accuracy is ``target`` (bisection)."""
    lo, hi = -20.0, 20.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _mean_acc(shift, mid, sc, z) < target else (lo, mid)
    return (lo + hi) / 2


def simulate(
    sc: Scenario, studies: int, gain: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(outcome, mde)``, each ``(studies,)``: the criterion on simulated studies with a planted ``gain``."""
    z_ref = np.random.default_rng(12345).standard_normal(200_000)
    levels = (*sc.acc, sc.clean)
    mu = np.array([_location(a, sc, z_ref) for a in levels])  # (E + 1,) baseline locations
    mu_se = np.array([_location(min(a + gain, 0.999), sc, z_ref) if i < len(sc.acc) else mu[i]
                      for i, a in enumerate(levels)])  # the gain at every robust budget, not on clean images
    s, n, m = studies, sc.seeds, sc.images
    theta = sc.sd_image * rng.standard_normal((s, 1, m, 1))  # shared image difficulty
    delta = sc.delta * rng.standard_normal((s, 1, m, 1)) / 2  # twin-specific image effects
    a = sc.sd_seed * rng.standard_normal((s, n, 1, 1))
    b = sc.sd_seed * rng.standard_normal((s, n, 1, 1))
    w = rng.standard_normal((s, n, m, 1))  # shared latent: the twins fail together
    e_a, e_b = rng.standard_normal((2, s, n, m, 1))
    r = math.sqrt(1 - sc.rho**2)
    u_a, u_b = ndtr(sc.rho * w + r * e_a), ndtr(sc.rho * w + r * e_b)  # same latent for every budget
    base = u_a < expit(mu + theta - delta + a)  # (s, n, m, E + 1)
    se = u_b < expit(mu_se + theta + delta + b)
    clean = (base[..., -1].mean(axis=(1, 2)) + se[..., -1].mean(axis=(1, 2))) / 2
    res = robustness_test(base[..., :-1], se[..., :-1], pair_clean=clean, min_effect=MIN_EFFECT,
                          confidence=1 - ALPHA)
    return res["outcome"], res["mde"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    mc = 2 * math.sqrt(ALPHA * (1 - ALPHA) / args.studies)
    print(f"False claims with no true effect ({args.studies} studies each; alpha {ALPHA}, MC error {mc:.2%}):")
    print("| scenario | seeds | images | claims an effect | supported | opposite | within alpha + MC error |")
    print("|---|---|---|---|---|---|---|")
    ok = True
    for sc in NULL:
        out, _ = simulate(sc, args.studies, 0.0, rng)
        sup, opp = float(np.mean(out == "supported")), float(np.mean(out == "opposite"))
        good = sup + opp <= ALPHA + mc
        ok &= good
        print(f"| {sc.name} | {sc.seeds} | {sc.images} | {sup + opp:.1%} | {sup:.1%} | {opp:.1%} | "
              f"{'yes' if good else 'NO'} |")
    print()
    power_mc = 2 * math.sqrt(0.25 / args.studies)  # 2 binomial standard errors at 50%, the widest
    print(f"Power: share of studies called 'supported' with a planted gain (MC error up to {power_mc:.1%}), and")
    print("the median minimum detectable effect the verdict states (80% power):")
    print("| scenario | seeds | images | " + " | ".join(f"+{100 * g:.0f} pp" for g in GAINS) + " | stated MDE |")
    print("|---|---|---|" + "---|" * len(GAINS) + "---|")
    for sc in POWER:
        cells = []
        mde = math.nan
        for g in GAINS:
            out, m = simulate(sc, args.studies, g, rng)
            cells.append(f"{np.mean(out == 'supported'):.0%}")
            if g == GAINS[0]:
                mde = float(np.nanmedian(m))
        print(f"| {sc.name} | {sc.seeds} | {sc.images} | " + " | ".join(cells) + f" | {100 * mde:.1f} pp |")
    print(f"\n{'calibrated in every scenario' if ok else 'NOT calibrated somewhere'}; "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
