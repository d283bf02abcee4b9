"""Attacks: named, validated attack specs on torchattacks, a harness that evaluates them, and a registry.

Three entry points, all taking any ``nn.Module`` classifier that maps [0, 1] images to logits:

* :func:`generate` -> adversarial examples for one attack at one budget (what probes and metrics use);
* :func:`evaluate` -> an :class:`Evaluation`: ``summary``, one row per (attack, eps) plus a ``worst_case``
  row per eps; optionally ``per_example``, one row per (example, attack, eps) so that later statistics can
  pair examples across models, and ``examples``, the adversarial images;
* :func:`evaluate_transfer` -> examples crafted on one model, scored on another (an :class:`Evaluation` too).

Attacks are named (``"pgd"``) or built with options (``attack("pgd", steps=50, n_restarts=5)``); options
keep torchattacks' names. Wherever an attack is asked for, a name or an :class:`AttackSpec` will do.

The package, one idea per module:

* ``base``: the :class:`Attack` base class, :func:`register_attack`, :data:`ATTACKS`,
  :class:`AttackSpec`, :func:`attack`; ``rules``: the option rules (:func:`int_rule`, ...);
* one module per attack family: ``fgsm``, ``pgd``, ``pgd_l2``, ``apgd`` (``apgd_ce``), ``square``,
  ``autoattack``, ``noise`` (a random-sign control), ``cw`` (Carlini-Wagner L2, minimum-norm), and the
  adaptive attacks: ``se_gates`` (``excitation_pgd``, ``frozen_gate_pgd``: an SE model) and
  ``detector_pgd`` (a classifier with its fitted detector, ``DetectedClassifier``), whose random starts
  come from ``starts``;
* ``harness`` (:func:`generate`, :func:`evaluate`), ``transfer`` (:func:`evaluate_transfer`), both over
  ``session`` (:class:`~.session.AttackSession`: device, model wrappers, batches, seeding, ledger,
  progress, notes) and returning ``evaluation`` (:class:`Evaluation`); their parts: ``runs`` (seeding, one
  attack at every eps), ``batches`` (data and input checks), ``budgets`` (eps per norm), ``checks``
  (result checks), ``restarts`` (best of several runs).

**Adding an attack** is one file: put a module defining a registered :class:`Attack` subclass into this
folder (every module here is imported with the package), or define and register it anywhere, e.g. in a
notebook, before using it by name. See :mod:`serobust.attacks.base` for an example.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..names import WORST_CASE
from .base import (
    ATTACKS,
    NORMS,
    Attack,
    AttackSpec,
    Runner,
    attack,
    attack_identity,
    register_attack,
    unregister_attack,
)
from .evaluation import Evaluation
from .harness import PER_EXAMPLE_COLUMNS, SUMMARY_COLUMNS, evaluate, generate
from .rules import Rule, alpha_rule, bool_rule, choice_rule, float_rule, int_rule, optional, unit_rule
from .transfer import TRANSFER_COLUMNS, TRANSFER_PER_EXAMPLE_COLUMNS, evaluate_transfer

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackSpec",
    "attack",
    "attack_identity",
    "register_attack",
    "unregister_attack",
    "generate",
    "evaluate",
    "evaluate_transfer",
    "Evaluation",
    "SUMMARY_COLUMNS",
    "PER_EXAMPLE_COLUMNS",
    "TRANSFER_COLUMNS",
    "TRANSFER_PER_EXAMPLE_COLUMNS",
    "WORST_CASE",
    "NORMS",
    "Rule",
    "Runner",
    "int_rule",
    "bool_rule",
    "float_rule",
    "alpha_rule",
    "unit_rule",
    "choice_rule",
    "optional",
]

# The built-in families register in this order (the order of ATTACKS and of "valid names" in messages);
# any other module in the folder follows, alphabetically.
_FIRST = ("fgsm", "pgd", "pgd_l2", "apgd", "square", "autoattack", "noise", "cw", "se_gates", "detector_pgd")


def _import_all() -> None:
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    for name in sorted(names, key=lambda n: (_FIRST.index(n) if n in _FIRST else len(_FIRST), n)):
        importlib.import_module(f"{__name__}.{name}")


_import_all()
