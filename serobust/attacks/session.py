"""One attack call's setup, shared by :func:`~.harness.generate`, :func:`~.harness.evaluate` and
:func:`~.transfer.evaluate_transfer`: :class:`AttackSession`.

A session owns what every entry point needs around its attack loop, so each entry point is only its own
loop body and tables:

* the device (:func:`attack_device`: the models' device, checked against ``device=``) and the
  :class:`Logits` wrapper of every model (bf16 autocast for crafting where :func:`autocast_on` allows it,
  a float32 :meth:`Logits.score` for every counted prediction);
* the batches (:class:`~.batches.GuardedBatches`: every batch's images and labels checked on the device)
  and :func:`blame_input` (an error while attacking checks the input first);
* the model state (:func:`serobust.runtime.attack_state`) and the seeding (:class:`~.runs.SeededRuns`,
  the RNG forked once per call; the per-run seeds are derived in :mod:`~.runs`);
* the output checks (:class:`~.checks.OutputChecks`, read back once), the :class:`Ledger` (per-batch
  results kept on the device, one transfer per dtype at the end), the progress bar and the run notes.

Nothing here syncs with the host inside the loop: :meth:`AttackSession.finish` reads everything back once.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DeviceError, InputError
from ..runtime import attack_state, fp32_scoring, model_device, resolve_device
from .batches import GuardedBatches
from .checks import OutputChecks
from .runs import SeededRuns

__all__ = ["AttackSession", "Logits", "Ledger", "attack_device", "autocast_on", "AUTOCAST_DEVICES"]

#: devices on which ``autocast=True`` crafts under bf16 autocast (elsewhere it is ignored, with a note)
AUTOCAST_DEVICES = ("cuda",)


# ---------------------------------------------------------------------------------------------------------
# The model as the attacks see it, and where it runs
# ---------------------------------------------------------------------------------------------------------


class Logits(nn.Module):
    """The model as the attacks see it: logits cast to float32, computed under bf16 autocast with
    channels_last input when asked (CUDA only; the attack's own forwards). :meth:`score` is the float32
    forward (autocast and TF32 off) for every prediction that is counted.

    The empty ``anchor`` parameter makes ``next(parameters())`` name the right device for torchattacks
    even when the wrapped model has no parameters (torchattacks would print otherwise).
    """

    def __init__(self, model: nn.Module, *, device: torch.device, autocast: bool) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.empty(0, device=device), requires_grad=False)
        self.model = model
        self.autocast = autocast
        self.device_type = device.type
        self.training = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.autocast:
            with torch.autocast(device_type=self.device_type, dtype=torch.bfloat16):
                return self._checked(self.model(x.contiguous(memory_format=torch.channels_last)))
        return self._checked(self.model(x))

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Float32 logits from a float32 forward (autocast and TF32 off): what predictions are counted from."""
        with fp32_scoring():
            return self._checked(self.model(x))

    @staticmethod
    def _checked(out: object) -> torch.Tensor:
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the model must return logits of shape (batch, num_classes), got {got}")
        return out.float()

    def train(self, mode: bool = True) -> Logits:
        # torchattacks' __call__ does wrapper.eval() ... wrapper.train(given_training); propagating that
        # would switch the wrapped model (BatchNorm statistics!) to training mode for the next forward.
        # The wrapped model keeps the mode attack_state gave it.
        self.training = mode
        return self


def attack_device(models: Sequence[nn.Module], device: str | torch.device | None) -> torch.device:
    """The device to attack on: ``device`` (checked with :func:`~serobust.runtime.resolve_device`) or the
    first model's; every model must already be there."""
    for model in models:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module classifier, got {type(model).__name__}")
    found = [model_device(m) for m in models]
    want = found[0] if device is None else resolve_device(device)
    for d in found:
        same = d.type == want.type and (want.index is None or d.index is None or d.index == want.index)
        if not same:
            raise DeviceError(f"the model is on {d} but device={want}; move it first with model.to({str(want)!r})")
    if want.type == "cuda" and want.index is None:
        want = found[0] if found[0].type == "cuda" else torch.device("cuda", torch.cuda.current_device())
    return want


def autocast_on(autocast: bool, device: torch.device) -> tuple[bool, list[str]]:
    """Whether bf16 autocast applies on ``device``, and the note saying so."""
    if not autocast:
        return False, []
    if device.type in AUTOCAST_DEVICES:
        return True, ["crafted under bf16 autocast, channels_last; scored in float32"]
    return False, [f"autocast ignored on {device.type} (float32)"]


# ---------------------------------------------------------------------------------------------------------
# Bookkeeping on the device, read back once
# ---------------------------------------------------------------------------------------------------------


class Ledger:
    """Per-batch 1-D device tensors under keys; :meth:`host` concatenates them with one transfer per dtype."""

    def __init__(self) -> None:
        self._parts: dict[Hashable, list[torch.Tensor]] = {}

    def add(self, key: Hashable, value: torch.Tensor) -> None:
        self._parts.setdefault(key, []).append(value)

    def __bool__(self) -> bool:
        return bool(self._parts)

    def host(self) -> dict[Hashable, torch.Tensor]:
        """Every key's batches concatenated, on the CPU."""
        whole = {key: torch.cat(parts) for key, parts in self._parts.items()}
        out: dict[Hashable, torch.Tensor] = {}
        for dtype in {t.dtype for t in whole.values()}:
            keys = [k for k, t in whole.items() if t.dtype == dtype]
            flat = torch.cat([whole[k] for k in keys]).cpu()  # the one transfer for this dtype
            out.update(zip(keys, flat.split([len(whole[k]) for k in keys])))
        return out


@contextlib.contextmanager
def blame_input(stream: GuardedBatches) -> Iterator[None]:
    """If anything fails while attacking, check the input first: a bad batch is the user's to fix."""
    try:
        yield
    except InputError:
        raise
    except Exception:
        stream.check()
        raise


def progress_bar(progress: bool | None, total: int | None, desc: str) -> Any:
    """A tqdm bar on stderr (None: when stderr is a terminal), or a null context."""
    show = sys.stderr.isatty() if progress is None else bool(progress)
    if not show:
        return contextlib.nullcontext(None)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False)


def mean(t: torch.Tensor) -> float:
    """The mean of a host tensor as a Python float (double precision); NaN when empty."""
    return float(t.double().mean()) if len(t) else float("nan")


def join_notes(notes: Iterable[str]) -> str:
    """Notes joined with ``"; "``, each once, in first-seen order; empty notes dropped."""
    seen: list[str] = []
    for note in notes:
        if note and note not in seen:
            seen.append(note)
    return "; ".join(seen)


# ---------------------------------------------------------------------------------------------------------
# The session
# ---------------------------------------------------------------------------------------------------------


class AttackSession:
    """Everything one harness call sets up around its attack loop.

    Usage (what every entry point does)::

        session = AttackSession({"model": model}, data, batch_size=256, device=None, autocast=False,
                                order_matters=True)
        with session.running(progress=None, runs_per_batch=n, desc="attacks") as seeder:
            for b, xb, yb in session.stream:                  # device batches, checked
                logits, grad = session.clean_pass("model", xb, yb, input_gradients=True)
                if b == 0:
                    session.record("model", xb, logits)      # softmax / randomness checks
                ...  # Job.run(seeder, session.wrapped["model"], ...); session.ledger.add(...); session.tick()
        host = session.finish(stacklevel=2)                  # input checks, warnings, one transfer per dtype

    Args:
        models: the models by role (``{"model": m}``, or ``{"source": s, "target": t}``); all on one device.
        data: a Dataset, a DataLoader or an (x, y) pair (see :func:`~.batches.batches`).
        batch_size: examples per batch (already checked).
        device: where the attacks run; None means the first model's device.
        autocast: craft under bf16 autocast where :data:`AUTOCAST_DEVICES` allows (else a note says so).
        order_matters: warn if a shuffling DataLoader makes per-example indices meaningless.

    Attributes:
        device: the device the attacks run on.
        wrapped: the :class:`Logits` wrapper per role: what the attacks see.
        stream: the checked batches.
        ledger: per-batch device tensors, read back by :meth:`finish`.
        notes: the notes of the whole call (autocast), for every row.
    """

    def __init__(self, models: Mapping[str, nn.Module], data: Any, *, batch_size: int,
                 device: str | torch.device | None, autocast: bool, order_matters: bool) -> None:
        self.models = dict(models)
        self.device = attack_device(list(self.models.values()), device)
        use_autocast, self.notes = autocast_on(autocast, self.device)
        self.stream = GuardedBatches(data, batch_size, device=self.device, order_matters=order_matters)
        self.wrapped = {role: Logits(m, device=self.device, autocast=use_autocast) for role, m in self.models.items()}
        self.checks = {role: OutputChecks("the model" if role == "model" else f"the {role} model")
                       for role in self.models}
        self.ledger = Ledger()
        self._bar: Any = None

    @contextlib.contextmanager
    def running(self, *, progress: bool | None = False, runs_per_batch: int = 0,
                desc: str = "attacks") -> Iterator[SeededRuns]:
        """The attack loop's context: models in attack state, the RNG forked, the input blamed first on
        errors, and a progress bar of ``runs_per_batch`` ticks per batch (see :meth:`tick`). Yields the
        :class:`~.runs.SeededRuns` every run starts from."""
        total = self.stream.n_batches
        with attack_state(*self.models.values()), SeededRuns(self.device) as seeder, blame_input(self.stream), \
                progress_bar(progress, None if total is None else total * runs_per_batch, desc) as bar:
            self._bar = bar
            try:
                yield seeder
            finally:
                self._bar = None

    def tick(self) -> None:
        """One run done: advance the progress bar, if shown."""
        if self._bar is not None:
            self._bar.update(1)

    def clean_pass(self, role: str, xb: torch.Tensor, yb: torch.Tensor, *,
                   input_gradients: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Clean float32 logits (B, K) of ``role``'s model (:meth:`Logits.score`), and the input gradient of
        the summed CE loss if asked; the batch's labels checked against K in between."""
        xg = xb.detach().requires_grad_(input_gradients)
        with torch.set_grad_enabled(input_gradients), fp32_scoring():  # the backward for grad_norm too
            out = self.wrapped[role].score(xg)  # (B, K)
            self.stream.check_labels(out.shape[1])
            grad = torch.autograd.grad(F.cross_entropy(out, yb, reduction="sum"), xg)[0] if input_gradients else None
        return out.detach(), grad

    def record(self, role: str, xb: torch.Tensor, logits: torch.Tensor) -> None:
        """Record the output checks of ``role``'s model on one batch (its clean float32 ``logits``)."""
        self.checks[role].record(self.wrapped[role], xb, logits)

    def finish(self, *, stacklevel: int) -> dict[Hashable, torch.Tensor]:
        """After the loop: the input checks read back first (a bad batch is not a harness bug), the output
        warnings (``stacklevel`` as for :func:`warnings.warn` from the caller), then the ledger on the host.

        Raises:
            ValueError: nothing was recorded (empty data).
            InputError: a batch's images or labels were bad, naming the batch.
        """
        if not self.ledger:
            raise ValueError("data is empty; give at least one (x, y) example")
        self.stream.check()
        for checks in self.checks.values():
            checks.report(stacklevel=stacklevel + 1)
        return self.ledger.host()
