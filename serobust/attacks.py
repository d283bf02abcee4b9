"""Attack evaluation harness on torchattacks: named attack specs, adversarial examples, tidy results.

Three entry points, all taking any ``nn.Module`` classifier that maps [0, 1] images to logits:

* :func:`generate` -> adversarial examples for one attack at one budget (what probes and metrics use);
* :func:`evaluate` -> one row per (attack, eps) plus a ``worst_case`` row per eps, optionally one row per
  (example, attack, eps) so that later statistics can pair examples across models;
* :func:`evaluate_transfer` -> examples crafted on one model, scored on another.

Attacks are named (``"pgd"``) or built with options (``attack("pgd", steps=50, n_restarts=5)``); options
keep torchattacks' names. Wherever an attack is asked for, a name or an :class:`AttackSpec` will do.

Promises every call keeps (the harness owns the model's state, as torchattacks' ``Attack.__call__``
does): the model runs in eval mode during the attack and every submodule gets its own mode back
afterwards, also on exceptions; parameters get ``requires_grad=False`` for the attack (so ``p.grad`` is
never touched, FAB's ``backward`` included) and their flags are restored; each (attack, eps, batch) runs
under a forked RNG seeded from ``(seed, attack label, eps, batch index)``, so a result does not depend on
which other attacks ran in the same call, and :func:`generate` reproduces the examples :func:`evaluate`
scored (same seed and batch size). Every run is checked (AutoAttack's ``checks.py`` spirit):
``||x_adv - x|| <= eps`` in the attack's norm, ``x_adv`` in [0, 1], no NaN, robust <= clean; a
violation raises ``RuntimeError`` because it is a bug in the harness, not in the model.

Budgets: Linf eps are in [0, 1] pixel units (strings like ``"8/255"`` work). L2 eps (``pgd_l2``, and
``apgd_ce``/``square``/``autoattack`` with ``norm="L2"``) are radii in the same pixel units; they may
exceed 1 but not the diameter of the image cube, ``sqrt(C * H * W)``, beyond which the ball holds the
whole cube and the budget is surely a mistake.

Robust correctness of an example is ``clean correct AND adversarial prediction == label`` (AutoAttack's
convention): an attack that happens to fix a misclassified input does not count as robust.
"""

from __future__ import annotations

import contextlib
import logging
import math
import numbers
import sys
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import torchattacks
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from .eps import parse_eps
from .runtime import model_device

__all__ = [
    "ATTACKS",
    "AttackSpec",
    "attack",
    "generate",
    "evaluate",
    "evaluate_transfer",
    "SUMMARY_COLUMNS",
    "PER_EXAMPLE_COLUMNS",
    "TRANSFER_COLUMNS",
    "TRANSFER_PER_EXAMPLE_COLUMNS",
    "WORST_CASE",
]

logger = logging.getLogger(__name__)

WORST_CASE = "worst_case"
_NORMS = ("Linf", "L2")
_LINF_TOL = 1e-6  # float rounding of x + eps - x; anything beyond is a projection bug
_L2_RTOL = 1e-5

SUMMARY_COLUMNS = [
    "attack", "eps", "norm", "budget", "clean_acc", "robust_acc", "success_rate",
    "linf_mean", "linf_max", "l2_mean", "grad_norm", "zero_grad_frac", "n", "notes",
]
PER_EXAMPLE_COLUMNS = [
    "index", "attack", "eps", "label", "clean_pred", "adv_pred", "clean_correct", "robust_correct", "linf", "l2",
]

# ---------------------------------------------------------------------------------------------------------
# The registry: attack name -> default options (torchattacks' option names)
# ---------------------------------------------------------------------------------------------------------

# AutoAttack budgets. "standard" is Croce & Hein (2020) exactly: APGD-CE 100 steps, APGD-T 100 steps on the
# 9 top non-true classes, FAB-T 100 steps on 9 targets, Square 5000 queries, one restart each (torchattacks'
# own AutoAttack runs 10 steps, which is not the published evaluation). "fast" is a lighter screen for
# notebooks: no FAB-T, fewer steps, targets and queries. A 0 budget skips that component.
_AA_PRESETS: Mapping[str, Mapping[str, int]] = MappingProxyType({
    "standard": MappingProxyType(
        {"apgd_steps": 100, "apgdt_steps": 100, "n_target_classes": 9, "fab_steps": 100, "square_queries": 5000}
    ),
    "fast": MappingProxyType(
        {"apgd_steps": 25, "apgdt_steps": 25, "n_target_classes": 3, "fab_steps": 0, "square_queries": 1000}
    ),
})

_DEFAULTS: dict[str, dict[str, Any]] = {
    # one signed-gradient step of size eps (Goodfellow et al. 2015)
    "fgsm": {},
    # Madry et al. 2018; alpha=None means 2.5 * eps / steps (enough to cross the ball from any start)
    "pgd": {"steps": 10, "alpha": None, "random_start": True, "n_restarts": 1},
    # same, L2 ball; alpha=None means 2.5 * eps / steps
    "pgd_l2": {"steps": 10, "alpha": None, "random_start": True, "n_restarts": 1},
    # Croce & Hein 2020: step-size free PGD with momentum; 100 steps as in AutoAttack
    "apgd_ce": {"steps": 100, "n_restarts": 1, "loss": "ce", "norm": "Linf", "rho": 0.75, "eot_iter": 1},
    # Andriushchenko et al. 2020: black-box, score-based random search; 5000 queries as in AutoAttack
    "square": {"n_queries": 5000, "n_restarts": 1, "p_init": 0.8, "loss": "margin", "norm": "Linf"},
    # budgets left None come from the version preset (see _AA_PRESETS)
    "autoattack": {"version": "standard", "norm": "Linf", "apgd_steps": None, "apgdt_steps": None,
                   "n_target_classes": None, "fab_steps": None, "square_queries": None},
    # a control, not an attack: uniform random corners of the Linf ball (x + eps * random sign), best of
    # n_samples draws; an attack that loses to it is masked
    "noise": {"n_samples": 1},
}

#: Registered attack names -> their default options (read-only). ``list(ATTACKS)`` gives the names.
ATTACKS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {name: MappingProxyType(dict(opts)) for name, opts in _DEFAULTS.items()}
)


def _int_rule(minimum: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"option {key!r} must be an int >= {minimum}, got {value!r}")
        if value < minimum:
            raise ValueError(f"option {key!r} must be >= {minimum}, got {value}")
        return int(value)

    return check


def _bool_rule(key: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"option {key!r} must be True or False, got {value!r}")
    return bool(value)


def _alpha_rule(key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _positive(key, parse_eps(value, name=f"option {key!r}"))
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"option {key!r} must be a positive float (pixel units) or None for the default, got {value!r}")
    return _positive(key, float(value))


def _positive(key: str, value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"option {key!r} must be a finite number > 0, got {value}")
    return value


def _unit_rule(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"option {key!r} must be a float in (0, 1], got {value!r}")
    if not 0 < float(value) <= 1:
        raise ValueError(f"option {key!r} must be in (0, 1], got {value}")
    return float(value)


def _choice_rule(choices: Sequence[str]) -> Callable[[str, Any], str]:
    def check(key: str, value: Any) -> str:
        if value not in choices:
            raise ValueError(f"option {key!r} must be one of {list(choices)}, got {value!r}")
        return str(value)

    return check


def _optional(rule: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    return lambda key, value: None if value is None else rule(key, value)


_RULES: dict[str, dict[str, Callable[[str, Any], Any]]] = {
    "fgsm": {},
    "pgd": {"steps": _int_rule(1), "alpha": _alpha_rule, "random_start": _bool_rule, "n_restarts": _int_rule(1)},
    "pgd_l2": {"steps": _int_rule(1), "alpha": _alpha_rule, "random_start": _bool_rule,
               "n_restarts": _int_rule(1)},
    "apgd_ce": {"steps": _int_rule(1), "n_restarts": _int_rule(1), "loss": _choice_rule(("ce", "dlr")),
                "norm": _choice_rule(_NORMS), "rho": _unit_rule, "eot_iter": _int_rule(1)},
    "square": {"n_queries": _int_rule(1), "n_restarts": _int_rule(1), "p_init": _unit_rule,
               "loss": _choice_rule(("margin", "ce")), "norm": _choice_rule(_NORMS)},
    "autoattack": {"version": _choice_rule(tuple(_AA_PRESETS)), "norm": _choice_rule(_NORMS),
                   "apgd_steps": _optional(_int_rule(0)), "apgdt_steps": _optional(_int_rule(0)),
                   "n_target_classes": _optional(_int_rule(1)), "fab_steps": _optional(_int_rule(0)),
                   "square_queries": _optional(_int_rule(0))},
    "noise": {"n_samples": _int_rule(1)},
}
_FIXED_NORM = {"fgsm": "Linf", "pgd": "Linf", "pgd_l2": "L2", "noise": "Linf"}


def _canonical_name(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"an attack is a name (str) or an AttackSpec, got {type(name).__name__}: {name!r}")
    key = name.strip().lower().replace("-", "_")
    if key == WORST_CASE:
        raise ValueError(f"{WORST_CASE!r} is the summary row evaluate() adds, not an attack; valid names: "
                         f"{', '.join(ATTACKS)}")
    if key not in _DEFAULTS:
        raise ValueError(f"unknown attack {name!r}; valid names: {', '.join(ATTACKS)}")
    return key


def _check_options(name: str, options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    rules = _RULES[name]
    out = []
    for key in sorted(options):
        if key not in rules:
            valid = ", ".join(rules) if rules else "none"
            raise TypeError(f"attack {name!r} has no option {key!r}; valid options: {valid}")
        out.append((key, rules[key](key, options[key])))
    return tuple(out)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return repr(value)
    return str(value)


@dataclass(frozen=True)
class AttackSpec:
    """One attack with its options, validated at construction; hashable, so it can key dicts.

    Build it with :func:`attack` (``attack("pgd", steps=50)``) or directly
    (``AttackSpec("pgd", {"steps": 50})``). Only the options given are stored (sorted by key); every other
    option takes the registry default in :data:`ATTACKS`.

    Attributes:
        name: a registered attack name (see :data:`ATTACKS`).
        options: the options given, as sorted ``(key, value)`` pairs.
    """

    name: str
    options: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        name = _canonical_name(self.name)
        opts = self.options
        if isinstance(opts, Mapping):
            opts = dict(opts)
        else:
            try:
                opts = dict(opts)
            except (TypeError, ValueError):
                raise TypeError(f"AttackSpec options must be a mapping or (key, value) pairs, got {opts!r}") from None
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "options", _check_options(name, opts))
        config = self.config
        if config.get("random_start") is False and config.get("n_restarts", 1) > 1:
            warnings.warn(
                f"{self.label}: n_restarts > 1 with random_start=False repeats the same deterministic attack; "
                "it will run once (set random_start=True for restarts to help)",
                stacklevel=3,
            )

    @property
    def config(self) -> dict[str, Any]:
        """Every option with defaults filled in (AutoAttack budgets resolved from the version preset)."""
        out = dict(_DEFAULTS[self.name])
        out.update(self.options)
        if self.name == "autoattack":
            preset = _AA_PRESETS[out["version"]]
            for key, value in preset.items():
                if out[key] is None:
                    out[key] = value
        return out

    @property
    def label(self) -> str:
        """``name`` or ``name(k=v, ...)`` with the options given; the ``attack`` column of results."""
        if not self.options:
            return self.name
        return f"{self.name}(" + ", ".join(f"{k}={_fmt(v)}" for k, v in self.options) + ")"

    @property
    def norm(self) -> str:
        """The threat model's norm: ``"Linf"`` or ``"L2"`` (eps is measured in it)."""
        return _FIXED_NORM.get(self.name) or self.config["norm"]

    @property
    def budget(self) -> str:
        """The attack's budget in words (the ``budget`` column gives it with eps-dependent numbers)."""
        return _budget(self, eps=None, num_classes=None)

    def __str__(self) -> str:
        return self.label


def attack(name: str, **options: Any) -> AttackSpec:
    """Build an :class:`AttackSpec` by name; options keep torchattacks' names.

    Defaults (all in :data:`ATTACKS`): ``pgd``/``pgd_l2``: ``steps=10``, ``alpha=None`` (meaning
    2.5 * eps / steps, Madry et al.), ``random_start=True``, ``n_restarts=1`` (each restart is a full
    random-start run; per example the first successful, else the highest-loss, result is kept).
    ``apgd_ce``: ``steps=100``, ``loss="ce"`` (or ``"dlr"``), ``norm="Linf"``. ``square``:
    ``n_queries=5000``, ``loss="margin"``. ``autoattack``: ``version="standard"`` (APGD-CE 100 steps,
    APGD-T 100 steps x 9 targets, FAB-T 100 steps x 9 targets, Square 5000 queries) or ``"fast"``;
    ``apgd_steps``, ``apgdt_steps``, ``n_target_classes``, ``fab_steps``, ``square_queries`` override the
    preset (0 skips a component). ``noise``: random-sign control, ``n_samples=1``.

    Raises:
        ValueError: unknown attack name, or an option value out of range (the message says the range).
        TypeError: unknown option (the message lists the valid ones) or an option of the wrong type.

    Example:
        >>> attack("pgd", steps=50).label
        'pgd(steps=50)'
    """
    return AttackSpec(name, tuple(options.items()))


def _as_spec(value: str | AttackSpec) -> AttackSpec:
    if isinstance(value, AttackSpec):
        return value
    return AttackSpec(_canonical_name(value))


def _as_specs(attacks: str | AttackSpec | Iterable[str | AttackSpec]) -> list[AttackSpec]:
    if isinstance(attacks, (str, AttackSpec)):
        specs = [_as_spec(attacks)]
    else:
        try:
            specs = [_as_spec(a) for a in attacks]
        except TypeError as err:
            if "not iterable" in str(err):
                raise TypeError(f"attacks must be a name, an AttackSpec or a list of them, got {attacks!r}") from None
            raise
    if not specs:
        raise ValueError("attacks is empty; give at least one attack name or spec, e.g. ['fgsm', 'pgd']")
    labels = [s.label for s in specs]
    dupes = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dupes:
        raise ValueError(f"attacks listed twice: {dupes}; each (attack, options) may appear once")
    return specs


# ---------------------------------------------------------------------------------------------------------
# Budgets
# ---------------------------------------------------------------------------------------------------------

def _parse_radius(value: Any, *, name: str) -> float:
    """An L2 radius: like parse_eps (numbers, '128/255' strings) but not capped at 1."""
    return parse_eps(value, name=name, upper=None)


def _parse_eps_for(spec: AttackSpec, raw: Any, *, name: str) -> float:
    if spec.norm == "Linf":
        return parse_eps(raw, name=name)
    return _parse_radius(raw, name=name)


def _eps_values(eps: Any) -> list[Any]:
    if isinstance(eps, (str, numbers.Real)) or (isinstance(eps, torch.Tensor) and eps.ndim == 0):
        return [eps.item() if isinstance(eps, torch.Tensor) else eps]
    try:
        values = list(eps)
    except TypeError:
        raise TypeError(f"eps must be a number, a string like '8/255' or a list of them, got {eps!r}") from None
    if not values:
        raise ValueError("eps is empty; give at least one budget, e.g. eps=[0, 8/255]")
    return [v.item() if isinstance(v, torch.Tensor) else v for v in values]


def _resolve_eps(specs: Sequence[AttackSpec], eps: Any) -> tuple[list[float], dict[str, list[float]]]:
    """Parse every eps once per norm in use; returns the float list (in the Linf/L2 reading) per label."""
    raw = _eps_values(eps)
    per_label: dict[str, list[float]] = {}
    for spec in specs:
        values = [_parse_eps_for(spec, v, name=f"eps[{i}] for {spec.label} ({spec.norm})") for i, v in enumerate(raw)]
        if len(set(values)) != len(values):
            raise ValueError(f"eps contains duplicates: {values}; give each budget once")
        per_label[spec.label] = values
    first = next(iter(per_label.values()))
    return first, per_label


def _alpha(config: Mapping[str, Any], eps: float) -> float:
    return config["alpha"] if config["alpha"] is not None else 2.5 * eps / config["steps"]


def _aa_plan(config: Mapping[str, Any], num_classes: int | None) -> tuple[list[tuple[str, int, int]], list[str]]:
    """AutoAttack components that will run: (name, budget, targets), and notes on anything capped/skipped."""
    notes = []
    targets = config["n_target_classes"]
    if num_classes is not None and targets > num_classes - 1:
        notes.append(f"n_target_classes capped at {num_classes - 1} (num_classes - 1)")
        targets = num_classes - 1
    plan = []
    if config["apgd_steps"]:
        plan.append(("APGD-CE", config["apgd_steps"], 0))
    if config["apgdt_steps"]:
        if num_classes is not None and num_classes < 4:
            notes.append("APGD-T skipped: its targeted DLR loss needs >= 4 classes")
        else:
            plan.append(("APGD-T", config["apgdt_steps"], targets))
    if config["fab_steps"]:
        plan.append(("FAB-T", config["fab_steps"], targets))
    if config["square_queries"]:
        plan.append(("Square", config["square_queries"], 0))
    return plan, notes


def _budget(spec: AttackSpec, *, eps: float | None, num_classes: int | None) -> str:
    c = spec.config
    name = spec.name
    if name == "fgsm":
        return "single step of eps * sign(gradient)"
    if name in ("pgd", "pgd_l2"):
        if c["alpha"] is None:
            alpha = "2.5*eps/steps" + (f"={2.5 * eps / c['steps']:.4g}" if eps is not None else "")
        else:
            alpha = f"{c['alpha']:.4g}"
        restarts = c["n_restarts"] if c["random_start"] else 1
        start = "random start" if c["random_start"] else "no random start"
        return f"{c['steps']} steps, alpha={alpha}, {start}, {restarts} restart(s)"
    if name == "apgd_ce":
        eot = f", EOT {c['eot_iter']}" if c["eot_iter"] > 1 else ""
        return f"APGD-{c['loss'].upper()} {c['steps']} steps, {c['n_restarts']} restart(s){eot}"
    if name == "square":
        return f"{c['n_queries']} queries, {c['n_restarts']} restart(s), p_init={c['p_init']:g}, {c['loss']} loss"
    if name == "noise":
        return f"random sign noise (Linf corners), {c['n_samples']} draw(s)"
    # autoattack
    plan, _ = _aa_plan(c, num_classes)
    preset = _AA_PRESETS[c["version"]]
    version = c["version"] if all(c[k] == v for k, v in preset.items()) else f"custom from {c['version']}"
    parts = []
    for comp, budget, targets in plan:
        unit = "queries" if comp == "Square" else "steps"
        parts.append(f"{comp} {budget} {unit}" + (f" x {targets} targets" if targets else ""))
    return f"{version} ({', '.join(parts) or 'no components'})"


# ---------------------------------------------------------------------------------------------------------
# The model as torchattacks sees it, and the state guard
# ---------------------------------------------------------------------------------------------------------

class _Logits(nn.Module):
    """Float32 logits of ``model``; under bf16 autocast with channels_last input when asked (CUDA only).

    The empty ``anchor`` parameter makes ``next(parameters())`` name the right device for torchattacks
    even when the wrapped model has no parameters (torchattacks would print otherwise).
    """

    def __init__(self, model: nn.Module, *, device: torch.device, autocast: bool) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.empty(0, device=device), requires_grad=False)
        self.model = model
        self.autocast = autocast
        self.training = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.autocast:
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                out = self.model(x.contiguous(memory_format=torch.channels_last))
        else:
            out = self.model(x)
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the model must return logits of shape (batch, num_classes), got {got}")
        return out.float()

    def train(self, mode: bool = True) -> _Logits:
        # torchattacks' __call__ does wrapper.eval() ... wrapper.train(given_training); propagating that
        # would switch the wrapped model (BatchNorm statistics!) to training mode for the next forward.
        # The wrapped model keeps the mode _attack_state gave it.
        self.training = mode
        return self


@contextlib.contextmanager
def _attack_state(*models: nn.Module) -> Iterator[None]:
    """Eval mode and frozen parameters for the attack; every module's mode and flag restored after."""
    modes = [(m, m.training) for model in models for m in model.modules()]
    flags = [(p, p.requires_grad) for model in models for p in model.parameters()]
    try:
        for model in models:
            model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for m, training in reversed(modes):
            m.training = training
        for p, flag in reversed(flags):
            p.requires_grad_(flag)


def _resolve_device(models: Sequence[nn.Module], device: str | torch.device | None) -> torch.device:
    for model in models:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module classifier, got {type(model).__name__}")
    found = [model_device(m) for m in models]
    want = torch.device(device) if device is not None else found[0]
    for d in found:
        same = d.type == want.type and (want.index is None or d.index is None or d.index == want.index)
        if not same:
            raise ValueError(f"the model is on {d} but device={want}; move it first with model.to({str(want)!r})")
    if want.type == "cuda" and want.index is None:
        want = found[0] if found[0].type == "cuda" else torch.device("cuda", torch.cuda.current_device())
    return want


def _autocast_on(autocast: bool, device: torch.device) -> tuple[bool, list[str]]:
    if not autocast:
        return False, []
    if device.type == "cuda":
        return True, ["bf16 autocast, channels_last"]
    return False, [f"autocast ignored on {device.type} (float32)"]


# ---------------------------------------------------------------------------------------------------------
# Runners: (x, y) -> x_adv for one (attack, eps), built once per call and reused across batches
# ---------------------------------------------------------------------------------------------------------

Runner = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _spec_seed(seed: int, label: str, eps: float) -> int:
    return zlib.crc32(f"{seed}|{label}|{eps!r}".encode()) & 0x7FFFFFFF


def _batch_seed(seed: int, label: str, eps: float, batch: int) -> int:
    return zlib.crc32(f"{seed}|{label}|{eps!r}|{batch}".encode()) & 0x7FFFFFFF


def _ce(wm: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        logits = wm(x)
    return logits.argmax(1) != y, F.cross_entropy(logits, y, reduction="none")


def _restarts(wm: nn.Module, run: Runner, n: int) -> Runner:
    """n independent runs; per example keep the first successful, else the highest-loss, example."""
    if n == 1:
        return run

    def go(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        best = run(x, y)
        fooled, loss = _ce(wm, best, y)
        for _ in range(n - 1):
            cand = run(x, y)
            cand_fooled, cand_loss = _ce(wm, cand, y)
            take = ~fooled & (cand_fooled | (cand_loss > loss))  # (B,)
            best = torch.where(take[:, None, None, None], cand, best)
            loss = torch.where(take, cand_loss, loss)
            fooled = fooled | cand_fooled
        return best

    return go


def _noise_runner(wm: nn.Module, eps: float, n_samples: int) -> Runner:
    def draw(x: torch.Tensor) -> torch.Tensor:
        sign = torch.empty_like(x).uniform_(-1.0, 1.0).sign()
        return (x + eps * sign).clamp(0.0, 1.0)

    def go(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        best = draw(x)
        if n_samples == 1:
            return best
        fooled, _ = _ce(wm, best, y)
        for _ in range(n_samples - 1):
            cand = draw(x)
            cand_fooled, _ = _ce(wm, cand, y)
            take = ~fooled & cand_fooled
            best = torch.where(take[:, None, None, None], cand, best)
            fooled = fooled | cand_fooled
        return best

    return go


def _autoattack_runner(wm: nn.Module, components: list[torchattacks.Attack]) -> Runner:
    """Components in order, each on the examples still robust (AutoAttack's standard evaluation)."""

    def go(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = x.clone()
        with torch.no_grad():
            robust = wm(x).argmax(1) == y  # (B,)
        for comp in components:
            idx = robust.nonzero().squeeze(1)  # host sync: the subset size decides the work
            if idx.numel() == 0:
                break
            adv = comp(x[idx], y[idx])
            with torch.no_grad():
                fooled = wm(adv).argmax(1) != y[idx]
            x_adv[idx[fooled]] = adv[fooled]
            robust[idx[fooled]] = False
        return x_adv

    return go


def _make_runner(spec: AttackSpec, eps: float, wm: nn.Module, *, num_classes: int, seed: int) -> tuple[Runner, str, list[str]]:
    """torchattacks objects for one (attack, eps); returns the runner, its budget and notes."""
    c = spec.config
    notes: list[str] = []
    name = spec.name
    if name == "fgsm":
        atk = torchattacks.FGSM(wm, eps=eps)
        run: Runner = atk
    elif name in ("pgd", "pgd_l2"):
        cls = torchattacks.PGD if name == "pgd" else torchattacks.PGDL2
        atk = cls(wm, eps=eps, alpha=_alpha(c, eps), steps=c["steps"], random_start=c["random_start"])
        n = c["n_restarts"] if c["random_start"] else 1
        if c["n_restarts"] > 1 and not c["random_start"]:
            notes.append("n_restarts ignored: random_start=False makes restarts identical")
        run = _restarts(wm, atk, n)
    elif name == "apgd_ce":
        if c["loss"] == "dlr" and num_classes < 3:
            raise ValueError(f"{spec.label}: the DLR loss needs >= 3 classes, the model has {num_classes}; use loss='ce'")
        run = torchattacks.APGD(wm, norm=c["norm"], eps=eps, steps=c["steps"], n_restarts=c["n_restarts"],
                                seed=seed, loss=c["loss"], eot_iter=c["eot_iter"], rho=c["rho"])
    elif name == "square":
        run = torchattacks.Square(wm, norm=c["norm"], eps=eps, n_queries=c["n_queries"],
                                  n_restarts=c["n_restarts"], p_init=c["p_init"], loss=c["loss"], seed=seed)
    elif name == "noise":
        run = _noise_runner(wm, eps, c["n_samples"])
    elif name == "autoattack":
        plan, notes = _aa_plan(c, num_classes)
        comps: list[torchattacks.Attack] = []
        for comp, budget, targets in plan:
            if comp == "APGD-CE":
                comps.append(torchattacks.APGD(wm, norm=c["norm"], eps=eps, steps=budget, n_restarts=1, seed=seed,
                                               loss="ce"))
            elif comp == "APGD-T":
                comps.append(torchattacks.APGDT(wm, norm=c["norm"], eps=eps, steps=budget, n_restarts=1, seed=seed,
                                                n_classes=targets + 1))
            elif comp == "FAB-T":
                comps.append(torchattacks.FAB(wm, norm=c["norm"], eps=eps, steps=budget, n_restarts=1, seed=seed,
                                              multi_targeted=True, n_classes=targets + 1))
            else:
                comps.append(torchattacks.Square(wm, norm=c["norm"], eps=eps, n_queries=budget, n_restarts=1,
                                                 seed=seed))
        run = _autoattack_runner(wm, comps)
    else:  # pragma: no cover - _canonical_name guards the registry
        raise ValueError(f"unknown attack {name!r}")
    return run, _budget(spec, eps=eps, num_classes=num_classes), notes


def _rng_devices(device: torch.device) -> list[int]:
    return [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []


def _run_seeded(run: Runner, x: torch.Tensor, y: torch.Tensor, *, seed: int, device: torch.device) -> torch.Tensor:
    with torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(seed)
        if device.type == "cuda":
            torch.cuda.manual_seed(seed)
        x_adv = run(x, y)
    return x_adv.detach().float()


# ---------------------------------------------------------------------------------------------------------
# Data: Dataset, DataLoader or (x, y) -> batches of exactly batch_size (the last may be smaller)
# ---------------------------------------------------------------------------------------------------------

def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    return int(batch_size)


def _split_item(item: Any) -> tuple[Any, Any]:
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return item[0], item[1]
    raise TypeError("data must yield (x, y) pairs; got an item of type "
                    f"{type(item).__name__}" + (f" with {len(item)} entries" if hasattr(item, "__len__") else ""))


def _batches(data: Any, batch_size: int, *, order_matters: bool) -> tuple[Iterator[tuple[torch.Tensor, torch.Tensor]], int | None]:
    """Batches of ``batch_size`` (re-chunking a DataLoader's own batches), and the example count if known.

    Re-chunking makes a Dataset, a DataLoader over it and the (x, y) tensors give identical results: the
    per-batch seeds depend on batch boundaries.
    """
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        y = torch.as_tensor(y)
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
        n = len(x)
        return ((x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, n, batch_size)), n
    if isinstance(data, DataLoader):
        if order_matters and isinstance(data.sampler, RandomSampler):
            warnings.warn(
                "the DataLoader shuffles: per-example indices follow this iteration's order and will not pair "
                "across calls or models; pass the Dataset or a loader with shuffle=False",
                stacklevel=3,
            )
        loader: Iterable[Any] = data
        try:
            n = len(data.dataset)  # type: ignore[arg-type]
            if data.drop_last and data.batch_size:
                n = (n // data.batch_size) * data.batch_size
        except TypeError:
            n = None
    elif isinstance(data, Dataset):
        loader = DataLoader(data, batch_size=batch_size, shuffle=False)
        try:
            n = len(data)  # type: ignore[arg-type]
        except TypeError:
            n = None
    else:
        raise TypeError(f"data must be a Dataset, a DataLoader or an (x, y) pair of tensors, got {type(data).__name__}")
    return _rechunk(loader, batch_size), n


def _rechunk(loader: Iterable[Any], batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    held = 0
    for item in loader:
        xb, yb = _split_item(item)
        xb, yb = torch.as_tensor(xb), torch.as_tensor(yb)
        xs.append(xb)
        ys.append(yb)
        held += len(xb)
        while held >= batch_size:
            x_all, y_all = torch.cat(xs), torch.cat(ys)
            yield x_all[:batch_size], y_all[:batch_size]
            xs, ys = [x_all[batch_size:]], [y_all[batch_size:]]
            held -= batch_size
    if held:
        yield torch.cat(xs), torch.cat(ys)


def _to_device(xb: torch.Tensor, yb: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if not torch.is_floating_point(xb):
        raise TypeError(f"images must be float in [0, 1], got dtype {xb.dtype}; for uint8 images use x.float() / 255")
    if xb.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(xb.shape)}")
    if yb.ndim != 1 or yb.dtype in (torch.bool,) or torch.is_floating_point(yb):
        raise ValueError(f"labels must be integer class indices of shape (N,), got dtype {yb.dtype} shape {tuple(yb.shape)}")
    non_blocking = device.type == "cuda"
    return (xb.to(device, torch.float32, non_blocking=non_blocking),
            yb.to(device, torch.long, non_blocking=non_blocking))


def _first_batch_checks(wm: nn.Module, xb: torch.Tensor, yb: torch.Tensor, logits: torch.Tensor) -> None:
    """One host sync on the first batch: input range, label range, softmax output, randomness."""
    with torch.no_grad():
        again = wm(xb)
        probs_like = bool(((logits >= 0).all(1) & ((logits.sum(1) - 1).abs() < 1e-2)).all())
        lo, hi = float(xb.min()), float(xb.max())
        ymin, ymax = int(yb.min()), int(yb.max())
        # a tolerance, not equality: non-deterministic GPU kernels differ in the last bits, defenses by far more
        randomized = not torch.allclose(again, logits, rtol=1e-3, atol=1e-3)
    if lo < 0 or hi > 1:
        raise ValueError(f"images must lie in [0, 1] (the model normalizes inside); got values in [{lo:.4g}, {hi:.4g}]. "
                         "Undo any Normalize transform in the data pipeline")
    if ymin < 0 or ymax >= logits.shape[1]:
        raise ValueError(f"labels must be in [0, {logits.shape[1] - 1}] for a model with {logits.shape[1]} outputs, "
                         f"got labels in [{ymin}, {ymax}]")
    if probs_like:
        warnings.warn("the model's outputs look like probabilities (rows are >= 0 and sum to 1); attacks expect "
                      "logits: remove the final softmax", stacklevel=4)
    if randomized:
        warnings.warn("the model gives different outputs for the same input in eval mode (randomized defense?); "
                      "results vary run to run, and gradient attacks need EOT (apgd_ce eot_iter) to be reliable",
                      stacklevel=4)


def _perturbation(x_adv: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
    delta = (x_adv - x).flatten(1)  # (B, C*H*W)
    flat = x_adv.flatten(1)
    return {"linf": delta.abs().amax(1), "l2": delta.norm(dim=1), "lo": flat.amin(1), "hi": flat.amax(1),
            "nan": torch.isnan(flat).any(1)}


def _sanity(label: str, norm: str, eps: float, stats: Mapping[str, torch.Tensor], *,
            clean: torch.Tensor | None = None, robust: torch.Tensor | None = None) -> None:
    """Raise if a run broke an invariant (stats are host tensors)."""
    where = f"{label} at eps={eps:.6g}"
    if bool(stats["nan"].any()):
        raise RuntimeError(f"harness bug: {where} produced NaN in {int(stats['nan'].sum())} adversarial examples")
    if len(stats["lo"]) and (float(stats["lo"].min()) < 0 or float(stats["hi"].max()) > 1):
        raise RuntimeError(f"harness bug: {where} left [0, 1]: x_adv in [{float(stats['lo'].min())}, "
                           f"{float(stats['hi'].max())}]")
    if norm == "Linf":
        worst, limit = (float(stats["linf"].max()) if len(stats["linf"]) else 0.0), eps + _LINF_TOL
    else:
        worst, limit = (float(stats["l2"].max()) if len(stats["l2"]) else 0.0), eps * (1 + _L2_RTOL) + _LINF_TOL
    if worst > limit:
        raise RuntimeError(f"harness bug: {where} exceeded the {norm} budget: max norm {worst:.8g} > {eps:.8g}")
    if clean is not None and robust is not None and int(robust.sum()) > int(clean.sum()):
        raise RuntimeError(f"harness bug: {where} robust accuracy exceeds clean accuracy")


def _check_l2_radius(specs: Sequence[AttackSpec], eps_by_label: Mapping[str, list[float]], dim: int) -> None:
    limit = math.sqrt(dim)
    for spec in specs:
        if spec.norm == "L2":
            for e in eps_by_label[spec.label]:
                if e > limit:
                    raise ValueError(f"L2 eps {e:g} for {spec.label} exceeds the diameter of the image cube "
                                     f"sqrt(C*H*W) = {limit:.4g}; an L2 radius is in [0, 1] pixel units")


def _progress_bar(progress: bool | None, total: int | None, desc: str):
    show = sys.stderr.isatty() if progress is None else bool(progress)
    if not show:
        return contextlib.nullcontext(None)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False)


def _n_batches(n: int | None, batch_size: int) -> int | None:
    return None if n is None else -(-n // batch_size)


def _mean(t: torch.Tensor) -> float:
    return float(t.double().mean()) if len(t) else float("nan")


def _join(notes: Iterable[str]) -> str:
    seen: list[str] = []
    for note in notes:
        if note and note not in seen:
            seen.append(note)
    return "; ".join(seen)


# ---------------------------------------------------------------------------------------------------------
# generate
# ---------------------------------------------------------------------------------------------------------

def generate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: str | AttackSpec,
    eps: float | str,
    *,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    autocast: bool = False,
) -> torch.Tensor:
    """Adversarial examples for one attack at one budget.

    The same seed and batch size give exactly the examples :func:`evaluate` scores for this
    (attack, eps), so probes and metrics can look at what was counted.

    Args:
        model: classifier taking [0, 1] images, returning logits; must already be on ``device``.
        x: clean images in [0, 1], shape (N, C, H, W), any float dtype, any device.
        y: labels, shape (N,).
        attack: a name in :data:`ATTACKS` or an :class:`AttackSpec`.
        eps: budget in [0, 1] pixel units (``"8/255"`` accepted); an L2 radius for L2 attacks.
        seed: base seed; each batch runs under ``fork_rng`` seeded from (seed, attack, eps, batch index).
        batch_size: examples per attack call.
        device: where the attack runs; None means the model's device.
        autocast: on CUDA, bf16 autocast + channels_last for the model's forward (logits and the attack
            step stay float32); ignored on CPU.

    Returns:
        x_adv, float32, on x's device, same shape as x. eps=0 returns ``x.clone()`` (as float32).

    Raises:
        ValueError / TypeError: bad eps, attack, options, shapes or value ranges.
        RuntimeError: a sanity check failed (norm bound, [0, 1], NaN) - a harness bug.
    """
    spec = _as_spec(attack)
    batch_size = _check_batch_size(batch_size)
    eps_f = _parse_eps_for(spec, eps.item() if isinstance(eps, torch.Tensor) else eps, name=f"eps for {spec.label}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor of images (N, C, H, W), got {type(x).__name__}")
    y = torch.as_tensor(y)
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    if x.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(x.shape)}")
    _check_l2_radius([spec], {spec.label: [eps_f]}, int(np.prod(x.shape[1:])))
    if eps_f == 0 or len(x) == 0:
        return x.detach().clone().float()
    dev = _resolve_device([model], device)
    use_autocast, _ = _autocast_on(autocast, dev)
    wm = _Logits(model, device=dev, autocast=use_autocast)
    outs: list[torch.Tensor] = []
    stats: dict[str, list[torch.Tensor]] = {}
    with _attack_state(model):
        run = None
        for b, (xb, yb) in enumerate(_batches((x, y), batch_size, order_matters=False)[0]):
            xb, yb = _to_device(xb, yb, dev)
            if run is None:
                with torch.no_grad():
                    logits = wm(xb)
                _first_batch_checks(wm, xb, yb, logits)
                run, _, _ = _make_runner(spec, eps_f, wm, num_classes=logits.shape[1],
                                         seed=_spec_seed(seed, spec.label, eps_f))
            x_adv = _run_seeded(run, xb, yb, seed=_batch_seed(seed, spec.label, eps_f, b), device=dev)
            for k, v in _perturbation(x_adv, xb).items():
                stats.setdefault(k, []).append(v)
            outs.append(x_adv)
    host = {k: torch.cat(v).cpu() for k, v in stats.items()}
    _sanity(spec.label, spec.norm, eps_f, host)
    return torch.cat(outs).to(x.device)


# ---------------------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------------------

def evaluate(
    model: nn.Module,
    data: Any,
    attacks: str | AttackSpec | Iterable[str | AttackSpec],
    eps: float | str | Iterable[float | str],
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    per_example: bool = False,
    return_examples: bool = False,
    seed: int = 0,
    autocast: bool = False,
    progress: bool | None = None,
    input_gradients: bool = True,
) -> pd.DataFrame | tuple[Any, ...]:
    """Robust accuracy of ``model`` under each attack at each budget, as a tidy DataFrame.

    The data is read once: every batch is scored clean (with the input gradient of the CE loss, for
    ``grad_norm`` and ``zero_grad_frac``), then attacked by every (attack, eps). Rows come in the order
    the attacks and budgets were given, then one ``worst_case`` row per eps: an example counts as robust
    there only if every attack at that eps failed on it (its ``linf``/``l2``/``adv_pred`` are those of the
    first attack, in the given order, that fooled it, else of the first attack).

    Args:
        model: classifier taking [0, 1] images, returning logits; must already be on ``device``.
        data: a Dataset of (x, y) items, a DataLoader (its batches are re-chunked to ``batch_size``, so
            all three input types give the same numbers) or an (x, y) pair of tensors.
        attacks: one or many names in :data:`ATTACKS` / :class:`AttackSpec` s.
        eps: one or many budgets ([0, 1] pixel units, ``"8/255"`` accepted; L2 radii for L2 attacks).
            eps=0 reproduces clean accuracy exactly: the attack does not run.
        batch_size: examples per attack call.
        device: where the attack runs; None means the model's device.
        per_example: also return one row per (example index, attack, eps), worst_case included.
        return_examples: also return ``{(attack_label, eps): x_adv}`` (CPU tensors, worst_case included;
            they stay on the device until the end of the call, so budget device memory for them).
        seed: base seed; each (attack, eps, batch) runs under ``fork_rng`` seeded from it.
        autocast: on CUDA, bf16 autocast + channels_last for the model's forward (logits and the attack
            step stay float32); on CPU accepted, ignored and said in ``notes``.
        progress: tqdm bar over attacks x batches; None shows it when stderr is a terminal.
        input_gradients: compute ``grad_norm``/``zero_grad_frac`` (one backward per batch, shared by all
            attacks and budgets of the call); False skips it and leaves those columns NaN.

    Returns:
        ``summary`` with columns :data:`SUMMARY_COLUMNS`: accuracies and ``success_rate`` (fraction of
        clean-correct examples fooled) as fractions in [0, 1]; ``linf_mean``/``linf_max``/``l2_mean`` of
        the perturbation actually used, over all examples; ``grad_norm`` (mean per-example L2 norm of the
        input gradient at clean x) and ``zero_grad_frac`` (fraction of exactly-zero input gradients: a
        sign of saturation that masks gradient attacks) are model properties, repeated on every row.
        With ``per_example`` and/or ``return_examples``: a tuple ``(summary, per_example?, examples?)``
        in that order, holding only what was asked for.

    Raises:
        ValueError / TypeError: bad eps, attacks, options, data, shapes or value ranges.
        RuntimeError: a sanity check failed (norm bound, [0, 1], NaN, robust > clean) - a harness bug.

    Example:
        >>> frame = evaluate(model, (x, y), ["fgsm", attack("pgd", steps=20)], eps=[0, "8/255"])
    """
    specs = _as_specs(attacks)
    batch_size = _check_batch_size(batch_size)
    eps_list, eps_by_label = _resolve_eps(specs, eps)
    dev = _resolve_device([model], device)
    use_autocast, run_notes = _autocast_on(autocast, dev)
    batches, n_total = _batches(data, batch_size, order_matters=per_example or return_examples)
    wm = _Logits(model, device=dev, autocast=use_autocast)
    n_eps = len(eps_list)
    combos = [(spec, i) for spec in specs for i in range(n_eps)]  # (attack, eps index)

    labels: list[torch.Tensor] = []
    clean_pred: list[torch.Tensor] = []
    grad_norm: list[torch.Tensor] = []
    zero_grad: list[torch.Tensor] = []
    adv: dict[tuple[str, int], dict[str, list[torch.Tensor]]] = {}
    examples: dict[tuple[str, int], list[torch.Tensor]] = {}
    runners: dict[tuple[str, int], Runner] = {}
    budgets: dict[tuple[str, int], str] = {}
    notes: dict[tuple[str, int], list[str]] = {}

    total = _n_batches(n_total, batch_size)
    with _attack_state(model), _progress_bar(progress, None if total is None else total * len(combos), "attacks") as bar:
        for b, (xb, yb) in enumerate(batches):
            xb, yb = _to_device(xb, yb, dev)
            # clean pass with the input gradient of the per-example CE loss
            xg = xb.clone().requires_grad_(input_gradients)
            with torch.set_grad_enabled(input_gradients):
                out = wm(xg)  # (B, K)
                logits = out.detach()
                if b == 0:
                    _first_batch_checks(wm, xb, yb, logits)
                grad = (torch.autograd.grad(F.cross_entropy(out, yb, reduction="sum"), xg)[0] if input_gradients
                        else torch.full_like(xb, float("nan")))
            if b == 0:
                _check_l2_radius(specs, eps_by_label, int(np.prod(xb.shape[1:])))
                for spec, i in combos:
                    e = eps_by_label[spec.label][i]
                    key = (spec.label, i)
                    if e == 0:
                        budgets[key] = _budget(spec, eps=e, num_classes=logits.shape[1])
                        notes[key] = ["eps=0: clean evaluation, attack not run"]
                    else:
                        runners[key], budgets[key], notes[key] = _make_runner(
                            spec, e, wm, num_classes=logits.shape[1], seed=_spec_seed(seed, spec.label, e))
            pred = logits.argmax(1)  # (B,)
            correct = pred == yb
            labels.append(yb)
            clean_pred.append(pred)
            gflat = grad.flatten(1)  # (B, C*H*W)
            grad_norm.append(gflat.norm(dim=1))
            zero_grad.append((gflat == 0).all(1))

            for i in range(n_eps):
                per_attack = []
                for spec in specs:
                    key = (spec.label, i)
                    e = eps_by_label[spec.label][i]
                    if e == 0:
                        x_adv, adv_pred = xb, pred
                    else:
                        x_adv = _run_seeded(runners[key], xb, yb, seed=_batch_seed(seed, spec.label, e, b), device=dev)
                        with torch.no_grad():
                            adv_pred = wm(x_adv).argmax(1)
                    st = _perturbation(x_adv, xb)
                    st["adv_pred"] = adv_pred
                    st["robust"] = correct & (adv_pred == yb)
                    rec = adv.setdefault(key, {})
                    for k, v in st.items():
                        rec.setdefault(k, []).append(v)
                    if return_examples:
                        examples.setdefault(key, []).append(x_adv)
                    per_attack.append((st, x_adv))
                    if bar is not None:
                        bar.update(1)
                # worst case over attacks at this eps: the first attack (in order) that fooled the example
                robust_all = torch.stack([st["robust"] for st, _ in per_attack])  # (A, B)
                first = (~robust_all).to(torch.uint8).argmax(0)  # (B,) index of the first success, else 0
                rec = adv.setdefault((WORST_CASE, i), {})
                for k in ("linf", "l2", "adv_pred", "lo", "hi", "nan"):
                    stacked = torch.stack([st[k] for st, _ in per_attack])  # (A, B)
                    rec.setdefault(k, []).append(stacked.gather(0, first[None]).squeeze(0))
                rec.setdefault("robust", []).append(robust_all.all(0))
                if return_examples:
                    xs = torch.stack([xa for _, xa in per_attack])  # (A, B, C, H, W)
                    examples.setdefault((WORST_CASE, i), []).append(xs[first, torch.arange(len(first), device=dev)])

    if not labels:
        raise ValueError("data is empty; give at least one (x, y) example")
    # one host transfer at the end
    y_all = torch.cat(labels).cpu()
    pred_all = torch.cat(clean_pred).cpu()
    clean_all = pred_all == y_all
    gnorm = torch.cat(grad_norm).cpu()
    zgrad = torch.cat(zero_grad).cpu()
    host = {key: {k: torch.cat(v).cpu() for k, v in rec.items()} for key, rec in adv.items()}
    n = len(y_all)
    grad_mean, zero_frac = (_mean(gnorm), _mean(zgrad)) if input_gradients else (float("nan"), float("nan"))
    if zero_frac > 0:
        logger.info("%.1f%% of examples have an exactly zero input gradient at clean x", 100 * zero_frac)

    rows = []
    pe_parts = []
    keys = [(spec.label, spec.norm, i, eps_by_label[spec.label][i]) for spec, i in combos]
    for i in range(n_eps):
        norms = {s.norm for s in specs}
        keys.append((WORST_CASE, next(iter(norms)) if len(norms) == 1 else "mixed", i, eps_list[i]))
        budgets[(WORST_CASE, i)] = "every attack at this eps: " + ", ".join(s.label for s in specs)
        notes[(WORST_CASE, i)] = [] if len(norms) == 1 else [
            "attacks at this eps mix norms; the same number is an Linf eps for some and an L2 radius for others"]
    for label, norm, i, e in keys:
        st = host[(label, i)]
        if label != WORST_CASE:
            _sanity(label, norm, e, st, clean=clean_all, robust=st["robust"])
        elif bool(st["robust"].sum() > clean_all.sum()):
            raise RuntimeError(f"harness bug: worst case at eps={e:.6g} robust accuracy exceeds clean accuracy")
        n_clean = int(clean_all.sum())
        n_robust = int(st["robust"].sum())
        rows.append({
            "attack": label, "eps": e, "norm": norm, "budget": budgets[(label, i)],
            "clean_acc": n_clean / n, "robust_acc": n_robust / n,
            "success_rate": (n_clean - n_robust) / n_clean if n_clean else float("nan"),
            "linf_mean": _mean(st["linf"]), "linf_max": float(st["linf"].max()), "l2_mean": _mean(st["l2"]),
            "grad_norm": grad_mean, "zero_grad_frac": zero_frac, "n": n,
            "notes": _join(run_notes + notes[(label, i)]),
        })
        if per_example:
            pe_parts.append(pd.DataFrame({
                "index": np.arange(n), "attack": label, "eps": e, "label": y_all.numpy(),
                "clean_pred": pred_all.numpy(), "adv_pred": st["adv_pred"].numpy(),
                "clean_correct": clean_all.numpy(), "robust_correct": st["robust"].numpy(),
                "linf": st["linf"].numpy(), "l2": st["l2"].numpy(),
            }))
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    out: list[Any] = [summary]
    if per_example:
        out.append(pd.concat(pe_parts, ignore_index=True)[PER_EXAMPLE_COLUMNS])
    if return_examples:
        label_of = {(spec.label, i): (spec.label, eps_by_label[spec.label][i]) for spec, i in combos}
        label_of.update({(WORST_CASE, i): (WORST_CASE, eps_list[i]) for i in range(n_eps)})
        out.append({label_of[key]: torch.cat(v).cpu() for key, v in examples.items()})
    return out[0] if len(out) == 1 else tuple(out)


# ---------------------------------------------------------------------------------------------------------
# evaluate_transfer
# ---------------------------------------------------------------------------------------------------------

TRANSFER_COLUMNS = [
    "attack", "eps", "norm", "budget", "source_clean_acc", "target_clean_acc", "source_robust_acc",
    "transfer_robust_acc", "target_whitebox_robust_acc", "transfer_success_rate", "n", "notes",
]
TRANSFER_PER_EXAMPLE_COLUMNS = [
    "index", "attack", "eps", "label", "source_clean_pred", "target_clean_pred", "source_adv_pred",
    "transfer_pred", "target_whitebox_pred", "source_clean_correct", "target_clean_correct",
    "source_robust_correct", "transfer_robust_correct", "target_whitebox_robust_correct", "linf", "l2",
]


def evaluate_transfer(
    source: nn.Module,
    target: nn.Module,
    data: Any,
    attack: str | AttackSpec,
    eps: float | str | Iterable[float | str],
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    per_example: bool = False,
    seed: int = 0,
    autocast: bool = False,
    progress: bool | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Transfer attack: examples crafted white-box on ``source``, scored on ``target``.

    One direction per call: for a (baseline, SE) pair, call it twice, ``(base, se)`` and ``(se, base)``.
    The source and the target white-box runs use the seeds :func:`evaluate` would, so
    ``source_robust_acc`` equals ``evaluate(source, ...)`` and ``target_whitebox_robust_acc`` equals
    ``evaluate(target, ...)`` for the same attack, eps, seed and batch size.

    Args:
        source: the model the attack sees (white-box).
        target: the model the examples are scored on; on the same device as ``source``.
        data, attack, eps, batch_size, device, seed, autocast, progress: as in :func:`evaluate`
            (one attack here).
        per_example: also return one row per (example index, eps).

    Returns:
        One row per eps with columns :data:`TRANSFER_COLUMNS`: ``source_robust_acc`` (white-box on the
        source), ``transfer_robust_acc`` (target correct on clean and on the source's examples),
        ``target_whitebox_robust_acc`` (the same attack run on the target, for comparison),
        ``transfer_success_rate`` (fraction of target-clean-correct examples the transferred examples
        fool). With ``per_example``: ``(summary, per_example)``, per-example columns
        :data:`TRANSFER_PER_EXAMPLE_COLUMNS` (``linf``/``l2`` of the source's perturbation).
    """
    spec = _as_spec(attack)
    batch_size = _check_batch_size(batch_size)
    eps_list, _ = _resolve_eps([spec], eps)
    dev = _resolve_device([source, target], device)
    use_autocast, run_notes = _autocast_on(autocast, dev)
    batches, n_total = _batches(data, batch_size, order_matters=per_example)
    wms = {"source": _Logits(source, device=dev, autocast=use_autocast),
           "target": _Logits(target, device=dev, autocast=use_autocast)}
    acc: dict[str, list[torch.Tensor]] = {}
    runners: dict[tuple[str, int], Runner] = {}
    budgets: dict[int, str] = {}
    notes: dict[int, list[str]] = {}

    def put(key: str, value: torch.Tensor) -> None:
        acc.setdefault(key, []).append(value)

    total = _n_batches(n_total, batch_size)
    with _attack_state(source, target), _progress_bar(progress, None if total is None else total * len(eps_list),
                                                      "transfer") as bar:
        for b, (xb, yb) in enumerate(batches):
            xb, yb = _to_device(xb, yb, dev)
            with torch.no_grad():
                logits = {k: wm(xb) for k, wm in wms.items()}
            if b == 0:
                for k, wm in wms.items():
                    _first_batch_checks(wm, xb, yb, logits[k])
                if logits["source"].shape[1] != logits["target"].shape[1]:
                    raise ValueError(f"source and target disagree on the number of classes: "
                                     f"{logits['source'].shape[1]} vs {logits['target'].shape[1]}")
                _check_l2_radius([spec], {spec.label: eps_list}, int(np.prod(xb.shape[1:])))
                for i, e in enumerate(eps_list):
                    notes[i] = ["eps=0: clean evaluation, attack not run"] if e == 0 else []
                    budgets[i] = _budget(spec, eps=e, num_classes=logits["source"].shape[1])
                    if e > 0:
                        for k, wm in wms.items():
                            runners[(k, i)], _, extra = _make_runner(
                                spec, e, wm, num_classes=logits[k].shape[1], seed=_spec_seed(seed, spec.label, e))
                            notes[i] += extra
            pred_s, pred_t = logits["source"].argmax(1), logits["target"].argmax(1)
            put("label", yb)
            put("source_clean_pred", pred_s)
            put("target_clean_pred", pred_t)
            for i, e in enumerate(eps_list):
                if e == 0:
                    x_src, x_tgt = xb, xb
                    src_adv, transfer, tgt_wb = pred_s, pred_t, pred_t
                else:
                    bseed = _batch_seed(seed, spec.label, e, b)
                    x_src = _run_seeded(runners[("source", i)], xb, yb, seed=bseed, device=dev)
                    x_tgt = _run_seeded(runners[("target", i)], xb, yb, seed=bseed, device=dev)
                    with torch.no_grad():
                        src_adv = wms["source"](x_src).argmax(1)
                        transfer = wms["target"](x_src).argmax(1)
                        tgt_wb = wms["target"](x_tgt).argmax(1)
                put(f"source_adv_pred/{i}", src_adv)
                put(f"transfer_pred/{i}", transfer)
                put(f"target_whitebox_pred/{i}", tgt_wb)
                for tag, xa in (("src", x_src), ("tgt", x_tgt)):
                    for k, v in _perturbation(xa, xb).items():
                        put(f"{tag}_{k}/{i}", v)
                if bar is not None:
                    bar.update(1)

    if not acc:
        raise ValueError("data is empty; give at least one (x, y) example")
    host = {k: torch.cat(v).cpu() for k, v in acc.items()}
    y_all = host["label"]
    n = len(y_all)
    s_clean = host["source_clean_pred"] == y_all
    t_clean = host["target_clean_pred"] == y_all
    rows, parts = [], []
    for i, e in enumerate(eps_list):
        s_rob = s_clean & (host[f"source_adv_pred/{i}"] == y_all)
        tr_rob = t_clean & (host[f"transfer_pred/{i}"] == y_all)
        wb_rob = t_clean & (host[f"target_whitebox_pred/{i}"] == y_all)
        for tag, clean, rob in (("src", s_clean, s_rob), ("tgt", t_clean, wb_rob)):
            st = {k: host[f"{tag}_{k}/{i}"] for k in ("linf", "l2", "lo", "hi", "nan")}
            _sanity(f"{spec.label} on {'source' if tag == 'src' else 'target'}", spec.norm, e, st,
                    clean=clean, robust=rob)
        n_t = int(t_clean.sum())
        rows.append({
            "attack": spec.label, "eps": e, "norm": spec.norm, "budget": budgets[i],
            "source_clean_acc": _mean(s_clean), "target_clean_acc": _mean(t_clean),
            "source_robust_acc": _mean(s_rob), "transfer_robust_acc": _mean(tr_rob),
            "target_whitebox_robust_acc": _mean(wb_rob),
            "transfer_success_rate": (n_t - int(tr_rob.sum())) / n_t if n_t else float("nan"),
            "n": n, "notes": _join(run_notes + notes[i]),
        })
        if per_example:
            parts.append(pd.DataFrame({
                "index": np.arange(n), "attack": spec.label, "eps": e, "label": y_all.numpy(),
                "source_clean_pred": host["source_clean_pred"].numpy(),
                "target_clean_pred": host["target_clean_pred"].numpy(),
                "source_adv_pred": host[f"source_adv_pred/{i}"].numpy(),
                "transfer_pred": host[f"transfer_pred/{i}"].numpy(),
                "target_whitebox_pred": host[f"target_whitebox_pred/{i}"].numpy(),
                "source_clean_correct": s_clean.numpy(), "target_clean_correct": t_clean.numpy(),
                "source_robust_correct": s_rob.numpy(), "transfer_robust_correct": tr_rob.numpy(),
                "target_whitebox_robust_correct": wb_rob.numpy(),
                "linf": host[f"src_linf/{i}"].numpy(), "l2": host[f"src_l2/{i}"].numpy(),
            }))
    summary = pd.DataFrame(rows, columns=TRANSFER_COLUMNS)
    if per_example:
        return summary, pd.concat(parts, ignore_index=True)[TRANSFER_PER_EXAMPLE_COLUMNS]
    return summary
