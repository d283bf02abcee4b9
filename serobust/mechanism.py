"""Causal and adaptive tests of whether SE excitations are part of how attacks work.

The probe (:mod:`serobust.probe`) shows *that* excitations move under attack; this module asks whether
that movement *matters*, with three kinds of evidence:

* **Interventions** (:func:`interventions`): run the adversarial input with each SE gate's excitation
  ``s`` replaced by the clean input's own ``s`` ("excitation swap") or by the dataset mean ("frozen
  gate"). If the swap restores accuracy, the shift of ``s`` is part of how the attack works.
* **Adaptive attacks** (:func:`adaptive_attacks`): Linf PGD that also pushes excitations away from their
  clean values (:func:`excitation_pgd`), and PGD computed with the gates frozen at their clean values
  (:func:`frozen_gate_pgd`, a BPDA-like "gate removed" attack). If either is much stronger than plain
  PGD on the SE twin, the gate hides gradients rather than damping perturbations.
* **Class profiles** (:func:`class_profiles`, :func:`profile_shift`): Hu et al. (1709.01507, Sec. 7.2)
  found excitations class-agnostic early and class-specific late; :func:`profile_shift` asks whether
  the excitations of successful adversarial examples move toward the profile of the class the model
  is fooled into.

The intervention mechanism is :func:`gate_override`: a forward hook on a gate that *returns* a tensor
replaces that gate's output, so ``s`` is set while ``u`` (the feature map entering the SE block) still
comes from the actual forward pass. Everything here runs in float32, switches the model to eval mode
and restores every submodule's mode afterwards, and keeps per-batch results on the device until a
single host transfer at the end.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .eps import parse_eps_list
from .runtime import eval_mode, model_device
from .se_adapters import NoSEModuleError, SEBlock, find_se_modules

__all__ = [
    "gate_override",
    "capture_excitations",
    "interventions",
    "pgd",
    "excitation_pgd",
    "frozen_gate_pgd",
    "adaptive_attacks",
    "class_profiles",
    "profile_shift",
    "NoSEModuleError",
]

logger = logging.getLogger(__name__)

# An override: a dict block name -> s of shape (B, C) or (C,), or a callable (name, s) -> s or None.
GateValues = Mapping[str, torch.Tensor] | Callable[[str, torch.Tensor], "torch.Tensor | None"]

_STRONGER_MARGIN = 0.02  # an adaptive attack "is stronger" when it lowers accuracy by more than 2 points


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------




def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def _check_xy(x: torch.Tensor, y: torch.Tensor | None, x_adv: torch.Tensor | None = None) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a tensor of images with shape (N, C, H, W), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor in [0, 1], got dtype {x.dtype}")
    if y is not None:
        if not isinstance(y, torch.Tensor) or y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"y must be a 1-D tensor of {len(x)} integer labels (one per image in x), got "
                             f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
        if y.is_floating_point() or y.dtype == torch.bool:
            raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}; pass y.long()")
    if x.numel() and (bool(x.min() < 0) or bool(x.max() > 1)):  # one check per call, before any loop
        warnings.warn("x has values outside [0, 1]; serobust models normalize inside and attacks clip to "
                      "[0, 1], so pass raw [0, 1] images, not normalized ones", stacklevel=3)
    if x_adv is not None and (not isinstance(x_adv, torch.Tensor) or x_adv.shape != x.shape):
        raise ValueError(f"x_adv must have the same shape as x {tuple(x.shape)}, got "
                         f"{tuple(x_adv.shape) if isinstance(x_adv, torch.Tensor) else type(x_adv).__name__}"
                         "; pass the adversarial examples generated from x, in the same order")


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


@contextlib.contextmanager
def _record_gates(blocks: Sequence[SEBlock], store: dict[str, torch.Tensor]) -> Iterator[None]:
    """Hooks that put each gate's output, as (B, C), into ``store[name]`` (graph kept; no copy)."""

    def make(name: str):
        def hook(_module: nn.Module, _inputs, output: torch.Tensor) -> None:
            store[name] = output.flatten(1)  # (B, C) or (B, C, 1, 1) -> (B, C)

        return hook

    handles = [b.gate.register_forward_hook(make(b.name)) for b in blocks]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


# --------------------------------------------------------------------------------------------------
# gate override and capture
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def gate_override(model: nn.Module, values: GateValues) -> Iterator[list[SEBlock]]:
    """Replace the excitation ``s`` of SE gates during every forward pass inside the ``with`` block.

    A forward hook on a gate that returns a tensor replaces the gate's output, so the SE module then
    computes ``u * s_override``: ``u`` is still whatever the forward pass produced at that block (an
    override upstream changes ``u`` downstream). The override is not differentiable with respect to
    the input unless the given tensors are: passing detached clean excitations removes the gradient
    path through ``s`` entirely (see :func:`frozen_gate_pgd`). Hooks are removed on exit, also when
    the body raises.

    Args:
        model: a model with SE modules (see :func:`serobust.se_adapters.find_se_modules`).
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


def capture_excitations(
    model: nn.Module, x: torch.Tensor, *, batch_size: int = 256
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Excitations ``s`` of every SE block and the logits for clean inputs ``x`` (one eval pass).

    A minimal capture (two hooks' worth), independent of :class:`serobust.ExcitationProbe`.

    Returns:
        ``(s, logits)``: ``s`` maps block name -> tensor (N, C) and ``logits`` is (N, K), all float32 on
        the model's device.

    Raises:
        NoSEModuleError: ``model`` has no SE module.
    """
    _check_xy(x, None)
    _check_batch_size(batch_size)
    blocks = find_se_modules(model)
    device = model_device(model)
    parts: dict[str, list[torch.Tensor]] = {b.name: [] for b in blocks}
    logits = []
    store: dict[str, torch.Tensor] = {}
    with eval_mode(model), torch.no_grad(), _record_gates(blocks, store):
        for sl in _batches(len(x), batch_size):
            logits.append(model(x[sl].to(device, torch.float32)).float())  # (B, K)
            for b in blocks:
                parts[b.name].append(store[b.name].float())  # (B, C)
    return {k: torch.cat(v) for k, v in parts.items()}, torch.cat(logits)


def _mean_excitations(model: nn.Module, x: torch.Tensor, blocks: Sequence[SEBlock],
                      batch_size: int) -> dict[str, torch.Tensor]:
    """Dataset-mean ``s`` per block, (C,), accumulated without keeping every example's ``s``."""
    device = model_device(model)
    sums: dict[str, torch.Tensor] = {}
    store: dict[str, torch.Tensor] = {}
    with torch.no_grad(), _record_gates(blocks, store):
        for sl in _batches(len(x), batch_size):
            model(x[sl].to(device, torch.float32))
            for b in blocks:
                part = store[b.name].float().sum(0)  # (B, C) -> (C,)
                sums[b.name] = sums[b.name] + part if b.name in sums else part
    return {k: v / len(x) for k, v in sums.items()}


# --------------------------------------------------------------------------------------------------
# interventions
# --------------------------------------------------------------------------------------------------


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
        ValueError: shapes of ``x``, ``y``, ``x_adv`` or ``mean_s`` do not match.
    """
    blocks = find_se_modules(model)
    _check_xy(x, y, x_adv)
    _check_batch_size(batch_size)
    device = model_device(model)
    names = [b.name for b in blocks]
    with eval_mode(model):
        if mean_s is None:
            mean_s = _mean_excitations(model, x, blocks, batch_size)
        else:
            missing = [n for n in names if n not in mean_s]
            if missing:
                raise ValueError(f"mean_s lacks SE blocks {missing}; give one (C,) tensor per block in {names} "
                                 "or pass mean_s=None to compute it from x")
            mean_s = {n: torch.as_tensor(mean_s[n]).to(device, torch.float32).reshape(-1) for n in names}

        keys = [("clean", "none"), ("adversarial", "none"), ("excitation_swap", "all"), ("frozen_gate", "all"),
                ("clean_frozen_gate", "all")] + [("block_swap", n) for n in names]
        correct = {k: torch.zeros((), dtype=torch.long, device=device) for k in keys}
        store: dict[str, torch.Tensor] = {}

        def hits(logits: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            return (logits.argmax(1) == yb).sum()

        with torch.no_grad():
            for sl in _batches(len(x), batch_size):
                xb = x[sl].to(device, torch.float32)
                ab = x_adv[sl].to(device, torch.float32)
                yb = y[sl].to(device)
                with _record_gates(blocks, store):
                    correct[("clean", "none")] += hits(model(xb), yb)
                s_clean = {n: store[n] for n in names}  # name -> (B, C)
                correct[("adversarial", "none")] += hits(model(ab), yb)
                with gate_override(model, s_clean):
                    correct[("excitation_swap", "all")] += hits(model(ab), yb)
                with gate_override(model, mean_s):
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


# --------------------------------------------------------------------------------------------------
# adaptive attacks
# --------------------------------------------------------------------------------------------------


def _make_generator(device: torch.device, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device if device.type == "cuda" else "cpu")
    gen.manual_seed(seed)
    return gen


def _random_start(x: torch.Tensor, eps: float, gen: torch.Generator) -> torch.Tensor:
    """x + U(-eps, eps), clipped to [0, 1] (the same start for every attack given the same seed)."""
    noise = torch.rand(x.shape, generator=gen, device=gen.device, dtype=torch.float32)  # [0, 1)
    noise = (2 * noise - 1).mul_(eps).to(x.device)
    return (x + noise).clamp_(0, 1)


def _pgd_loop(
    model: nn.Module,
    x: torch.Tensor,
    start: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    eps: float,
    alpha: float,
    steps: int,
) -> torch.Tensor:
    """Linf PGD with sign steps from ``start``; ``loss_fn(x_adv) -> scalar`` is maximised."""
    x_adv = start.detach()
    with torch.enable_grad():
        for _ in range(steps):
            x_adv.requires_grad_(True)
            (grad,) = torch.autograd.grad(loss_fn(x_adv), x_adv)
            x_adv = x_adv.detach() + alpha * grad.sign()
            delta = torch.clamp(x_adv - x, min=-eps, max=eps)  # project onto the eps ball ...
            x_adv = torch.clamp(x + delta, min=0, max=1).detach()  # ... and onto [0, 1]
    return x_adv


def _clean_s(model: nn.Module, blocks: Sequence[SEBlock], x: torch.Tensor) -> dict[str, torch.Tensor]:
    store: dict[str, torch.Tensor] = {}
    with torch.no_grad(), _record_gates(blocks, store):
        model(x)
    return {b.name: store[b.name].detach() for b in blocks}  # name -> (B, C)


def _attack_batch(
    kind: str,
    model: nn.Module,
    blocks: Sequence[SEBlock],
    x: torch.Tensor,
    y: torch.Tensor,
    start: torch.Tensor,
    s_clean: dict[str, torch.Tensor] | None,
    *,
    eps: float,
    alpha: float,
    steps: int,
    weight: float,
) -> torch.Tensor:
    """One batch of one attack kind ("pgd", "excitation_pgd", "frozen_gate_pgd"); float32 throughout."""
    if kind == "pgd":
        return _pgd_loop(model, x, start, lambda xa: F.cross_entropy(model(xa), y),
                         eps=eps, alpha=alpha, steps=steps)
    if s_clean is None:
        s_clean = _clean_s(model, blocks, x)
    if kind == "excitation_pgd":
        store: dict[str, torch.Tensor] = {}
        ref_norm = {n: s.pow(2).sum(1).clamp_min(1e-12) for n, s in s_clean.items()}  # (B,)

        def loss(xa: torch.Tensor) -> torch.Tensor:
            with _record_gates(blocks, store):
                ce = F.cross_entropy(model(xa), y)
            shift = torch.stack([(store[n].float() - s).pow(2).sum(1) / ref_norm[n]
                                 for n, s in s_clean.items()])  # (blocks, B)
            return ce + weight * shift.mean(0).mean()  # mean over blocks, then over the batch (like CE)

        return _pgd_loop(model, x, start, loss, eps=eps, alpha=alpha, steps=steps)
    if kind == "frozen_gate_pgd":
        with gate_override(model, s_clean):  # detached clean s: no gradient flows through the gates
            return _pgd_loop(model, x, start, lambda xa: F.cross_entropy(model(xa), y),
                             eps=eps, alpha=alpha, steps=steps)
    raise ValueError(f"unknown attack kind {kind!r}")


def _check_attack_args(steps: int, alpha: float | None, weight: float) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if alpha is not None and not (isinstance(alpha, (int, float)) and alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"alpha (the step size in [0, 1] pixel units) must be a positive number or None, got {alpha!r}")
    if not (isinstance(weight, (int, float)) and math.isfinite(weight)):
        raise ValueError(f"weight must be a finite number, got {weight!r}")


def _step_size(eps: float, steps: int, alpha: float | None) -> float:
    return 2.5 * eps / steps if alpha is None else float(alpha)


def _run_attack(
    kind: str,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | str,
    *,
    steps: int,
    alpha: float | None,
    weight: float,
    random_start: bool,
    seed: int,
    batch_size: int,
) -> torch.Tensor:
    blocks = find_se_modules(model) if kind != "pgd" else []
    _check_xy(x, y)
    _check_batch_size(batch_size)
    _check_attack_args(steps, alpha, weight)
    (eps_f,) = parse_eps_list([eps])
    device = model_device(model)
    gen = _make_generator(device, seed)
    step = _step_size(eps_f, steps, alpha)
    out = []
    with eval_mode(model):
        for sl in _batches(len(x), batch_size):
            xb = x[sl].to(device, torch.float32)
            yb = y[sl].to(device)
            if eps_f == 0:
                out.append(xb.clone())
                continue
            start = _random_start(xb, eps_f, gen) if random_start else xb.clone()
            out.append(_attack_batch(kind, model, blocks, xb, yb, start, None, eps=eps_f, alpha=step,
                                     steps=steps, weight=weight))
    return torch.cat(out).to(x.device, x.dtype)


_ATTACK_DOC = """

    Linf PGD written as a plain float32 torch loop: random start ``x + U(-eps, eps)`` (seeded by
    ``seed``, drawn batch by batch, so the start depends on ``batch_size``; the three attacks of this
    module draw the same start for the same seed), ``steps`` sign steps of size ``alpha`` (default
    ``2.5 * eps / steps``), each followed by projection onto the eps ball and onto [0, 1]. The model
    runs in eval mode; the modes of its modules are restored afterwards.

    Args:
        model: the model to attack (an SE model for the adaptive attacks).
        x: clean images in [0, 1], (N, C, H, W).
        y: labels, (N,).
        eps: Linf budget in [0, 1] pixel units (a float or a string such as ``"8/255"``).
        steps: number of PGD steps.
        alpha: step size in pixel units; ``None`` gives ``2.5 * eps / steps``.
        random_start: start from a uniform random point of the eps ball (True) or from ``x``.
        seed: seed of the random start.
        batch_size: examples attacked together.

    Returns:
        ``x_adv`` with the shape, dtype and device of ``x``.
"""


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | str,
    *,
    steps: int = 20,
    alpha: float | None = None,
    random_start: bool = True,
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """Plain untargeted Linf PGD on the cross-entropy loss (the reference for the adaptive attacks)."""
    return _run_attack("pgd", model, x, y, eps, steps=steps, alpha=alpha, weight=0.0,
                       random_start=random_start, seed=seed, batch_size=batch_size)


def excitation_pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | str,
    *,
    steps: int = 20,
    alpha: float | None = None,
    weight: float = 1.0,
    random_start: bool = True,
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """PGD that also pushes every SE excitation away from its clean value.

    Maximises ``CE + weight * mean_blocks(||s(x') - s(x)||^2 / ||s(x)||^2)`` (both terms averaged over
    the batch), where ``s(x)`` is the clean excitation of each example. ``weight = 0`` is plain PGD;
    a negative weight keeps excitations close to clean instead (an attack that evades excitation-based
    detection).

    Raises:
        NoSEModuleError: ``model`` has no SE module.
    """
    return _run_attack("excitation_pgd", model, x, y, eps, steps=steps, alpha=alpha, weight=weight,
                       random_start=random_start, seed=seed, batch_size=batch_size)


def frozen_gate_pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | str,
    *,
    steps: int = 20,
    alpha: float | None = None,
    random_start: bool = True,
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """PGD computed with every SE gate frozen at its clean excitation (a BPDA-like "gate removed" attack).

    While the attack runs, each gate outputs the example's clean ``s`` (detached), so gradients do not
    flow through the excitations; the returned ``x_adv`` is meant to be evaluated on the real model.
    If this attack beats plain PGD, the gates obstruct gradients (masking) rather than damp the
    perturbation.

    Raises:
        NoSEModuleError: ``model`` has no SE module.
    """
    return _run_attack("frozen_gate_pgd", model, x, y, eps, steps=steps, alpha=alpha, weight=0.0,
                       random_start=random_start, seed=seed, batch_size=batch_size)


for _fn in (pgd, excitation_pgd, frozen_gate_pgd):
    _fn.__doc__ = (_fn.__doc__ or "") + _ATTACK_DOC
del _fn

ADAPTIVE_ATTACKS = ("pgd", "excitation_pgd", "frozen_gate_pgd")


def adaptive_attacks(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | str | Sequence[float | str],
    *,
    steps: int = 20,
    alpha: float | None = None,
    weight: float = 1.0,
    random_start: bool = True,
    seed: int = 0,
    batch_size: int = 256,
) -> pd.DataFrame:
    """Robust accuracy of an SE model under plain PGD and the two adaptive attacks, per eps.

    Each batch is attacked by :func:`pgd`, :func:`excitation_pgd` and :func:`frozen_gate_pgd` with the
    same budget, step size and random start, and every ``x_adv`` is evaluated on the real model. If
    either adaptive attack is much stronger than plain PGD (``stronger_than_pgd``: more than 2 points
    lower accuracy), the SE gates hide gradients rather than damp perturbations, and a robustness gain
    measured with plain PGD should not be trusted. Every run checks ``||x_adv - x||_inf <= eps`` and
    ``x_adv`` in [0, 1] (reported as ``max_linf``) and warns (logging) when robust accuracy exceeds
    clean accuracy.

    Args:
        model: the SE twin.
        x: clean images in [0, 1], (N, C, H, W).
        y: labels, (N,).
        eps: one Linf budget or a list (floats or strings such as ``"8/255"``).
        steps: PGD steps of every attack.
        alpha: step size; ``None`` gives ``2.5 * eps / steps``.
        weight: weight of the excitation-shift term of :func:`excitation_pgd`.
        random_start: start from a uniform random point in the eps ball.
        seed: seed of the random start (shared by the three attacks).
        batch_size: examples attacked together.

    Returns:
        Tidy DataFrame with columns ``attack, eps, robust_acc, n, stronger_than_pgd, clean_acc,
        max_linf``; one row per (eps, attack), ``attack`` in ``pgd, excitation_pgd, frozen_gate_pgd``.

    Raises:
        NoSEModuleError: ``model`` has no SE module (a baseline).
    """
    blocks = find_se_modules(model)
    _check_xy(x, y)
    _check_batch_size(batch_size)
    _check_attack_args(steps, alpha, weight)
    eps_list = parse_eps_list(eps)
    if len(set(eps_list)) < len(eps_list):
        warnings.warn(f"eps has repeated budgets {eps_list}; each is attacked once", stacklevel=2)
        eps_list = list(dict.fromkeys(eps_list))
    device = model_device(model)
    n = len(x)
    correct = {(e, k): torch.zeros((), dtype=torch.long, device=device) for e in range(len(eps_list))
               for k in ADAPTIVE_ATTACKS}
    max_linf = {key: torch.zeros((), device=device) for key in correct}
    out_of_range = torch.zeros((), dtype=torch.bool, device=device)
    clean_correct = torch.zeros((), dtype=torch.long, device=device)
    with eval_mode(model):
        with torch.no_grad():
            for sl in _batches(n, batch_size):
                clean_correct += (model(x[sl].to(device, torch.float32)).argmax(1) == y[sl].to(device)).sum()
        for ei, eps_f in enumerate(eps_list):
            gen = _make_generator(device, seed)  # same stream as pgd()/excitation_pgd()/frozen_gate_pgd()
            step = _step_size(eps_f, steps, alpha)
            for sl in _batches(n, batch_size):
                xb = x[sl].to(device, torch.float32)
                yb = y[sl].to(device)
                if eps_f > 0:
                    start = _random_start(xb, eps_f, gen) if random_start else xb.clone()
                    s_clean = _clean_s(model, blocks, xb)
                for kind in ADAPTIVE_ATTACKS:
                    if eps_f == 0:
                        adv = xb
                    else:
                        adv = _attack_batch(kind, model, blocks, xb, yb, start, s_clean, eps=eps_f,
                                            alpha=step, steps=steps, weight=weight)
                    with torch.no_grad():
                        correct[(ei, kind)] += (model(adv).argmax(1) == yb).sum()
                    max_linf[(ei, kind)] = torch.maximum(max_linf[(ei, kind)], (adv - xb).abs().amax())
                    out_of_range |= (adv.amin() < 0) | (adv.amax() > 1)
    keys = list(correct)
    hits = torch.stack([correct[k] for k in keys]).tolist()  # the one host sync for the counts
    linf = torch.stack([max_linf[k] for k in keys]).tolist()
    clean_acc = clean_correct.item() / n
    if bool(out_of_range):
        raise RuntimeError("adaptive_attacks produced x_adv outside [0, 1]; this is a serobust bug, please report it")
    rows = []
    for (ei, kind), h, m in zip(keys, hits, linf):
        if m > eps_list[ei] + 1e-6:
            raise RuntimeError(f"{kind} at eps={eps_list[ei]} left the eps ball (max |x_adv - x| = {m}); "
                               "this is a serobust bug, please report it")
        rows.append({"attack": kind, "eps": eps_list[ei], "robust_acc": h / n, "n": n, "clean_acc": clean_acc,
                     "max_linf": m})
    frame = pd.DataFrame(rows)
    pgd_acc = frame[frame.attack == "pgd"].set_index("eps")["robust_acc"]
    frame["stronger_than_pgd"] = frame["robust_acc"] < frame["eps"].map(pgd_acc) - _STRONGER_MARGIN
    for row in frame.itertuples():
        if row.robust_acc > clean_acc:
            logger.warning("%s at eps=%g: robust accuracy %.3f exceeds clean accuracy %.3f; check the model "
                           "is deterministic in eval mode", row.attack, row.eps, row.robust_acc, clean_acc)
        if row.stronger_than_pgd:
            logger.warning("%s at eps=%g is %.1f points stronger than plain PGD: the SE gates obstruct "
                           "gradients; do not trust PGD-based robustness of this model", row.attack, row.eps,
                           100 * (pgd_acc[row.eps] - row.robust_acc))
    return frame[["attack", "eps", "robust_acc", "n", "stronger_than_pgd", "clean_acc", "max_linf"]]


# --------------------------------------------------------------------------------------------------
# class profiles
# --------------------------------------------------------------------------------------------------


def _class_means(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, blocks: Sequence[SEBlock], batch_size: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-class mean ``s``: name -> (K, C) (NaN rows for absent classes) and class counts (K,)."""
    device = model_device(model)
    num_classes = int(y.max()) + 1 if len(y) else 0  # one sync, before the loop
    if len(y) and int(y.min()) < 0:
        raise ValueError("y holds negative labels; class labels must be 0..K-1")
    sums: dict[str, torch.Tensor] = {}
    counts = torch.zeros(num_classes, device=device)
    store: dict[str, torch.Tensor] = {}
    with eval_mode(model), torch.no_grad(), _record_gates(blocks, store):
        for sl in _batches(len(x), batch_size):
            yb = y[sl].to(device)
            model(x[sl].to(device, torch.float32))
            counts.index_add_(0, yb, torch.ones(len(yb), device=device))
            for b in blocks:
                s = store[b.name].float()  # (B, C)
                if b.name not in sums:
                    sums[b.name] = torch.zeros(num_classes, s.shape[1], device=device)
                sums[b.name].index_add_(0, yb, s)  # (K, C)
    means = {k: v / counts[:, None] for k, v in sums.items()}  # 0/0 -> NaN for absent classes
    return means, counts


def class_profiles(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256) -> pd.DataFrame:
    """Mean excitation per class, per SE block and channel (the SE paper's Fig. 6 profiles).

    Args:
        model: the SE twin.
        x: images in [0, 1], (N, C, H, W).
        y: labels, (N,); classes absent from ``y`` get no rows.
        batch_size: examples per forward pass.

    Returns:
        Long DataFrame with columns ``block, class, channel, s_mean, n`` (``n``: examples of that class).

    Raises:
        NoSEModuleError: ``model`` has no SE module.
    """
    blocks = find_se_modules(model)
    _check_xy(x, y)
    _check_batch_size(batch_size)
    if len(x) == 0:
        raise ValueError("x is empty; class profiles need at least one example")
    means, counts = _class_means(model, x, y, blocks, batch_size)
    counts_l = counts.long().tolist()
    frames = []
    for b in blocks:
        m = means[b.name].cpu()  # (K, C)
        k, c = m.shape
        frame = pd.DataFrame({
            "block": b.name,
            "class": torch.arange(k).repeat_interleave(c).numpy(),
            "channel": torch.arange(c).repeat(k).numpy(),
            "s_mean": m.reshape(-1).numpy(),
            "n": [counts_l[i] for i in range(k) for _ in range(c)],
        })
        frames.append(frame[frame["n"] > 0])
    return pd.concat(frames, ignore_index=True)


def _profiles_from_frame(profiles: pd.DataFrame, blocks: Sequence[SEBlock], num_classes: int,
                         device: torch.device) -> dict[str, torch.Tensor]:
    needed = {"block", "class", "channel", "s_mean"}
    if not needed <= set(profiles.columns):
        raise ValueError(f"profiles must be a class_profiles() frame with columns {sorted(needed)}, "
                         f"got {list(profiles.columns)}")
    out = {}
    for b in blocks:
        part = profiles[profiles["block"] == b.name]
        if part.empty:
            raise ValueError(f"profiles has no rows for SE block {b.name!r}; compute them with class_profiles() "
                             "on the same model")
        k = max(num_classes, int(part["class"].max()) + 1)
        c = int(part["channel"].max()) + 1
        table = torch.full((k, c), float("nan"))
        rows = torch.tensor(part["class"].to_numpy(copy=True), dtype=torch.long)
        cols = torch.tensor(part["channel"].to_numpy(copy=True), dtype=torch.long)
        table[rows, cols] = torch.tensor(part["s_mean"].to_numpy(copy=True), dtype=torch.float32)
        out[b.name] = table.to(device)
    return out


def profile_shift(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_adv: torch.Tensor,
    *,
    profiles: pd.DataFrame | None = None,
    batch_size: int = 256,
) -> pd.DataFrame:
    """Do excitations of successful adversarial examples move toward the fooled class's profile?

    For every example the model classifies correctly on ``x`` and wrongly on ``x_adv`` ("fooled",
    predicted class ``p``), and every SE block, distances are measured between the excitation and the
    class profiles (per-class mean ``s``): of ``s(x_adv)`` and of ``s(x)`` to the true-class profile
    and to the fooled-class profile. Distances are root-mean-square over channels (L2 / sqrt(C)) so
    blocks of different width compare. If adversarial excitations move toward the fooled class
    (``share_closer_to_fooled`` well above 0.5, ``adv_to_fooled < clean_to_fooled``), the attack
    drives the class-specific excitations of the late blocks, i.e. the gates are part of how it works.

    Args:
        model: the SE twin.
        x: clean images in [0, 1], (N, C, H, W).
        y: labels, (N,).
        x_adv: adversarial images made from ``x``.
        profiles: a :func:`class_profiles` frame (for example from training data); computed from the
            clean ``(x, y)`` when ``None``. Fooled examples whose true or fooled class has no profile
            are skipped (logged).
        batch_size: examples per forward pass.

    Returns:
        One row per block: ``block, n_fooled, clean_to_true, clean_to_fooled, adv_to_true,
        adv_to_fooled, share_closer_to_fooled`` (``s(x_adv)`` nearer the fooled profile than ``s(x)``
        was) and ``share_nearer_fooled_than_true`` (``s(x_adv)`` nearer the fooled than the true
        profile). Distances and shares are NaN when no example was fooled.

    Raises:
        NoSEModuleError: ``model`` has no SE module.
    """
    blocks = find_se_modules(model)
    _check_xy(x, y, x_adv)
    _check_batch_size(batch_size)
    if len(x) == 0:
        raise ValueError("x is empty; profile_shift needs at least one example")
    device = model_device(model)
    num_classes = int(y.max()) + 1
    if profiles is None:
        prof, _ = _class_means(model, x, y, blocks, batch_size)
    else:
        prof = _profiles_from_frame(profiles, blocks, num_classes, device)
    names = [b.name for b in blocks]
    stats = ("clean_to_true", "clean_to_fooled", "adv_to_true", "adv_to_fooled", "closer", "nearer")
    sums = {(n, s): torch.zeros((), device=device) for n in names for s in stats}
    counts = {n: torch.zeros((), device=device) for n in names}
    skipped = torch.zeros((), dtype=torch.long, device=device)
    store: dict[str, torch.Tensor] = {}

    def rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).pow(2).mean(1).sqrt()  # (B, C) -> (B,)

    with eval_mode(model), torch.no_grad(), _record_gates(blocks, store):
        for sl in _batches(len(x), batch_size):
            yb = y[sl].to(device)
            pred_clean = model(x[sl].to(device, torch.float32)).argmax(1)
            s_clean = {n: store[n].float() for n in names}
            pred_adv = model(x_adv[sl].to(device, torch.float32)).argmax(1)
            s_adv = {n: store[n].float() for n in names}
            fooled = (pred_clean == yb) & (pred_adv != yb)  # (B,)
            for i, n in enumerate(names):
                table = prof[n]  # (K, C)
                in_range = (pred_adv < table.shape[0]) & (yb < table.shape[0])
                p_idx = torch.where(in_range, pred_adv, 0)
                y_idx = torch.where(in_range, yb, 0)
                p_true, p_fooled = table[y_idx], table[p_idx]  # (B, C)
                valid = fooled & in_range & ~p_true.isnan().any(1) & ~p_fooled.isnan().any(1)
                if i == 0:
                    skipped += (fooled & ~valid).sum()
                d = {
                    "clean_to_true": rms(s_clean[n], p_true), "clean_to_fooled": rms(s_clean[n], p_fooled),
                    "adv_to_true": rms(s_adv[n], p_true), "adv_to_fooled": rms(s_adv[n], p_fooled),
                }
                d["closer"] = (d["adv_to_fooled"] < d["clean_to_fooled"]).float()
                d["nearer"] = (d["adv_to_fooled"] < d["adv_to_true"]).float()
                for s in stats:
                    sums[(n, s)] += torch.where(valid, d[s], 0).sum()
                counts[n] += valid.sum()
    keys = list(sums)
    totals = dict(zip(keys, torch.stack([sums[k] for k in keys]).tolist()))  # one host sync
    n_valid = dict(zip(names, torch.stack([counts[n] for n in names]).tolist()))
    if int(skipped):
        logger.warning("profile_shift skipped %d fooled examples whose true or fooled class has no profile",
                       int(skipped))
    rows = []
    for n in names:
        k = n_valid[n]
        avg = {s: (totals[(n, s)] / k if k else float("nan")) for s in stats}
        rows.append({"block": n, "n_fooled": int(k), "clean_to_true": avg["clean_to_true"],
                     "clean_to_fooled": avg["clean_to_fooled"], "adv_to_true": avg["adv_to_true"],
                     "adv_to_fooled": avg["adv_to_fooled"], "share_closer_to_fooled": avg["closer"],
                     "share_nearer_fooled_than_true": avg["nearer"]})
    return pd.DataFrame(rows)
