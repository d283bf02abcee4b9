"""Runs of one attack: the seeds, the RNG handling, and one spec on one model at every eps of a call.

Each (attack, eps, batch) run starts from ``torch.manual_seed`` of a seed derived from
``(seed, attack label, eps, batch index)``: a result does not depend on which other attacks ran in the
same call or in which order, and :func:`~serobust.attacks.generate` reproduces the examples
:func:`~serobust.attacks.evaluate` scored. Attacks whose constructor takes a seed (torchattacks' APGD,
Square) get one derived from ``(seed, attack label, eps)``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from types import TracebackType

import torch
from torch import nn

from .base import AttackSpec, Runner

__all__ = ["spec_seed", "batch_seed", "SeededRuns", "Job"]


# ---------------------------------------------------------------------------------------------------------
# Seeding: one seed per (attack, eps, batch); the RNG forked once per call
# ---------------------------------------------------------------------------------------------------------


def spec_seed(seed: int, label: str, eps: float | None) -> int:
    """The seed handed to an attack's constructor (torchattacks' APGD and Square take one)."""
    return zlib.crc32(f"{seed}|{label}|{eps!r}".encode()) & 0x7FFFFFFF


def batch_seed(seed: int, label: str, eps: float | None, batch: int) -> int:
    """The global seed one run starts from; ``eps=None`` for a minimum-norm attack's single run."""
    return zlib.crc32(f"{seed}|{label}|{eps!r}|{batch}".encode()) & 0x7FFFFFFF


class SeededRuns:
    """Context for one call: every :meth:`run` starts from ``torch.manual_seed(seed)``.

    The CUDA generator of ``device`` is saved on entry and restored on exit (once per call, not once per
    batch: copying CUDA RNG state is a host transfer); ``manual_seed`` itself is host-side. The CPU
    generator is saved and restored around each run, so data loading between runs draws from the
    caller's stream exactly as under a per-run ``torch.random.fork_rng``.
    """

    def __init__(self, device: torch.device) -> None:
        self._cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
            if device.type == "cuda" else []
        self._states: list[torch.Tensor] = []

    def __enter__(self) -> SeededRuns:
        self._states = [torch.cuda.get_rng_state(d) for d in self._cuda]
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        for d, state in zip(self._cuda, self._states):
            torch.cuda.set_rng_state(state, d)

    def run(self, run: Runner, x: torch.Tensor, y: torch.Tensor, *, seed: int) -> torch.Tensor:
        """``run(x, y)`` from ``manual_seed(seed)``; detached float32."""
        cpu = torch.get_rng_state()
        torch.manual_seed(seed)
        try:
            x_adv = run(x, y)
        finally:
            torch.set_rng_state(cpu)
        return x_adv.detach().float()


# ---------------------------------------------------------------------------------------------------------
# One attack on one model at every eps of a call
# ---------------------------------------------------------------------------------------------------------


def _score(model: nn.Module):
    """The float32 forward of the harness's Logits wrapper (``model.score``), else the model."""
    return getattr(model, "score", model)


class Job:
    """One attack spec at every eps of a call: runners built on the first batch, reused for the rest.

    A minimum-norm attack runs once per batch (``eps=None``) and is scored per eps: an example keeps
    the attack's example if it fooled the model within eps (in the attack's norm), else its clean input.
    """

    def __init__(self, spec: AttackSpec, eps: Sequence[float], *, seed: int) -> None:
        self.spec = spec
        self.label = spec.label
        self.eps = list(eps)
        self.seed = seed
        self.runners: dict[int | None, Runner] = {}
        self.budgets: list[str] = []
        self.notes: list[list[str]] = []
        self.components: dict[int, list[torch.Tensor]] = {}  # eps index -> per batch, see ensemble runners

    def build(self, model: nn.Module, num_classes: int) -> None:
        """Budgets, notes and runners for ``model`` (the :class:`Logits` wrapper)."""
        impl, config = self.spec.implementation, self.spec.config
        self.budgets = [impl.budget(config, eps=e, num_classes=num_classes) for e in self.eps]
        self.notes = [["eps=0: clean evaluation, attack not run"] if e == 0 else [] for e in self.eps]
        wanted = [i for i, e in enumerate(self.eps) if e > 0]
        for i in [None] if impl.minimum_norm and wanted else wanted:
            e = None if i is None else self.eps[i]
            self.runners[i], extra = impl.runner(model, config, eps=e, num_classes=num_classes,
                                                 seed=spec_seed(self.seed, self.label, e))
            for j in wanted if i is None else [i]:
                self.notes[j] += extra

    def run(self, seeder: SeededRuns, model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, b: int,
            pred: torch.Tensor | None) -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None]]:
        """``(eps index, x_adv, adv_pred)`` for every eps; eps = 0 gives ``(xb, pred)``. ``adv_pred``
        (one forward per run) only when the clean ``pred`` is given."""
        if self.spec.minimum_norm:
            yield from self._run_minimum_norm(seeder, model, xb, yb, b, pred)
            return
        for i, e in enumerate(self.eps):
            if e == 0:
                yield i, xb, pred
                continue
            x_adv = seeder.run(self.runners[i], xb, yb, seed=batch_seed(self.seed, self.label, e, b))
            component = getattr(self.runners[i], "component", None)  # an ensemble says which member fooled
            if component is not None:
                self.components.setdefault(i, []).append(component)
            adv_pred = None
            if pred is not None:
                with torch.no_grad():
                    adv_pred = _score(model)(x_adv).argmax(1)  # float32: this prediction is counted
            yield i, x_adv, adv_pred

    def _run_minimum_norm(self, seeder: SeededRuns, model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, b: int,
                          pred: torch.Tensor | None) -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None]]:
        raw = None
        for i, e in enumerate(self.eps):
            if e == 0:
                yield i, xb, pred
                continue
            if raw is None:  # once per batch, for every eps
                raw = seeder.run(self.runners[None], xb, yb, seed=batch_seed(self.seed, self.label, None, b))
                with torch.no_grad():
                    raw_pred = _score(model)(raw).argmax(1)  # (B,), float32
                order = float("inf") if self.spec.norm == "Linf" else 2.0
                size = torch.linalg.vector_norm((raw - xb).flatten(1), order, dim=1)  # (B,)
                fooled = raw_pred != yb
            within = fooled & (size <= e)  # (B,)
            x_adv = torch.where(within.view(-1, *([1] * (xb.ndim - 1))), raw, xb)
            yield i, x_adv, None if pred is None else torch.where(within, raw_pred, pred)
