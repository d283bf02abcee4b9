"""The architecture registry: a name -> factory ``f(*, num_classes, in_channels, se, reduction, min_hidden, mean,
std) -> nn.Module``; baseline and SE twin are one factory, one argument (``se``) apart.

Each family module registers its names with :func:`register_model`; :func:`build_pair` makes a baseline and its
twin share every common parameter and buffer bit for bit at init.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .se import SqueezeExcite

__all__ = ["ARCHITECTURES", "register_model", "build_model", "build_pair"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
ARCHITECTURES: list[str] = []  # kept in registration order, updated by register_model


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a factory to the registry under ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is already registered")
        if not isinstance(name, str) or not name:
            raise ValueError(f"an architecture name must be a non-empty string, got {name!r}")
        _REGISTRY[name] = fn
        ARCHITECTURES.append(name)
        return fn

    return deco


def _default_stats(in_channels: int, mean, std) -> tuple[Sequence[float], Sequence[float]]:
    mean = tuple(mean) if mean is not None else (0.5,) * in_channels
    std = tuple(std) if std is not None else (0.5,) * in_channels
    if len(mean) != in_channels or len(std) != in_channels:
        raise ValueError(
            f"mean/std need one value per input channel ({in_channels}), got {len(mean)} and {len(std)}"
        )
    return mean, std


def build_model(
    arch: str,
    num_classes: int,
    in_channels: int = 3,
    *,
    se: bool = False,
    reduction: float = 16,
    min_hidden: int = 8,
    seed: int | None = 0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> nn.Module:
    """Build one registered model on the CPU; initialization is seeded without touching any global RNG state.

    Only the CPU generator is seeded (initialization runs on the CPU), inside ``fork_rng``, which restores it
    afterwards; ``torch.manual_seed`` would also reseed every GPU's generator, which ``fork_rng(devices=[])``
    does not restore.
    """
    if arch not in _REGISTRY:
        raise ValueError(f"unknown architecture {arch!r}; valid names: {', '.join(ARCHITECTURES)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    mean, std = _default_stats(in_channels, mean, std)
    kw = dict(num_classes=num_classes, in_channels=in_channels, se=se, reduction=reduction,
              min_hidden=min_hidden, mean=mean, std=std)
    if seed is None:
        return _REGISTRY[arch](**kw)
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)  # the CPU generator only
        return _REGISTRY[arch](**kw)


def build_pair(
    arch: str,
    num_classes: int,
    in_channels: int = 3,
    reduction: float = 16,
    seed: int = 0,
    *,
    min_hidden: int = 8,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> tuple[nn.Module, nn.Module]:
    """Build a baseline and its SE twin, identical except for the SE modules.

    Both are seeded from ``seed``; the twin then receives the baseline's value for every parameter and
    buffer they share, bit for bit, so any difference after training comes from the SE gates (and the
    gradients they route), not from initialization. The SE gates' own weights are seeded from ``seed``
    too, so a pair is reproducible, and pairs with different ``reduction`` share the same baseline.

    Returns:
        ``(baseline, se_model)``, both in training mode on the CPU.
    """
    baseline = build_model(arch, num_classes, in_channels, se=False, seed=seed, mean=mean, std=std,
                           min_hidden=min_hidden, reduction=reduction)
    twin = build_model(arch, num_classes, in_channels, se=True, seed=seed, mean=mean, std=std,
                       min_hidden=min_hidden, reduction=reduction)
    result = twin.load_state_dict(baseline.state_dict(), strict=False)
    se_names = {n for n, m in twin.named_modules() if isinstance(m, SqueezeExcite)}
    stray = [k for k in result.missing_keys if k.rsplit(".", 2)[0] not in se_names]
    if result.unexpected_keys or stray:  # a registry bug, not a user error
        raise RuntimeError(f"baseline and SE twin of {arch!r} differ outside the SE modules: "
                           f"{result.unexpected_keys + stray}")
    return baseline, twin
