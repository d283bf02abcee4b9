"""The config sections of what a study measures: ``[attacks]``, ``[diagnostics]``, ``[probe]``,
``[mechanism]``, ``[autoattack]``, ``[detect]`` (frozen dataclasses that validate themselves through the attack
registry the run uses)."""

from __future__ import annotations

from dataclasses import dataclass

from ..names import CONTROLS
from .rules import ConfigError, attack_spec, budgets, positive

__all__ = ["AttacksSection", "DiagnosticsSection", "ProbeSection", "MechanismSection", "AutoAttackSection",
           "DetectSection"]


@dataclass(frozen=True)
class AttacksSection:
    eps: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)  # Linf budgets in [0, 1] pixel units
    white_box: tuple[dict, ...] = ({"name": "fgsm"}, {"name": "pgd", "steps": 10})  # run at every eps
    main: str = "pgd"  # the attack (by name) whose robust accuracy the verdict tests
    black_box: tuple[dict, ...] = ({"name": "square", "n_queries": 300},)  # gradient-free checks
    black_box_eps: tuple[float, ...] = (0.1, 0.2)  # budgets for the black-box checks
    black_box_size: int = 200  # examples for the black-box checks (a subset of the eval set)
    batch_size: int = 500
    transfer: bool = True  # baseline <-> SE transfer at black_box_eps

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", budgets(self.eps, "attacks.eps"))
        if self.black_box or self.transfer:
            object.__setattr__(self, "black_box_eps", budgets(self.black_box_eps, "attacks.black_box_eps"))
        if not self.white_box:
            raise ConfigError("attacks.white_box is empty: give at least the main attack, e.g. [{ name = \"pgd\" }]")
        for key in ("white_box", "black_box"):
            specs = [attack_spec(t, f"attacks.{key}[{i}]") for i, t in enumerate(getattr(self, key))]
            labels = [s.label for s in specs]
            for i, label in enumerate(labels):
                if labels.index(label) != i:
                    raise ConfigError(f"attacks.{key}[{i}] repeats attacks.{key}[{labels.index(label)}] ({label})")
        names = [a["name"] for a in self.white_box]
        if self.main not in names and self.main != "autoattack":
            raise ConfigError(f"attacks.main = {self.main!r} must be one of the white_box attacks {names} "
                              "or 'autoattack' (with [autoattack] enabled = true)")
        if names.count(self.main) > 1:
            raise ConfigError(f"attacks.main = {self.main!r} names {names.count(self.main)} white_box attacks; "
                              "keep one attack of that name")
        positive("attacks", black_box_size=self.black_box_size, batch_size=self.batch_size)


@dataclass(frozen=True)
class DiagnosticsSection:
    enabled: bool = True
    seeds: int = 0  # check the models of the first N seeds; 0 = every seed
    size: int = 200  # examples used by the gradient-masking checks
    eps: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3)
    steps: tuple[int, ...] = (10, 50)  # PGD steps compared (more steps must never help the model)
    restarts: tuple[int, ...] = (1, 3)
    square_queries: int = 300
    large_eps: float = 0.6  # accuracy must be near 0 here
    extra_attacks: tuple[dict, ...] = ()  # more attacks (any registered) that must not beat PGD of their norm
    l2_eps: tuple[float, ...] = ()  # L2 radii for L2 extra attacks (compared with pgd_l2 there)

    def __post_init__(self) -> None:
        specs = [attack_spec(t, f"diagnostics.extra_attacks[{i}]") for i, t in enumerate(self.extra_attacks)]
        if any(s.norm == "L2" for s in specs):
            object.__setattr__(self, "l2_eps", budgets(self.l2_eps, "diagnostics.l2_eps", upper=None))
        elif self.l2_eps:
            raise ConfigError("diagnostics.l2_eps is only used by L2 extra_attacks: remove it or add one")
        eps = budgets(self.eps, "diagnostics.eps")
        if not any(e > 0 for e in eps):
            raise ConfigError("diagnostics.eps needs at least one budget > 0")
        object.__setattr__(self, "eps", eps)
        (large,) = budgets([self.large_eps], "diagnostics.large_eps")
        object.__setattr__(self, "large_eps", large)
        if not self.steps or not self.restarts:
            raise ConfigError("diagnostics.steps and diagnostics.restarts need at least one value each")
        if any(s < 1 for s in self.steps) or any(r < 1 for r in self.restarts):
            raise ConfigError("diagnostics.steps and diagnostics.restarts must be >= 1")
        positive("diagnostics", size=self.size, square_queries=self.square_queries)
        if self.seeds < 0:
            raise ConfigError("diagnostics.seeds must be >= 0 (0 = every seed)")


@dataclass(frozen=True)
class ProbeSection:
    enabled: bool = True
    size: int = 300  # examples probed
    eps: tuple[float, ...] = (0.1, 0.2, 0.3)
    attack: str = "pgd"  # a registered attack; its options come from attacks.white_box when listed there
    controls: tuple[str, ...] = ("sign_noise", "gaussian")  # random perturbations of the same size
    per_channel: bool = True  # block x channel table (heatmap)

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", budgets(self.eps, "probe.eps"))
        attack_spec({"name": self.attack}, "probe.attack")
        if not self.controls:
            raise ConfigError(f"probe.controls is empty: the shift under attack is read against random noise; "
                              f"give one or more of {list(CONTROLS)}")
        bad = [c for c in self.controls if c not in CONTROLS]
        if bad or len(set(self.controls)) != len(self.controls):
            raise ConfigError(f"probe.controls = {list(self.controls)}: allowed {list(CONTROLS)}, each once")
        positive("probe", size=self.size)


@dataclass(frozen=True)
class MechanismSection:
    enabled: bool = True
    size: int = 300
    eps: float = 0.2  # budget for interventions and adaptive attacks
    steps: int = 20  # PGD steps of the adaptive attacks
    weight: float = 1.0  # weight of the excitation-shift term of excitation_pgd

    def __post_init__(self) -> None:
        (eps,) = budgets([self.eps], "mechanism.eps")
        if eps == 0:
            raise ConfigError("mechanism.eps must be > 0: interventions compare clean and adversarial inputs")
        object.__setattr__(self, "eps", eps)
        positive("mechanism", size=self.size, steps=self.steps)
        if self.weight < 0:
            raise ConfigError(f"mechanism.weight = {self.weight}: must be >= 0")



@dataclass(frozen=True)
class AutoAttackSection:
    """AutoAttack (Croce & Hein 2020) with its published budgets on a subset: for adversarially trained studies.

    Runs per member and seed on the first ``size`` examples of the eval set, at ``eps`` (clean accuracy at
    eps 0 is added); its per-component robust accuracy goes to the report. Set ``attacks.main =
    "autoattack"`` to make the verdict test it (PGD stays the cheap curve over every budget).
    """

    enabled: bool = False
    eps: tuple[float, ...] = (0.1,)
    size: int = 100
    version: str = "standard"  # "standard" (the published evaluation) or "fast" (a screen, not a claim)

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", budgets(self.eps, "autoattack.eps"))
        attack_spec({"name": "autoattack", "version": self.version}, "autoattack.version")
        positive("autoattack", size=self.size)


@dataclass(frozen=True)
class DetectSection:
    """The excitation detector (serobust.detect) against its pooled-feature control and an adaptive attack."""

    enabled: bool = True
    size: int = 200  # eval examples scored (clean negatives, perturbed positives)
    fit_size: int = 2000  # training images the class-conditional statistics are fitted on
    eps: float = 0.1  # the budget of FGSM, PGD, the noise control and the adaptive attack
    adaptive_steps: int = 50  # from the clean image (no random start)
    adaptive_weights: tuple[float, ...] = (0.0, 1.0, 10.0)  # detector-loss weights; per image the strongest
    margin: float = 0.05  # AUROC the excitation detector must gain over the control to count
    level: float = 0.7  # AUROC it must keep under the adaptive attack to count

    def __post_init__(self) -> None:
        (eps,) = budgets([self.eps], "detect.eps")
        if eps == 0:
            raise ConfigError("detect.eps must be > 0")
        object.__setattr__(self, "eps", eps)
        positive("detect", size=self.size, fit_size=self.fit_size, adaptive_steps=self.adaptive_steps)
        weights = tuple(self.adaptive_weights)
        if not weights or any(isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < float("inf")
                              for w in weights):
            raise ConfigError(f"detect.adaptive_weights = {list(weights)}: give one or more finite weights >= 0 "
                              "(e.g. [0, 1, 10])")
        object.__setattr__(self, "adaptive_weights", tuple(float(w) for w in weights))
        if not (0 <= self.margin < 1 and 0.5 <= self.level <= 1):
            raise ConfigError(f"detect.margin = {self.margin} must be in [0, 1) and detect.level = {self.level} "
                              "in [0.5, 1]")
