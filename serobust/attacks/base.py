"""What an attack is to serobust: one :class:`Attack` subclass per family, a registry, and named specs.

An attack family says everything the harness, the report and the tests need about it in one class: its
``name``, its ``defaults`` (torchattacks' option names), one validation ``rule`` per option (from
:mod:`~serobust.attacks.rules`, re-exported here), its ``norm`` (fixed, or read from a ``norm`` option),
a ``budget`` description (the ``budget`` column of the results), a ``runner`` that turns a model and a
budget into ``(x, y) -> x_adv``, its ``title`` (``display`` names a configured attack in the report,
``iFGSM-2``) and ``cheap`` options for unit tests. ``@register_attack`` makes the class available by
name everywhere an attack is asked for (``evaluate(model, data, "my_attack", ...)``,
``attack("my_attack", steps=3)``, study configs, ``masking_diagnostics(extra_attacks=...)``)::

    import torchattacks
    from serobust.attacks import Attack, register_attack, int_rule

    @register_attack
    class TwoStepFGSM(Attack):
        '''Two signed-gradient steps of eps / 2 (a cheap iterative baseline).'''
        name = "fgsm2"
        title = "iFGSM"  # the report writes fgsm2(steps=3) as "iFGSM-3"
        defaults = {"steps": 2}
        rules = {"steps": int_rule(1)}
        cheap = {"steps": 1}

        def budget(self, config, *, eps, num_classes):
            return f"{config['steps']} steps of eps/{config['steps']}, no random start"

        def runner(self, model, config, *, eps, num_classes, seed):
            atk = torchattacks.PGD(model, eps=eps, alpha=eps / config["steps"], steps=config["steps"],
                                   random_start=False)
            return atk, []

A module dropped into the ``serobust/attacks/`` folder registers itself on ``import serobust``.

**Minimum-norm attacks** (``minimum_norm = True``, e.g. Carlini-Wagner L2) look for the smallest
perturbation that fools and have no budget: the harness runs them once per batch (``eps=None`` in
``runner``) and scores them at each eps by whether the perturbation found is within eps (measured in
``norm``); an example whose perturbation is larger, or that the attack did not fool, keeps its clean input.

:class:`AttackSpec` (built with :func:`attack`) is one attack with its options: validated at
construction, hashable, labelled ``name(k=v, ...)`` in every result table (``AttackSpec.from_label``
reads a label back) and named for readers by ``display``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import nn

from ..names import WORST_CASE

# the option rules, re-exported so that an attack file needs one import (``from .base import ...``)
from .rules import (
    Rule,
    alpha_rule,
    bool_rule,
    choice_rule,
    float_rule,
    int_rule,
    optional,
    unit_rule,
)

__all__ = [
    "Attack", "ATTACKS", "AttackSpec", "attack", "register_attack", "unregister_attack", "implementation",
    "common_display", "NORMS", "Rule", "Runner", "int_rule", "bool_rule", "alpha_rule", "unit_rule", "float_rule",
    "choice_rule", "optional",
]

#: The threat models an eps can be measured in.
NORMS = ("Linf", "L2")

#: ``run(x, y) -> x_adv``: one attack at one budget on one batch (any device, float32 in [0, 1]).
Runner = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# ---------------------------------------------------------------------------------------------------------
# The base class of an attack family
# ---------------------------------------------------------------------------------------------------------


class Attack:
    """Base class of an attack family; subclass it, fill in the class attributes, decorate with
    :func:`register_attack`.

    Attributes:
        name: the registry name (lower case, ``[a-z][a-z0-9_]*``); the ``attack`` column of results.
        defaults: every option with its default value, torchattacks' option names where they exist.
        rules: one :data:`Rule` per option in ``defaults`` (see :func:`int_rule` and friends).
        norm: ``"Linf"`` or ``"L2"``, the norm eps is measured in; None reads it from the ``norm`` option.
        minimum_norm: the attack minimizes the perturbation instead of respecting a budget (see the
            module docstring): it runs once per batch and is scored at each eps.
        title: the short name a reader knows (``"PGD"``), from which :meth:`display` writes the name of
            one configured attack in the report; a class that does not set it gets ``name.upper()``.
        cheap: options that make the attack fast enough for unit tests on 8x8 digits (few steps or
            queries); the tests run every registered attack with them. Checked by the rules at registration.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[Mapping[str, Any]] = {}
    rules: ClassVar[Mapping[str, Rule]] = {}
    norm: ClassVar[str | None] = "Linf"
    minimum_norm: ClassVar[bool] = False
    title: ClassVar[str] = ""
    cheap: ClassVar[Mapping[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "title" not in vars(cls):  # a subclass under another name must not borrow its parent's title
            cls.title = str(cls.name).upper()

    def display(self, config: Mapping[str, Any]) -> str:
        """The reader's name of the attack with ``config`` (every option, as :attr:`AttackSpec.config`):
        :attr:`title` with the options most attacks share (:func:`common_display`: ``PGD-10``,
        ``PGD-50, 5 restarts``, ``PGD-10 (no random start)``). Override it when other options name the
        attack (APGD's loss, AutoAttack's version)."""
        return common_display(self.title, config)

    def resolve(self, config: dict[str, Any]) -> dict[str, Any]:
        """Fill options whose default depends on other options (AutoAttack's presets); ``config`` holds
        every option (defaults and given values). Returns the completed config."""
        return config

    def validate(self, config: Mapping[str, Any], *, label: str) -> None:
        """Cross-option checks at spec construction: raise ValueError for an impossible combination,
        warn for a wasteful one. Single options are already checked by ``rules``."""

    def norm_of(self, config: Mapping[str, Any]) -> str:
        """The norm of the threat model for this config."""
        return self.norm or config["norm"]

    def budget(self, config: Mapping[str, Any], *, eps: float | None, num_classes: int | None) -> str:
        """The budget in words, with eps-dependent numbers when ``eps`` is given (None: in general)."""
        return ", ".join(f"{k}={v}" for k, v in config.items()) or "no options"

    def runner(self, model: nn.Module, config: Mapping[str, Any], *, eps: float | None, num_classes: int,
               seed: int) -> tuple[Runner, list[str]]:
        """Build ``(x, y) -> x_adv`` for one budget, reused for every batch of a call.

        Args:
            model: the classifier as the attack must see it (float32 logits; eval mode and frozen
                parameters are already set and restored by the harness).
            config: every option, defaults filled in (:attr:`AttackSpec.config`).
            eps: the budget in ``norm`` (pixel units); None for minimum-norm attacks.
            num_classes: the model's number of outputs.
            seed: a seed for attacks that take one (torchattacks' APGD, Square); the harness also seeds
                the global RNG before every batch, so attacks drawing from it are reproducible too.

        Returns:
            The runner and notes for the ``notes`` column (an option ignored or capped, ...).
        """
        raise NotImplementedError


def common_display(title: str, config: Mapping[str, Any]) -> str:
    """``title`` with the options most attacks share, the way papers write them: ``-<steps>`` when there
    is a ``steps`` option, ``, <n> restarts`` when ``n_restarts`` > 1, `` (no random start)`` when
    ``random_start`` is False. The default of :meth:`Attack.display`."""
    text = title if config.get("steps") is None else f"{title}-{config['steps']}"
    restarts = int(config.get("n_restarts") or 1)
    if restarts > 1:
        text += f", {restarts} restarts"
    if config.get("random_start", True) is False:
        text += " (no random start)"
    return text


# ---------------------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------------------

_REGISTRY: dict[str, Attack] = {}
_DEFAULTS: dict[str, Mapping[str, Any]] = {}

#: Registered attack names -> their default options (read-only, live: attacks registered later appear).
ATTACKS: Mapping[str, Mapping[str, Any]] = MappingProxyType(_DEFAULTS)

_NAME = re.compile(r"[a-z][a-z0-9_]*")


def register_attack(cls: type[Attack] | None = None, *, replace: bool = False) -> Any:
    """Class decorator: make an :class:`Attack` subclass available by its ``name``.

    ``@register_attack`` or ``@register_attack(replace=True)`` (to redefine an attack, e.g. when a
    notebook cell runs again). The class is checked here, so a mistake surfaces at definition time:
    a rule for every default (and no rule without a default), every default passing its rule, a norm.

    Raises:
        TypeError: not an Attack subclass, no ``runner``, rules and defaults disagree.
        ValueError: a bad or reserved name, a bad norm, a default its rule rejects, or a name already
            registered (without ``replace=True``).
    """
    if cls is None:
        return lambda c: register_attack(c, replace=replace)
    if not (isinstance(cls, type) and issubclass(cls, Attack)):
        raise TypeError(f"register_attack takes a subclass of serobust.attacks.Attack, got {cls!r}")
    name = cls.name
    where = f"attack class {cls.__name__}"
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name == WORST_CASE:
        raise ValueError(f"{where}: name must be a lower-case identifier (e.g. 'my_pgd') other than "
                         f"{WORST_CASE!r}, got {name!r}")
    if cls.runner is Attack.runner:
        raise TypeError(f"{where} ({name!r}) must define runner(self, model, config, *, eps, num_classes, seed)")
    missing, extra = set(cls.defaults) - set(cls.rules), set(cls.rules) - set(cls.defaults)
    if missing or extra:
        raise TypeError(f"{where} ({name!r}): every option needs a default and a rule; "
                        f"no rule for {sorted(missing)}, no default for {sorted(extra)}")
    for key, value in cls.defaults.items():
        try:
            cls.rules[key](key, value)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where} ({name!r}): the default of {key!r} fails its own rule: {e}") from None
    if cls.norm is None and "norm" not in cls.defaults:
        raise ValueError(f"{where} ({name!r}): norm=None means 'from the norm option', but there is none")
    if cls.norm is not None and cls.norm not in NORMS:
        raise ValueError(f"{where} ({name!r}): norm must be one of {list(NORMS)} or None, got {cls.norm!r}")
    if not isinstance(cls.title, str) or not cls.title.strip():
        raise ValueError(f"{where} ({name!r}): title must be the attack's short display name (e.g. 'PGD'), "
                         f"got {cls.title!r}")
    for key, value in cls.cheap.items():
        if key not in cls.rules:
            raise TypeError(f"{where} ({name!r}): cheap option {key!r} is not an option; options: "
                            f"{', '.join(cls.rules) or 'none'}")
        try:
            cls.rules[key](key, value)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where} ({name!r}): the cheap value of {key!r} fails its rule: {e}") from None
    if name in _REGISTRY and not replace:
        raise ValueError(f"attack {name!r} is already registered (by {type(_REGISTRY[name]).__name__}); "
                         "pick another name or pass replace=True")
    _REGISTRY[name] = cls()
    _DEFAULTS[name] = MappingProxyType(dict(cls.defaults))
    return cls


def unregister_attack(name: str) -> None:
    """Remove an attack from the registry (specs built from it stop working). KeyError if unknown."""
    if name not in _REGISTRY:
        raise KeyError(f"attack {name!r} is not registered; registered: {', '.join(_REGISTRY)}")
    del _REGISTRY[name]
    del _DEFAULTS[name]


def _code_text(obj: Any) -> str:
    """What a function's bytecode does (instructions, constants, names), recursively through nested code."""
    code = getattr(obj, "__code__", None) or getattr(getattr(obj, "__func__", None), "__code__", None)
    if code is None:
        return repr(obj) if isinstance(obj, (str, int, float, bool, tuple, type(None))) else type(obj).__name__

    def text(c: Any) -> str:
        consts = [text(k) if hasattr(k, "co_code") else repr(k) for k in c.co_consts]
        return f"{c.co_code.hex()}|{consts}|{c.co_names}"

    return text(code)


_IDENTITIES: dict[type, str] = {}


def attack_identity(name: str) -> str:
    """The implementation registered under ``name``: ``module.qualname:hash`` of its class's code (its
    source's syntax tree without docstrings, comments or layout; its bytecode when no source exists), over
    every Attack class it inherits from. Editing a docstring or a comment keeps the identity, so cached
    results stay valid; any change of what the class does gives a new one.

    Part of the keys of the study tasks that run the attack, so a replacement registered with
    ``register_attack(..., replace=True)`` never reuses the results of the implementation it replaced,
    and a worker process can tell that it resolves another implementation than the driver did.
    """
    import hashlib
    import inspect

    cls = type(_REGISTRY[_canonical_name(name)])
    if cls not in _IDENTITIES:
        h = hashlib.sha256()
        for klass in cls.__mro__:
            if klass is Attack or not issubclass(klass, Attack):
                continue
            try:
                h.update(_code_of(inspect.getsource(klass)).encode())
            except (OSError, TypeError):  # defined in exec'd code: what its methods' bytecode does
                for key, value in sorted(vars(klass).items()):
                    h.update(f"{key}={_code_text(value)}\n".encode())
        _IDENTITIES[cls] = f"{cls.__module__}.{cls.__qualname__}:{h.hexdigest()[:16]}"
    return _IDENTITIES[cls]


def _code_of(source: str) -> str:
    """What a class's source does: its syntax tree with every docstring dropped (``ast.dump`` keeps no
    comments or layout)."""
    import ast
    import textwrap

    tree = ast.parse(textwrap.dedent(source))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def _canonical_name(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"an attack is a name (str) or an AttackSpec, got {type(name).__name__}: {name!r}")
    key = name.strip().lower().replace("-", "_")
    if key == WORST_CASE:
        raise ValueError(f"{WORST_CASE!r} is the summary row evaluate() adds, not an attack; valid names: "
                         f"{', '.join(ATTACKS)}")
    if key not in _REGISTRY:
        raise ValueError(f"unknown attack {name!r}; valid names: {', '.join(ATTACKS)}")
    return key


def implementation(name: str) -> Attack:
    """The registered :class:`Attack` instance for ``name`` (as normalized by :func:`attack`)."""
    return _REGISTRY[_canonical_name(name)]


# ---------------------------------------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------------------------------------


def _check_options(name: str, options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    rules = _REGISTRY[name].rules
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


_LABEL_FORM = "an attack label is a name or a call with literal keyword options, e.g. 'pgd' or 'pgd(steps=10)'"


def _parse_label(text: Any) -> tuple[str, dict[str, Any]]:
    """``(name, options)`` of a label as :attr:`AttackSpec.label` writes it, parsed as a Python call."""
    if not isinstance(text, str):
        raise TypeError(f"{_LABEL_FORM}; got {type(text).__name__}: {text!r}")
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise ValueError(f"{_LABEL_FORM}; got {text!r}") from None
    if isinstance(node, ast.Name):
        return node.id, {}
    keys = [kw.arg for kw in getattr(node, "keywords", ())]
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.args
            and None not in keys and len(set(keys)) == len(keys)):  # no **options, no option twice
        raise ValueError(f"{_LABEL_FORM}; got {text!r}")
    try:
        return node.func.id, {str(kw.arg): ast.literal_eval(kw.value) for kw in node.keywords}
    except (ValueError, TypeError, SyntaxError):
        raise ValueError(f"{_LABEL_FORM}; got {text!r}, whose option values are not all literals") from None


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
        try:
            opts = dict(opts)
        except (TypeError, ValueError):
            raise TypeError(f"AttackSpec options must be a mapping or (key, value) pairs, got {opts!r}") from None
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "options", _check_options(name, opts))
        self.implementation.validate(self.config, label=self.label)

    @property
    def implementation(self) -> Attack:
        """The registered :class:`Attack` that runs this spec."""
        return _REGISTRY[self.name]

    @property
    def config(self) -> dict[str, Any]:
        """Every option with defaults filled in (and derived defaults resolved, e.g. AutoAttack presets)."""
        impl = self.implementation
        return impl.resolve({**impl.defaults, **dict(self.options)})

    @property
    def label(self) -> str:
        """``name`` or ``name(k=v, ...)`` with the options given; the ``attack`` column of results."""
        if not self.options:
            return self.name
        return f"{self.name}(" + ", ".join(f"{k}={_fmt(v)}" for k, v in self.options) + ")"

    @property
    def display(self) -> str:
        """The reader's name of this attack (``PGD-10``, ``APGD-DLR-20``, ``AutoAttack (fast)``): the report's."""
        return self.implementation.display(self.config)

    @classmethod
    def from_label(cls, text: str) -> AttackSpec | None:
        """The spec whose :attr:`label` is ``text``: the inverse of ``label``, ``from_label(s.label) == s``
        (floats are read back with the 6 significant digits the label wrote).

        Returns None when ``text`` names no registered attack (a table of another version, a notebook's
        attack, the ``worst_case`` row): the caller shows the label as it is.

        Raises:
            ValueError: ``text`` is not a label (``name`` or ``name(key=literal, ...)``), or an option's
                value is out of range for the registered attack.
            TypeError: ``text`` is not a string, or names an option the registered attack does not have.
        """
        name, options = _parse_label(text)
        if name.lower() not in _REGISTRY:
            return None
        return cls(name, tuple(options.items()))

    @property
    def norm(self) -> str:
        """The threat model's norm: ``"Linf"`` or ``"L2"`` (eps is measured in it)."""
        return self.implementation.norm_of(self.config)

    @property
    def minimum_norm(self) -> bool:
        """Whether the attack minimizes the perturbation (scored per eps) rather than respecting eps."""
        return self.implementation.minimum_norm

    @property
    def budget(self) -> str:
        """The attack's budget in words (the ``budget`` column gives it with eps-dependent numbers)."""
        return self.implementation.budget(self.config, eps=None, num_classes=None)

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
    preset (0 skips a component). ``noise``: random-sign control, ``n_samples=1``. ``cw``: Carlini-Wagner
    L2, minimum-norm, ``c=1``, ``kappa=0``, ``steps=50``, ``lr=0.01``.

    Raises:
        ValueError: unknown attack name, or an option value out of range (the message says the range).
        TypeError: unknown option (the message lists the valid ones) or an option of the wrong type.

    Example:
        >>> attack("pgd", steps=50).label
        'pgd(steps=50)'
    """
    return AttackSpec(name, tuple(options.items()))


def as_spec(value: str | AttackSpec) -> AttackSpec:
    """An :class:`AttackSpec` from a name or a spec."""
    if isinstance(value, AttackSpec):
        return value
    return AttackSpec(_canonical_name(value))


def as_specs(attacks: str | AttackSpec | Iterable[str | AttackSpec]) -> list[AttackSpec]:
    """Specs from one or many names/specs; raises for an empty list or an attack listed twice."""
    if isinstance(attacks, (str, AttackSpec)):
        specs = [as_spec(attacks)]
    else:
        try:
            specs = [as_spec(a) for a in attacks]
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
