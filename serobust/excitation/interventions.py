"""Causal tests of the excitation: set each SE gate's ``s`` and see whether accuracy follows.

The probe (:mod:`serobust.excitation.probe`) shows *that* excitations move under attack; an intervention asks
whether that movement *matters*. :func:`interventions` runs the adversarial input with each SE gate's
excitation replaced by the clean input's own ``s`` ("excitation swap") or by the dataset mean
("frozen gate"); if the swap restores accuracy, the shift of ``s`` is part of how the attack works
(Hu et al., 1709.01507: ``s`` rescales the channels of ``u``, so it can carry or block a perturbation).

The mechanism is :func:`gate_override`: a forward hook on a gate that *returns* a tensor replaces that
gate's output, so ``s`` is set while ``u`` (the feature map entering the SE block) still comes from the
actual forward pass. This replaces ``s``; reading ``s`` is the probe's job, and the clean excitations
an intervention needs come from an :class:`~serobust.excitation.probe.ExcitationProbe`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from ..runtime import eval_mode, model_device
from .adapters import SEBlock, find_se_modules
from .inputs import batch_slices, check_analysis_inputs
from .probe import ExcitationProbe

__all__ = ["gate_override", "interventions", "GateValues"]

# An override: a dict block name -> s of shape (B, C) or (C,), or a callable (name, s) -> s or None.
GateValues = Mapping[str, torch.Tensor] | Callable[[str, torch.Tensor], "torch.Tensor | None"]


@contextlib.contextmanager
def gate_override(model: nn.Module, values: GateValues) -> Iterator[list[SEBlock]]:
    """Replace the excitation ``s`` of SE gates during every forward pass inside the ``with`` block.

    A forward hook on a gate that returns a tensor replaces the gate's output, so the SE module then
    computes ``u * s_override``: ``u`` is still whatever the forward pass produced at that block (an
    override upstream changes ``u`` downstream). The override is not differentiable with respect to
    the input unless the given tensors are: passing detached clean excitations removes the gradient
    path through ``s`` entirely (see the ``frozen_gate_pgd`` attack, :mod:`serobust.attacks.se_gates`). Hooks are removed on
    exit, also when the body raises.

    Args:
        model: a model with SE modules (see :func:`serobust.excitation.adapters.find_se_modules`).
        values: either a dict ``block name -> s`` with ``s`` of shape (B, C) (one row per example of
            the batch being forwarded) or (C,) (the same for every example), for the blocks to override
            (others run unchanged); or a callable ``f(name, s) -> s' | None`` called with each block's
            actual excitation ``s`` as (B, C), returning the replacement (B, C) or (C,), or ``None`` to
            keep ``s``.

    Yields:
        The list of SE blocks of ``model`` (name, module, gate), in definition order.

    Raises:
        NoSEModuleError: ``model`` has no SE module.
        ValueError: a dict key names no SE block, or a replacement has the wrong number of channels or
            examples (raised during the forward pass).

    Example::

        with gate_override(se_model, {"features.0.se": torch.full((16,), 0.5)}):
            logits = se_model(x)  # block features.0.se multiplies its channels by 0.5
    """
    blocks = find_se_modules(model)
    names = [b.name for b in blocks]
    if callable(values) and not isinstance(values, Mapping):
        fn = values
        targets = blocks
    elif isinstance(values, Mapping):
        unknown = [k for k in values if k not in names]
        if unknown:
            raise ValueError(f"gate_override got unknown SE block names {unknown}; valid names: {names}")
        fn = None
        targets = [b for b in blocks if b.name in values]
    else:
        raise TypeError(f"values must be a dict block name -> tensor or a callable, got {type(values).__name__}")

    def make(name: str):
        def hook(_module: nn.Module, _inputs, output: torch.Tensor) -> torch.Tensor | None:
            s = output.flatten(1)  # (B, C)
            new = fn(name, s) if fn is not None else values[name]
            if new is None:
                return None
            new = torch.as_tensor(new).to(device=output.device, dtype=output.dtype)
            batch, channels = s.shape
            if new.ndim == 1:
                new = new.unsqueeze(0)  # (C,) -> (1, C)
            if new.ndim != 2 or new.shape[1] != channels or new.shape[0] not in (1, batch):
                raise ValueError(
                    f"override for SE block {name!r} has shape {tuple(new.shape)}; expected ({batch}, {channels}) "
                    f"or ({channels},) to match the batch being forwarded"
                )
            return new.expand(batch, channels).reshape(output.shape)  # (B, C) -> gate's own output shape

        return hook

    handles = [b.gate.register_forward_hook(make(b.name)) for b in targets]
    try:
        yield blocks
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def _mean_excitations(model: nn.Module, x: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
    """Dataset-mean ``s`` per block, (C,), float32 sums of each batch's records (the model in eval mode)."""
    device = model_device(model)
    sums: dict[str, torch.Tensor] = {}
    with ExcitationProbe(model, check_inputs=False) as probe:
        for sl in batch_slices(len(x), batch_size):
            model(x[sl].to(device, torch.float32))
            for name, rec in probe.pop_records().items():
                part = rec["s"].sum(0)  # (B, C) -> (C,)
                sums[name] = sums[name] + part if name in sums else part
    return {k: v / len(x) for k, v in sums.items()}


def _resolve_mean_s(model: nn.Module, x: torch.Tensor, mean_s: Mapping[str, torch.Tensor] | None,
                    names: Sequence[str], batch_size: int) -> dict[str, torch.Tensor]:
    if mean_s is None:
        return _mean_excitations(model, x, batch_size)
    missing = [n for n in names if n not in mean_s]
    if missing:
        raise ValueError(f"mean_s lacks SE blocks {missing}; give one (C,) tensor per block in {list(names)} "
                         "or pass mean_s=None to compute it from x")
    device = model_device(model)
    return {n: torch.as_tensor(mean_s[n]).to(device, torch.float32).reshape(-1) for n in names}


def interventions(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_adv: torch.Tensor,
    *,
    mean_s: Mapping[str, torch.Tensor] | None = None,
    batch_size: int = 256,
) -> pd.DataFrame:
    """Accuracy of an SE model under excitation interventions: is the excitation shift causal?

    Conditions (column ``condition``; ``block`` is ``"none"`` without intervention, ``"all"`` when
    every SE block is intervened on, or a block name):

    * ``clean``, ``adversarial``: the plain model on ``x`` and on ``x_adv``.
    * ``excitation_swap`` (all blocks): ``x_adv`` with every block's ``s`` set to the value it had for
      the clean input ``x``. If this restores accuracy, the excitation shift is part of how the attack
      works; if it does not, the attack works through ``u`` (the features the gates multiply).
    * ``block_swap`` (one row per block): ``x_adv`` with only that block's ``s`` set to its clean value,
      to see where the excitation matters.
    * ``frozen_gate``: ``x_adv`` with every ``s`` set to the dataset-mean excitation (no input
      dependence left in the gates).
    * ``clean_frozen_gate``: ``x`` with every ``s`` frozen at the mean: how much the model needs
      input-dependent gates at all. If this accuracy is already low, a poor ``frozen_gate`` accuracy
      says little about the attack.

    Note that a swap sets the excitation *only*: ``s`` of block k is set to its clean value, and
    ``u`` of block k is whatever this forward pass produced, so an intervention on an earlier block
    changes ``u`` downstream. "Swap" therefore means "s of block k set to its clean value, given this
    forward", not "block k computes what it computed on the clean input".

    Args:
        model: the SE twin (eval mode is set inside and the modes are restored afterwards).
        x: clean images in [0, 1], (N, C, H, W).
        y: labels, (N,).
        x_adv: adversarial images made from ``x``, same shape and order.
        mean_s: dataset-mean excitation per block, name -> (C,); computed from ``x`` when ``None``.
            Pass the training-set mean to freeze at a value the attack set did not shape.
        batch_size: examples per forward pass.

    Returns:
        Tidy DataFrame with columns ``condition, block, accuracy, n`` (accuracy in [0, 1]).

    Raises:
        NoSEModuleError: ``model`` has no SE module (a baseline).
        InputError: images not float (N, C, H, W) in [0, 1], NaN, mismatched shapes, bad labels.
        ValueError: ``mean_s`` lacks a block, or a bad ``batch_size``.
    """
    names = [b.name for b in find_se_modules(model)]
    check_analysis_inputs(x, y=y, x_adv=x_adv, batch_size=batch_size)
    device = model_device(model)
    keys = [("clean", "none"), ("adversarial", "none"), ("excitation_swap", "all"), ("frozen_gate", "all"),
            ("clean_frozen_gate", "all")] + [("block_swap", n) for n in names]
    correct = {k: torch.zeros((), dtype=torch.long, device=device) for k in keys}

    def hits(logits: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return (logits.argmax(1) == yb).sum()

    with eval_mode(model), torch.no_grad():
        frozen = _resolve_mean_s(model, x, mean_s, names, batch_size)
        with ExcitationProbe(model, check_inputs=False) as probe:
            for sl in batch_slices(len(x), batch_size):
                xb = x[sl].to(device, torch.float32)
                ab = x_adv[sl].to(device, torch.float32)
                yb = y[sl].to(device)
                correct[("clean", "none")] += hits(model(xb), yb)
                s_clean = {n: rec["s"] for n, rec in probe.pop_records().items()}  # name -> (B, C)
                with probe.pause():
                    correct[("adversarial", "none")] += hits(model(ab), yb)
                    with gate_override(model, s_clean):
                        correct[("excitation_swap", "all")] += hits(model(ab), yb)
                    with gate_override(model, frozen):
                        correct[("frozen_gate", "all")] += hits(model(ab), yb)
                        correct[("clean_frozen_gate", "all")] += hits(model(xb), yb)
                    for n in names:
                        with gate_override(model, {n: s_clean[n]}):
                            correct[("block_swap", n)] += hits(model(ab), yb)
    counts = torch.stack([correct[k] for k in keys]).tolist()  # the one host sync
    n = len(x)
    return pd.DataFrame(
        [{"condition": c, "block": b, "accuracy": k / n, "n": n} for (c, b), k in zip(keys, counts)],
        columns=["condition", "block", "accuracy", "n"],
    )
