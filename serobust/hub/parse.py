"""Members and pairs from their config form (a ``"<library>:<name>"`` string or a table), validated: keys,
types, paths resolved, the name checked against its library, a pair's members sharing one image geometry."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .preprocessing import pair_geometry
from .sources import check_name
from .specs import INTERPOLATIONS, MEMBER_KEYS, SOURCES, MemberError, MemberSpec, PairSpec

__all__ = ["parse_member", "parse_pair"]


def _floats(value: Any, key: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise MemberError(f"{key} = {value!r}: give one number per input channel, e.g. [0.485, 0.456, 0.406]")
    return tuple(float(v) for v in value)


def parse_member(value: Any, key: str, *, base_dir: Path | None = None) -> MemberSpec:
    """A member from its config form: ``"timm:resnet50.a1_in1k"`` or a table ``{ source, weights, mean, std,
    input_size, crop_pct, interpolation }``; checked against the library's registry (no weights are read).

    Raises:
        MemberError: the message names ``key`` and what is allowed.
    """
    table = {"source": value} if isinstance(value, str) else value
    if not isinstance(table, Mapping):
        raise MemberError(f"{key} = {value!r}: give \"<library>:<name>\" or a table {{ source = ..., weights = ... }}")
    unknown = sorted(set(table) - set(MEMBER_KEYS))
    if unknown:
        raise MemberError(f"{key}: unknown key(s) {unknown}; allowed {list(MEMBER_KEYS)}")
    source = table.get("source")
    if not isinstance(source, str) or ":" not in source or source.split(":", 1)[0] not in SOURCES \
            or not source.split(":", 1)[1]:
        raise MemberError(f"{key}.source = {source!r}: give <library>:<name> with library one of {list(SOURCES)} "
                          "(e.g. \"timm:seresnet50.a1_in1k\", \"torchscript:model.pt\")")
    weights = table.get("weights", "")
    if not isinstance(weights, str):
        raise MemberError(f"{key}.weights = {weights!r}: give the path of a weights-only state dict file")
    library, name = source.split(":", 1)
    if library == "torchscript":
        name = _resolve(name, base_dir)
        source = f"torchscript:{name}"
        if weights:
            raise MemberError(f"{key}.weights: a TorchScript file carries its weights; remove weights")
    if weights:
        weights = _resolve(weights, base_dir)
    spec = MemberSpec(
        source=source, weights=weights,
        mean=_floats(table["mean"], f"{key}.mean") if "mean" in table else None,
        std=_floats(table["std"], f"{key}.std") if "std" in table else None,
        input_size=table.get("input_size"), crop_pct=table.get("crop_pct"), interpolation=table.get("interpolation"))
    if spec.input_size is not None and (isinstance(spec.input_size, bool) or not isinstance(spec.input_size, int)
                                        or spec.input_size < 8):
        raise MemberError(f"{key}.input_size = {spec.input_size!r}: give the side of the square input in pixels")
    if spec.crop_pct is not None and (isinstance(spec.crop_pct, bool) or not isinstance(spec.crop_pct, (int, float))
                                      or not 0.1 <= spec.crop_pct <= 1):
        raise MemberError(f"{key}.crop_pct = {spec.crop_pct!r}: a fraction in [0.1, 1] (e.g. 0.875)")
    if spec.interpolation is not None and spec.interpolation not in INTERPOLATIONS:
        raise MemberError(f"{key}.interpolation = {spec.interpolation!r}: allowed {list(INTERPOLATIONS)}")
    if spec.std is not None and any(s <= 0 for s in spec.std):
        raise MemberError(f"{key}.std = {list(spec.std)}: every value must be > 0")
    check_name(spec, key)
    return spec


def _resolve(path: str, base_dir: Path | None) -> str:
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return str(p)


def parse_pair(value: Any, key: str, *, base_dir: Path | None = None) -> PairSpec:
    """A pair from its config table ``{ name, baseline, se }``."""
    if not isinstance(value, Mapping) or not {"baseline", "se"} <= set(value):
        raise MemberError(f"{key} must be a table {{ name = \"a1\", baseline = \"timm:resnet50.a1_in1k\", "
                          f"se = \"timm:seresnet50.a1_in1k\" }}; got {value!r}")
    extra = sorted(set(value) - {"name", "baseline", "se"})
    if extra:
        raise MemberError(f"{key}: unknown key(s) {extra}; allowed name, baseline, se")
    name = value.get("name", "")
    if not isinstance(name, str):
        raise MemberError(f"{key}.name = {name!r}: give a short label such as \"a1\"")
    pair = PairSpec(name, parse_member(value["baseline"], f"{key}.baseline", base_dir=base_dir),
                    parse_member(value["se"], f"{key}.se", base_dir=base_dir))
    if pair.se.library == "torchscript":
        raise MemberError(f"{key}.se is a TorchScript file: its modules have no Python class, so the probe cannot "
                          "find its SE blocks; give the SE member as source = \"<library>:<architecture>\" with "
                          "weights = \"<state dict file>\"")
    pair_geometry(pair, key)
    return pair
