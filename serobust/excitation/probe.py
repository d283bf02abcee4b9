"""Recording the squeeze z, the excitation s and the norms |u|, |s * u| of every SE block.

The study's hypothesis is that SE's global rescaling damps adversarial sensitivity because the global
state (the squeeze ``z``) hardly changes under attack. :class:`ExcitationProbe` reads exactly the
quantities of that statement from any model whose SE modules a registered adapter recognises
(:mod:`serobust.excitation.adapters`), with forward hooks only: the model's code is not touched.

Typical use, with the attack run inside the probe's scope but not recorded (a PGD attack calls the
model at every step, and a probe left recording would store every iterate)::

    with ExcitationProbe(se_model) as probe:
        se_model(x)                          # clean pass: recorded
        with probe.pause():
            x_adv = generate(se_model, x, y, "pgd", 8 / 255)   # iterates: not recorded
        se_model(x_adv)                      # adversarial pass: recorded
    rec = probe.records()                    # {block: {"z": (2N, C), "s": (2N, C), ...}}

Every image batch the probed model receives while recording is checked on the device (float in
[0, 1], no NaN; :class:`serobust.runtime.BatchGuard`), without a host sync in the forward pass; the
flags are read when the records are read and when the ``with`` block ends, so excitations of 0..255
or normalized inputs are never returned silently.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..runtime import BatchGuard
from .adapters import SEBlock, find_se_modules

__all__ = ["ExcitationProbe"]

logger = logging.getLogger(__name__)

_RECORD_KEYS = ("z", "s", "u_norm", "g_norm")
_MAP_KEYS = ("u", "g")


def _infer_channels(module: nn.Module) -> int | None:
    """C of an SE module from its first Linear/1x1-conv layer (its input width), or None if unknown."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            return sub.in_features
        if isinstance(sub, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            return sub.in_channels
    return None


def _stat_dtype(device: torch.device) -> torch.dtype:
    """float64 accumulators for the streaming aggregates, except where the backend lacks float64."""
    return torch.float32 if device.type == "mps" else torch.float64


@dataclass
class _BlockState:
    """Per-block buffers: the pending excitation of the current call, chunks or running aggregates."""

    name: str
    channels: int | None
    pending_s: torch.Tensor | None = None
    chunks: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    count: int = 0  # samples merged into the running aggregates (a Python int: no device sync)
    mean: torch.Tensor | None = None  # (2C + 2,) running mean of [z, s, |u|, |g|]
    m2: torch.Tensor | None = None  # (2C + 2,) running sum of squared deviations (Welford's M2)

    def reset(self) -> None:
        self.pending_s = None
        self.chunks = {}
        self.count = 0
        self.mean = None
        self.m2 = None


class ExcitationProbe:
    """Context manager that records z, s, |u| and |s * u| of each SE block, per sample.

    Mechanism. On ``__enter__`` the probe registers two forward hooks per SE block (found by
    :func:`serobust.excitation.adapters.find_se_modules`): one on the block's gate submodule, which keeps the
    excitation ``s`` of the current call (flattened to (B, C)), and one on the SE module itself,
    which sees the module's input ``u`` (B, C, H, W) and output ``g = s * u``, and records

    * ``z`` (B, C): the squeeze, ``u`` averaged over its spatial dimensions (computed from ``u``, so it
      does not depend on how the module pools);
    * ``s`` (B, C): the excitation, as the gate output it;
    * ``u_norm`` and ``g_norm`` (B,): L2 norms of ``u`` and ``g`` over C x H x W;
    * with ``store_maps=True`` also ``u`` and ``g`` themselves (cloned, since the model may modify its
      activations in place later; memory grows with samples x maps, so this is off by default).

    The gate fires inside the module's forward, so its hook always runs before the module's hook of
    the same call, which pairs them. Reductions are computed in float32 inside the hooks (also under
    bf16 autocast), results are detached and stay on the model's device: hooks never synchronise
    with the host. ``__exit__`` removes every hook, also when the body raised; the records stay
    readable after the ``with`` block.

    With ``streaming=True`` nothing per sample is kept: each batch is reduced to its count, mean and
    sum of squared deviations, merged into running aggregates with Chan et al.'s parallel form of
    Welford's algorithm (float64 accumulators), so memory is constant in the number of samples; read
    them with :meth:`aggregates`. To keep the hooks cheap (the probe costs about two passes over each
    gated map), the streaming hook takes the per-channel norms ``||u_c||`` in one pass and derives
    ``|g| = sqrt(sum_c s_c^2 ||u_c||^2)``, which is ``||s * u||`` by the SE contract that every
    adapter states; the per-sample mode measures ``|g|`` on the module's actual output.

    Args:
        model: a model with SE modules (a baseline without any raises :class:`NoSEModuleError`).
        streaming: keep only running aggregates per block instead of per-sample records.
        store_maps: also keep the maps ``u`` and ``g`` (not with ``streaming``).
        blocks: names of the SE modules to probe (as in :attr:`blocks`); default all.
        differentiable: keep the autograd graph of the records (z, s and the norms are not detached),
            so a loss on them can be differentiated with respect to the input: adaptive attacks and
            detectors read excitations this way. Not with ``streaming``; call :meth:`clear` (or
            :meth:`pop_records`) between steps so old graphs are freed.
        check_inputs: check every recorded input batch of the model (a forward pre-hook feeding a
            :class:`~serobust.runtime.BatchGuard`: float (N, C, H, W) images in [0, 1] without NaN;
            inputs of another rank are not images and are not checked). The flags stay on the
            device; :meth:`records`, :meth:`aggregates` and the end of the ``with`` block read them
            (one host sync) and raise :class:`~serobust.errors.InputError` naming the first bad
            batch. Library functions that checked their whole input once already pass ``False``,
            so that reading records batch by batch does not synchronise.

    Raises:
        NoSEModuleError: the model has no SE module a registered adapter recognises.
        ValueError: ``blocks`` names a module that is not an SE module of the model, or
            ``streaming`` and ``store_maps`` are both set.
        InputError: (when reading or leaving the ``with`` block) a recorded input batch was not a
            float image batch in [0, 1] without NaN; uint8 or wrong-rank images raise at once.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        streaming: bool = False,
        store_maps: bool = False,
        blocks: Iterable[str] | None = None,
        differentiable: bool = False,
        check_inputs: bool = True,
    ) -> None:
        if streaming and differentiable:
            raise ValueError("differentiable=True keeps per-call records with their graphs; streaming=True keeps "
                             "only running aggregates: choose one of them")
        if streaming and store_maps:
            raise ValueError("store_maps=True keeps per-sample maps, which streaming=True exists to avoid; "
                             "choose one of them")
        found = find_se_modules(model)  # raises NoSEModuleError with the fix for baselines
        if blocks is not None:
            if isinstance(blocks, str):
                blocks = [blocks]
            wanted = list(blocks)
            by_name = {b.name: b for b in found}
            unknown = [n for n in wanted if n not in by_name]
            if unknown:
                raise ValueError(f"blocks {unknown} are not SE modules of {type(model).__name__}; "
                                 f"valid names: {list(by_name)}")
            if not wanted:
                raise ValueError("blocks is empty; pass None to probe every SE module")
            order = {b.name: i for i, b in enumerate(found)}
            found = sorted((by_name[n] for n in dict.fromkeys(wanted)), key=lambda b: order[b.name])
        self.model = model
        self.streaming = streaming
        self.store_maps = store_maps
        self.differentiable = differentiable
        self.check_inputs = check_inputs
        self._guard: BatchGuard | None = None
        self._se: list[SEBlock] = found
        self._state = {b.name: _BlockState(b.name, _infer_channels(b.module)) for b in found}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._paused = 0
        self._active = False

    # ------------------------------------------------------------------ introspection
    @property
    def blocks(self) -> list[str]:
        """Names of the probed SE modules, in the model's definition order."""
        return [b.name for b in self._se]

    @property
    def channels(self) -> dict[str, int | None]:
        """Block name -> number of channels C (read from the module, confirmed by the first pass)."""
        return {name: st.channels for name, st in self._state.items()}

    @property
    def paused(self) -> bool:
        """Whether recording is currently paused (see :meth:`pause`)."""
        return self._paused > 0

    # ------------------------------------------------------------------ scope
    def __enter__(self) -> ExcitationProbe:
        if self._active:
            raise RuntimeError("this ExcitationProbe is already active; nest a new probe instead")
        try:
            if self.check_inputs:
                self._guard = BatchGuard("input of the probed model")
                self._handles.append(self.model.register_forward_pre_hook(self._guard_hook))
            for block in self._se:
                state = self._state[block.name]
                self._handles.append(block.gate.register_forward_hook(self._make_gate_hook(state)))
                self._handles.append(block.module.register_forward_hook(self._make_module_hook(state)))
        except BaseException:
            self._remove_hooks()
            raise
        self._active = True
        if self.model.training:
            warnings.warn("probing a model in training mode: BatchNorm uses batch statistics and dropout "
                          "is random; call model.eval() for reproducible excitations", stacklevel=2)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: Any) -> None:
        self._remove_hooks()
        self._active = False
        self._paused = 0
        for state in self._state.values():
            state.pending_s = None
        if exc_type is None:  # an exception on its way out is not masked by an input complaint
            self._check_guard()

    def _check_guard(self) -> None:
        if self._guard is not None:
            self._guard.check()

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        """Suspend recording inside the ``with`` block (e.g. while an attack calls the model).

        Hooks stay registered but return at once, so paused passes cost almost nothing and leave the
        records untouched. Pauses nest.
        """
        self._paused += 1
        try:
            yield
        finally:
            self._paused = max(0, self._paused - 1)

    def clear(self) -> None:
        """Drop every record and aggregate (hooks stay as they are)."""
        for state in self._state.values():
            state.reset()

    # ------------------------------------------------------------------ hooks
    def _guard_hook(self, module: nn.Module, args: tuple) -> None:
        """Forward pre-hook: record the input batch's NaN count and range on the device."""
        if self._paused or not args or not isinstance(args[0], torch.Tensor) or args[0].ndim != 4:
            return
        self._guard(args[0])

    def _make_gate_hook(self, state: _BlockState):
        def gate_hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            if self._paused:
                return
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"the gate of SE block {state.name!r} returned {type(output).__name__}, "
                                "not a tensor; register the right gate with register_se_adapter")
            s = output if self.differentiable else output.detach()
            state.pending_s = s.reshape(output.shape[0], -1)  # (B, C, 1, 1) -> (B, C)

        return gate_hook

    def _make_module_hook(self, state: _BlockState):
        def module_hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            if self._paused:
                return
            s, state.pending_s = state.pending_s, None
            if s is None:
                raise RuntimeError(f"SE block {state.name!r} ran without calling its gate; the adapter's "
                                   "gate name is wrong: fix it with register_se_adapter(<class>, gate=...)")
            u = args[0] if self.differentiable else args[0].detach()
            g = output if self.differentiable else output.detach()
            spatial = tuple(range(2, u.ndim))
            z = u.mean(dim=spatial, dtype=torch.float32)  # (B, C, H, W) -> (B, C)
            if s.shape != z.shape:
                raise RuntimeError(f"SE block {state.name!r}: gate output has {s.shape[1]} values per "
                                   f"sample but the input has {z.shape[1]} channels; the adapter's gate "
                                   "must output one value per channel")
            s = s.float()
            if self.streaming:  # fused: one pass over u gives both norms, none over g (g = s * u)
                sq = torch.linalg.vector_norm(u, dim=spatial, dtype=torch.float32).square()  # (B, C)
                u_norm = sq.sum(dim=1).sqrt()  # (B,)
                g_norm = (sq * s.square()).sum(dim=1).sqrt()  # (B,)
            else:  # measured on the module's actual output
                u_norm = torch.linalg.vector_norm(u, dim=tuple(range(1, u.ndim)), dtype=torch.float32)  # (B,)
                g_norm = torch.linalg.vector_norm(g, dim=tuple(range(1, g.ndim)), dtype=torch.float32)  # (B,)
            if state.channels != z.shape[1]:
                state.channels = int(z.shape[1])
            if self.streaming:
                self._merge(state, torch.cat([z, s, u_norm[:, None], g_norm[:, None]], dim=1))
                return
            values = {"z": z, "s": s, "u_norm": u_norm, "g_norm": g_norm}
            if self.store_maps:
                values["u"] = u.clone()
                values["g"] = g.clone()
            for key, value in values.items():
                state.chunks.setdefault(key, []).append(value)

        return module_hook

    @staticmethod
    def _merge(state: _BlockState, batch: torch.Tensor) -> None:
        """Merge one batch (B, 2C + 2) into the running count/mean/M2 (Chan et al. 1979)."""
        n_b = batch.shape[0]
        if n_b == 0:
            return
        batch = batch.to(_stat_dtype(batch.device))
        var_b, mean_b = torch.var_mean(batch, dim=0, correction=0)  # (2C + 2,) each
        m2_b = var_b * n_b
        if state.count == 0:
            state.mean, state.m2, state.count = mean_b, m2_b, n_b
            return
        n_a = state.count
        n = n_a + n_b
        delta = mean_b - state.mean
        state.mean = state.mean + delta * (n_b / n)
        state.m2 = state.m2 + m2_b + delta.square() * (n_a * n_b / n)
        state.count = n

    # ------------------------------------------------------------------ results
    def records(self, device: str | torch.device | None = "cpu") -> dict[str, dict[str, torch.Tensor]]:
        """Per-sample records, batches concatenated in the order they ran.

        Args:
            device: where to put the tensors (one transfer per tensor); ``None`` keeps them where
                they were recorded.

        Returns:
            ``{block: {"z": (N, C), "s": (N, C), "u_norm": (N,), "g_norm": (N,)}}``, plus ``"u"`` and
            ``"g"`` (N, C, H, W) with ``store_maps=True``. Blocks that saw no pass have N = 0.

        Raises:
            RuntimeError: the probe is streaming (use :meth:`aggregates`).
            InputError: a recorded input batch was not in [0, 1] or held NaN (``check_inputs``).
        """
        if self.streaming:
            raise RuntimeError("records() is not available with streaming=True: the probe kept only running "
                               "aggregates; read probe.aggregates(), or use streaming=False for per-sample data")
        self._check_guard()
        out: dict[str, dict[str, torch.Tensor]] = {}
        for name, state in self._state.items():
            block: dict[str, torch.Tensor] = {}
            keys = _RECORD_KEYS + (_MAP_KEYS if self.store_maps else ())
            for key in keys:
                chunks = state.chunks.get(key, [])
                if not chunks:
                    c = state.channels or 0
                    shape = (0,) if key in ("u_norm", "g_norm") else (0, c)
                    value = torch.empty(shape)
                else:
                    value = chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=0)
                block[key] = value if device is None else value.to(device)
            out[name] = block
        return out

    def pop_records(self, device: str | torch.device | None = None) -> dict[str, dict[str, torch.Tensor]]:
        """:meth:`records` (kept where they were recorded by default), then :meth:`clear`.

        The pattern of a loop that reduces each batch itself: forward, take that batch's records,
        reduce. With ``differentiable=True`` this also frees the previous step's graphs.
        """
        out = self.records(device=device)
        self.clear()
        return out

    def aggregates(self, device: str | torch.device | None = "cpu") -> dict[str, dict[str, Any]]:
        """Running aggregates of a streaming probe, per block.

        Returns:
            ``{block: {"count": int, "z_mean": (C,), "z_var": (C,), "s_mean": (C,), "s_var": (C,),
            "u_norm_mean", "u_norm_var", "g_norm_mean", "g_norm_var": 0-d}}``. Variances are sample
            variances (divisor N - 1; NaN for N < 2), float64 (float32 on MPS). A block that saw no
            pass has count 0 and no other keys.

        Raises:
            RuntimeError: the probe is not streaming (use :meth:`records`, or compute from it).
            InputError: a recorded input batch was not in [0, 1] or held NaN (``check_inputs``).
        """
        if not self.streaming:
            raise RuntimeError("aggregates() needs ExcitationProbe(..., streaming=True); this probe keeps "
                               "per-sample records: use probe.records()")
        self._check_guard()
        out: dict[str, dict[str, Any]] = {}
        for name, state in self._state.items():
            if state.count == 0:
                out[name] = {"count": 0}
                continue
            mean, m2 = state.mean, state.m2
            var = m2 / (state.count - 1) if state.count > 1 else torch.full_like(m2, float("nan"))
            if device is not None:
                mean, var = mean.to(device), var.to(device)
            c = (mean.shape[0] - 2) // 2
            out[name] = {
                "count": state.count,
                "z_mean": mean[:c], "z_var": var[:c],
                "s_mean": mean[c : 2 * c], "s_var": var[c : 2 * c],
                "u_norm_mean": mean[2 * c], "u_norm_var": var[2 * c],
                "g_norm_mean": mean[2 * c + 1], "g_norm_var": var[2 * c + 1],
            }
        return out

    def __repr__(self) -> str:
        mode = "streaming" if self.streaming else ("records+maps" if self.store_maps else "records")
        return f"ExcitationProbe({len(self._se)} SE blocks, {mode}, active={self._active})"
