"""What a detector reads from a model: per block, ``[s, z]`` of SE modules or pooled block outputs.

A reader is a context manager whose value ``read(x) -> (logits, [features (B, D_b) per block])`` runs
the model once. ``"excitation"`` reads the excitation ``s`` and the squeeze ``z`` of each SE block
(Hu et al., 1709.01507) with an :class:`~serobust.excitation.probe.ExcitationProbe`; ``"pooled"``, the control
for a baseline without SE, reads the global average over (H, W) of named blocks' outputs (for a pair,
``serobust.matched_layers(baseline, se_twin)``: the blocks that hold SE in the twin). With
``differentiable=True`` the features keep their autograd graph, for adaptive attacks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from ..excitation.adapters import find_se_modules
from ..excitation.probe import ExcitationProbe
from ..runtime import check_module_names

__all__ = ["DETECTOR_FEATURES", "Reader", "feature_reader", "resolve_blocks"]

# (logits (B, K), features per block [(B, D_b)]) of one forward pass
Reader = Callable[[torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]]


@contextlib.contextmanager
def _excitation_reader(model: nn.Module, blocks: list[str], differentiable: bool) -> Iterator[Reader]:
    """``[s, z]`` of each SE block, read by an :class:`ExcitationProbe` (with graphs when asked)."""
    with ExcitationProbe(model, blocks=blocks, differentiable=differentiable, check_inputs=False) as probe:

        def read(x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
            logits = model(x)
            rec = probe.pop_records(device=None)  # this pass only; frees the previous step's graphs
            return logits, [torch.cat([rec[b]["s"], rec[b]["z"]], dim=1) for b in blocks]  # (B, 2C) each

        yield read


@contextlib.contextmanager
def _pooled_reader(model: nn.Module, blocks: list[str], differentiable: bool) -> Iterator[Reader]:
    """The global average over (H, W) of each named module's output (forward hooks)."""
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}

    def make_hook(name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            if not isinstance(output, torch.Tensor) or output.ndim < 3:
                raise TypeError(f"module {name!r} returns {type(output).__name__} of shape "
                                f"{getattr(output, 'shape', None)}, not a feature map (B, C, H, W); pick "
                                "blocks whose output is one map, e.g. serobust.matched_layers(baseline, se)")
            out = output if differentiable else output.detach()
            seen[name] = out.float().mean(dim=tuple(range(2, out.ndim)))  # (B, C, H, W) -> (B, C)

        return hook

    handles = [modules[name].register_forward_hook(make_hook(name)) for name in blocks]
    try:

        def read(x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
            seen.clear()
            logits = model(x)
            return logits, [seen[name] for name in blocks]

        yield read
    finally:
        for handle in handles:
            handle.remove()


def _excitation_blocks(model: nn.Module, blocks: Sequence[str] | None) -> list[str]:
    return [b.name for b in find_se_modules(model)] if blocks is None else list(blocks)


def _pooled_blocks(model: nn.Module, blocks: Sequence[str] | None) -> list[str]:
    if blocks is None:
        raise ValueError("features='pooled' needs the blocks whose outputs to pool; pass "
                         "blocks=serobust.matched_layers(baseline, se_twin)")
    return check_module_names(model, list(blocks), what="blocks", hint="see model.named_modules() or use "
                              "serobust.matched_layers(baseline, se_twin)")


#: Feature kinds of :class:`MahalanobisDetector`: name -> (reader, default/validated block names).


#: Feature kinds: name -> (reader, default/validated block names).
_FEATURES = {
    "excitation": (_excitation_reader, _excitation_blocks),
    "pooled": (_pooled_reader, _pooled_blocks),
}
#: The feature kinds a :class:`~serobust.detect.MahalanobisDetector` reads: ``"excitation"`` ([s, z] of
#: each SE block) and ``"pooled"`` (global average pool of named blocks' outputs: the baseline control).
DETECTOR_FEATURES = tuple(_FEATURES)


def _check_kind(features: str) -> None:
    if features not in _FEATURES:
        raise ValueError(f"unknown features {features!r}; valid kinds: {list(DETECTOR_FEATURES)}")


def resolve_blocks(model: nn.Module, features: str, blocks: Sequence[str] | str | None) -> list[str]:
    """The block names a detector of kind ``features`` reads from ``model`` (defaults filled in, validated).

    Raises:
        ValueError: unknown ``features``; ``blocks`` empty, unknown, or missing for ``"pooled"``.
        NoSEModuleError: ``"excitation"`` on a model without SE modules.
    """
    _check_kind(features)
    if isinstance(blocks, str):
        blocks = [blocks]
    if blocks is not None and not list(blocks):
        raise ValueError("blocks is empty; name at least one block, or pass None for the default")
    names = _FEATURES[features][1](model, blocks)
    if features == "excitation":
        ExcitationProbe(model, blocks=names)  # validates the names (no hooks until entered)
    return names


def feature_reader(model: nn.Module, features: str, blocks: list[str], *,
                   differentiable: bool = False) -> contextlib.AbstractContextManager[Reader]:
    """A context whose value ``read(x) -> (logits, [features of each block (B, D_b)])`` runs the model.

    The caller sets the model's mode (eval) and the batch's device and dtype; ``blocks`` come from
    :func:`resolve_blocks`.
    """
    _check_kind(features)
    return _FEATURES[features][0](model, blocks, differentiable)
