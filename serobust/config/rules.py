"""The rules that cover every key of their kind: the error type, size limits, budget lists, attack tables.

Every number must be finite, every budget list non-empty and free of duplicates (``0.1`` and ``"1/10"`` are
the same budget), every attack table a registered attack with valid options (through the attack registry the
run uses). Violations raise :class:`ConfigError` naming the key (``section.key``) and what is allowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..eps import parse_eps
from ..errors import SerobustError

__all__ = ["ConfigError", "MAX_CONFIG_BYTES", "MAX_TEXT", "MAX_SEEDS", "MAX_BUDGETS", "MAX_SEED", "bounded_text",
           "budgets", "attack_spec", "positive"]


class ConfigError(SerobustError, ValueError):
    """A study configuration is invalid; the message names the key and what is allowed."""


MAX_CONFIG_BYTES = 1 << 20  # a config file's size
MAX_TEXT = 10_000  # characters of any string value (description, paths, sources): it is copied into reports
MAX_SEEDS = 1000
MAX_BUDGETS = 100  # budgets in one list
MAX_SEED = 2**31 - 1


def bounded_text(raw: Any, key: str) -> None:
    """Every string of the parsed file at most :data:`MAX_TEXT` characters (a description is copied into
    every report and every results.json)."""
    if isinstance(raw, dict):
        for k, v in raw.items():
            bounded_text(v, f"{key}.{k}" if key else str(k))
    elif isinstance(raw, list):
        for i, v in enumerate(raw):
            bounded_text(v, f"{key}[{i}]")
    elif isinstance(raw, str) and len(raw) > MAX_TEXT:
        raise ConfigError(f"{key} is {len(raw)} characters long; at most {MAX_TEXT} allowed (it is copied into "
                          "every report): shorten it or link to a longer text")

def budgets(values: Sequence[Any], key: str, *, upper: float | None = 1.0) -> tuple[float, ...]:
    """A non-empty list of distinct budgets in [0, 1] pixel units (``"8/255"`` strings allowed), at most
    :data:`MAX_BUDGETS` of them."""
    if len(values) > MAX_BUDGETS:
        raise ConfigError(f"{key} has {len(values)} budgets; at most {MAX_BUDGETS} allowed (a curve needs a dozen, "
                          "each budget multiplies the attacks' cost)")
    try:
        out = tuple(parse_eps(v, name=f"{key}[{i}]", upper=upper) for i, v in enumerate(values))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if not out:
        raise ConfigError(f"{key} is empty: give at least one budget")
    seen: dict[float, int] = {}
    for i, e in enumerate(out):
        if e in seen:
            raise ConfigError(f"{key}[{i}] = {values[i]!r} repeats {key}[{seen[e]}] = {values[seen[e]]!r} "
                              f"(both are {e:g}): give each budget once")
        seen[e] = i
    return out


def attack_spec(table: Any, key: str):
    """The AttackSpec of a config attack table, validated by the attack registry the run uses."""
    from ..attacks import attack

    if not isinstance(table, dict) or not isinstance(table.get("name"), str):
        raise ConfigError(f"{key} must be a table with a 'name' key, e.g. {{ name = \"pgd\", steps = 10 }}; got {table!r}")
    options = {k: v for k, v in table.items() if k != "name"}
    try:
        return attack(table["name"], **options)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{key} ({table['name']}): {e}") from None


def positive(section: str, **values: float) -> None:
    for name, v in values.items():
        if not v >= 1:
            raise ConfigError(f"{section}.{name} = {v!r}: must be >= 1")
