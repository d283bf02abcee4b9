"""A trainer for any classifier and any :class:`~serobust.data.DatasetBundle`.

SGD with Nesterov momentum and weight decay, a one-cycle or cosine schedule computed from the global
step (so a resumed run picks up exactly where it stopped), optional label smoothing and optional
adversarial training (PGD-AT, Madry et al. 2018; FGSM with random start, Wong et al. 2020) in [0, 1]
pixel space. On CUDA the forward/backward runs under bf16 autocast with channels_last tensors; on the
CPU it is plain float32 (channels_last too, which measured faster there: ``benchmarks/train_throughput.py``).
The per-epoch test accuracy is always scored in float32 (autocast and TF32 off:
:func:`serobust.runtime.fp32_scoring`), whatever the training step used.

On CUDA each training step is by default one CUDA graph (``TrainConfig.cuda_graph``): a small model's
step is a few hundred short kernels, and launching them from Python costs more than running them (about
11 ms a step for a ResNet-20 on an H100, whatever the batch size). Recorded once and replayed with one
launch, the step costs the GPU time only. With adversarial training the graph holds the whole
adversarial step: the random start (from uniform draws made outside the graph into a static buffer), every
PGD / FGSM-RS iteration and the update, so PGD-7 AT is one launch instead of eight launch-bound passes.
See :class:`_GraphedStep` for the protocol, which follows PyTorch's "whole-network capture" recipe
(``torch.cuda.graph``, static input buffers, warm-up on a side stream, fused SGD reading a learning-rate
tensor). On the CPU nothing changes: the step runs eagerly.

Determinism: every source of randomness in an epoch comes from generators seeded by ``(seed, epoch)``:
the data order from a CPU generator on every device (so a seed sees the same batches on the CPU and on a
GPU), augmentation and attack random starts from the same generator on the CPU and from a generator on the
training device on CUDA. On the CPU a run is therefore bit-identical for a given seed, a baseline and its SE
twin see the same batches in the same order, and a run resumed from the checkpoint of epoch k ends with the
same weights as an uninterrupted one. On CUDA the same holds statistically, not bit for bit: cuDNN picks
non-deterministic kernels and atomics change the last bits, which ``sign()`` in the attack steps turns into
different adversarial examples (``serobust.runtime.deterministic_cuda`` makes CUDA repeatable on one
machine, at some speed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .eps import parse_eps
from .errors import DeviceError, SerobustError
from .io import CheckpointError, atomic_torch_save, atomic_write_text, load_checkpoint
from .linf_pgd import default_alpha, linf_pgd, start_from_noise, uniform_noise
from .runtime import check_batch_size, eval_mode, fp32_scoring, model_device, resolve_device

__all__ = ["TrainConfig", "train", "evaluate_accuracy", "resolve_device"]

log = logging.getLogger(__name__)

SCHEDULES = ("onecycle", "cosine", "constant")
ADVERSARIAL_TRAINING = (None, "pgd", "fgsm_rs")
CUDA_GRAPH_MODES = ("auto", "on", "off")
# TrainConfig fields that choose how a step runs, not what it computes: a checkpoint written under one
# value resumes under another (the saved state is the same)
_EXECUTION_ONLY = frozenset({"cuda_graph"})
_GRAPH_WARMUP_STEPS = 3  # eager steps before capture (PyTorch's make_graphed_callables default)


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters; frozen, so a config can key a checkpoint cache.

    The defaults train serobust's ``cnn`` on mnist5k to about 98-99% test accuracy in well under a minute
    on 2 CPU cores (measured: see the README).
    """

    epochs: int = 8  # full passes over the training set
    batch_size: int = 64  # images per SGD step
    lr: float = 0.05  # peak learning rate (reached after warmup for onecycle/cosine)
    momentum: float = 0.9  # Nesterov momentum
    weight_decay: float = 5e-4  # L2 on all parameters (SGD's coupled weight decay)
    schedule: str = "onecycle"  # "onecycle" (linear warmup, linear decay to 0), "cosine" (warmup, cosine decay), "constant"
    warmup_frac: float = 0.2  # share of all steps spent warming up (onecycle and cosine)
    label_smoothing: float = 0.0  # cross-entropy label smoothing in [0, 1)
    seed: int = 0  # seeds data order, augmentation and attack random starts
    adversarial: str | None = None  # None, "pgd" (Madry PGD-AT) or "fgsm_rs" (Wong et al. fast AT)
    adv_eps: float | str = "8/255"  # Linf budget in [0, 1] pixel units for adversarial training
    adv_steps: int = 7  # PGD-AT steps (ignored by fgsm_rs)
    adv_alpha: float | str | None = None  # step size; default 2.5 * eps / steps (PGD), 1.25 * eps (fgsm_rs)
    eval_batch_size: int = 1000  # batch size for the per-epoch test accuracy
    channels_last: bool = True  # NHWC tensors; on 2 CPU cores 1.1x (resnet20) to 1.2-1.45x (cnn) faster, see benchmarks/
    # "auto": each step one CUDA graph on CUDA (one launch instead of hundreds; with adversarial
    # training the attack iterations are inside the graph too), eager on the CPU;
    # "on": the same, an error without CUDA; "off": eager everywhere
    cuda_graph: str = "auto"

    def __post_init__(self) -> None:
        def bad(key: str, allowed: str) -> ValueError:
            return ValueError(f"TrainConfig.{key} = {getattr(self, key)!r} is invalid; allowed: {allowed}")

        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise bad("epochs", "an integer >= 1")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise bad("batch_size", "an integer >= 1")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise bad("lr", "a positive finite number")
        if not 0 <= self.momentum < 1:
            raise bad("momentum", "a number in [0, 1)")
        if not self.weight_decay >= 0:
            raise bad("weight_decay", "a number >= 0")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", ", ".join(SCHEDULES))
        if not 0 <= self.warmup_frac < 1:
            raise bad("warmup_frac", "a number in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            raise bad("label_smoothing", "a number in [0, 1)")
        if isinstance(self.adversarial, str) and self.adversarial.lower() in ("none", ""):
            object.__setattr__(self, "adversarial", None)  # TOML has no null
        if self.adversarial not in ADVERSARIAL_TRAINING:
            raise bad("adversarial", "none, 'pgd' or 'fgsm_rs'")
        # store budgets as floats so "8/255" and 0.0313... hash and compare equal
        object.__setattr__(self, "adv_eps", parse_eps(self.adv_eps, name="TrainConfig.adv_eps"))
        if self.adv_alpha is not None:
            object.__setattr__(self, "adv_alpha", parse_eps(self.adv_alpha, name="TrainConfig.adv_alpha"))
        if not isinstance(self.adv_steps, int) or self.adv_steps < 1:
            raise bad("adv_steps", "an integer >= 1")
        if not isinstance(self.eval_batch_size, int) or self.eval_batch_size < 1:
            raise bad("eval_batch_size", "an integer >= 1")
        if self.cuda_graph not in CUDA_GRAPH_MODES:
            raise bad("cuda_graph", "'auto' (CUDA graphs on CUDA, eager on the CPU), 'on' or 'off'")

    def to_dict(self) -> dict[str, Any]:
        """Every field, as checkpoints and study task keys record them (``cuda_graph`` included: on CUDA the
        graphed step uses fused SGD, which changes results in the last bits)."""
        return dataclasses.asdict(self)


def _lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Learning rate of a global step; stateless so that resumed runs need only the step count."""
    if cfg.schedule == "constant":
        return cfg.lr
    warm = int(cfg.warmup_frac * total)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    frac = (step - warm) / max(1, total - warm)
    if cfg.schedule == "onecycle":
        return cfg.lr * max(0.0, 1.0 - frac)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * frac))


def _epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed * 1_000_003 + epoch)
    return g


def _epoch_order(n: int, seed: int, epoch: int, gen: torch.Generator) -> torch.Tensor:
    """The epoch's permutation of ``n`` examples, always drawn on the CPU (from ``gen`` itself when it is the
    CPU epoch generator, else from a CPU generator seeded alike), so that a seed sees the same batches on
    every device. A CPU tensor: the caller moves it (one host-to-device copy per epoch)."""
    order_gen = gen if gen.device.type == "cpu" else _epoch_generator(seed, epoch, torch.device("cpu"))
    return torch.randperm(n, generator=order_gen)


def _autocast(device: torch.device, *, cache: bool = True):
    """bf16 autocast on CUDA, nothing elsewhere; ``cache=False`` for a region captured as a CUDA graph
    (autocast's weight-cast cache must be off under capture, as ``torch.cuda.make_graphed_callables``
    requires; the casts are the same, only recomputed)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda", cache_enabled=cache)


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA only): once an epoch, so that timings are the GPU's."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class _Attack:
    """The inner maximisation of adversarial training: ``steps`` Linf PGD steps of size ``alpha`` from a
    uniform start in the eps ball ([0, 1] pixel units)."""

    eps: float
    alpha: float
    steps: int

    @classmethod
    def of(cls, cfg: TrainConfig) -> _Attack | None:
        """FGSM-RS (Wong et al. 2020) is one step of size ``1.25 * eps``, PGD-AT (Madry et al. 2018)
        ``adv_steps`` steps of size ``2.5 * eps / steps``, unless ``adv_alpha`` is set; None without AT."""
        if cfg.adversarial is None:
            return None
        eps = parse_eps(cfg.adv_eps)
        if cfg.adversarial == "fgsm_rs":
            return cls(eps, parse_eps(cfg.adv_alpha) if cfg.adv_alpha is not None else 1.25 * eps, 1)
        alpha = parse_eps(cfg.adv_alpha) if cfg.adv_alpha is not None else default_alpha(eps, cfg.adv_steps)
        return cls(eps, alpha, cfg.adv_steps)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor,
                 device: torch.device, *, cache: bool = True) -> torch.Tensor:
        """Adversarial examples from the start ``x + (2 * noise - 1) * eps`` (``noise``: U[0, 1) draws of x's
        shape). No random draw and no host sync, so a CUDA graph can hold it; ``cache`` as for
        :func:`_autocast`. The model stays in the mode the trainer put it in; bf16 autocast on CUDA, as for
        the training step. Only the input gets gradients."""

        def loss(x_adv: torch.Tensor) -> torch.Tensor:
            with _autocast(device, cache=cache):
                return F.cross_entropy(model(x_adv), y)

        return linf_pgd(loss, x, eps=self.eps, alpha=self.alpha, steps=self.steps,
                        start=start_from_noise(x, noise, self.eps))


def _adversarial_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
                       gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """PGD-AT or FGSM-RS examples in [0, 1] pixel space (the shared :func:`~serobust.linf_pgd.linf_pgd`),
    starting at a uniform random point of the eps ball drawn from ``gen`` (the epoch's generator): what
    the training step computes before its update (see :class:`_Attack`)."""
    attack = _Attack.of(cfg)
    if attack is None:
        raise ValueError("TrainConfig.adversarial is None: there is no adversarial batch to make")
    return attack(model, x, y, uniform_noise(x, generator=gen), device)


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1000,
                      channels_last: bool = False) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on tensors, in eval mode, restoring every mode after.

    Scored in float32 (:func:`serobust.runtime.fp32_scoring`: autocast and TF32 off), also when the
    caller runs under autocast: this is a number that reaches a table. Runs on the model's device
    (:func:`serobust.runtime.model_device`: the CPU for a model without parameters or buffers); counts
    stay on the device until the one transfer at the end.

    Raises:
        ValueError: ``batch_size`` is not an integer >= 1.
    """
    batch_size = check_batch_size(batch_size)
    device = model_device(model)
    correct = torch.zeros((), device=device)
    loss = torch.zeros((), device=device)
    with eval_mode(model), fp32_scoring():
        for i in range(0, len(y), batch_size):
            xb = x[i : i + batch_size].to(device, non_blocking=True)
            yb = y[i : i + batch_size].to(device, non_blocking=True)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            out = model(xb).float()
            correct += (out.argmax(1) == yb).sum()
            loss += F.cross_entropy(out, yb, reduction="sum")
    n = max(1, len(y))
    return correct.item() / n, loss.item() / n


# ----------------------------------------------------------------------------------------------------------
# One training step, eager or as a CUDA graph
# ----------------------------------------------------------------------------------------------------------


def _use_cuda_graph(setting: str, device: torch.device) -> bool:
    """Whether the steps run as a CUDA graph: ``"auto"`` and ``"on"`` on CUDA, never on another device.

    Raises:
        DeviceError: ``"on"`` without a CUDA device.
    """
    if setting == "off":
        return False
    if device.type == "cuda":
        return True
    if setting == "on":
        raise DeviceError(f"TrainConfig.cuda_graph = 'on' needs a CUDA device, but training runs on {device}; "
                          "use cuda_graph = 'auto' (graphs on CUDA, eager elsewhere) or 'off'")
    return False


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with Nesterov momentum; weight decay on weights (ndim > 1) only, not on biases and BN affines."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return torch.optim.SGD(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
    )


def _set_step_mode(opt: torch.optim.SGD, *, device: torch.device, capturable: bool) -> None:
    """Eager: PyTorch's default SGD kernels and a Python-float learning rate set every step (as always).

    Capturable: fused SGD (one multi-tensor kernel for all parameters) reading the learning rate from one
    float32 tensor on the device that every group shares: a CUDA graph replays the kernels it recorded with
    the arguments it recorded, so a learning rate passed as a Python number would be frozen at its value
    during capture; the fused kernel reads ``lr`` through a device pointer instead (the foreach kernels would
    turn a tensor ``lr`` into a Python number, a host sync that capture forbids). Applied after
    ``load_state_dict``, which replaces every group's options by the saved ones.
    """
    lr = torch.zeros((), dtype=torch.float32, device=device) if capturable else None  # set before every step
    for group in opt.param_groups:
        group["fused"] = True if capturable else None
        group["foreach"] = None
        if lr is not None:
            group["lr"] = lr


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """The learning rate of the coming step: in place into the shared device tensor (capturable mode: one
    fill kernel, no host sync), else into every group as a Python float."""
    first = opt.param_groups[0]["lr"]
    if isinstance(first, torch.Tensor):
        first.fill_(lr)
    else:
        for group in opt.param_groups:
            group["lr"] = lr


class _Step:
    """One SGD step on a batch: (the adversarial examples,) forward, loss, backward, optimizer step, and the
    epoch's running totals.

    Everything it does stays on the device (no ``.item()``, no data-dependent shapes, no random draw: the
    attack's random start comes in as ``noise``), so the same code runs eagerly or is captured whole as a
    CUDA graph by :class:`_GraphedStep`. Gradients are set to ``None`` before backward, so backward assigns
    them (in a capture: from the graph's private memory pool).

    Attributes:
        loss_sum, correct: summed loss and count of correct predictions since :meth:`reset_totals`;
            0-dim device tensors updated in place (a captured graph keeps writing to the same memory).
    """

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, loss_fn: nn.Module, device: torch.device,
                 *, capturable: bool = False, attack: _Attack | None = None) -> None:
        self.model, self.opt, self.loss_fn, self.device = model, opt, loss_fn, device
        self.capturable = capturable
        self.attack = attack
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device)

    def reset_totals(self) -> None:
        self.loss_sum.zero_()
        self.correct.zero_()

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor, noise: torch.Tensor | None = None) -> None:
        """One step on ``(xb, yb)``; with an attack, on its adversarial examples from the start ``noise``."""
        if self.attack is not None:
            if noise is None:
                raise ValueError("adversarial training step without its random-start noise")
            xb = self.attack(self.model, xb, yb, noise, self.device, cache=not self.capturable)
        with _autocast(self.device, cache=not self.capturable):
            out = self.model(xb)  # (B, classes)
            loss = self.loss_fn(out.float(), yb)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.loss_sum += loss.detach() * len(yb)
        self.correct += (out.detach().argmax(1) == yb).sum()


class _GraphedStep:
    """A :class:`_Step` captured as one CUDA graph and replayed from static input buffers.

    PyTorch's whole-network capture (``torch.cuda.graph``; "CUDA Graphs" in the CUDA semantics notes):

    1. warm-up: the first ``warmup`` batches of the full batch size run as ordinary eager steps on a side
       stream. They are real training steps; they also do what must not happen during capture: create
       the momentum buffers (the fused step's first-step branch), cuBLAS/cuDNN handles and workspaces;
    2. capture: the next full batch (and its attack noise) is copied into static buffers and the step
       (attack iterations included) is recorded on that same
       side stream (one stream for warm-up and capture, as ``make_graphed_callables`` does). Recording
       runs nothing, so the graph is replayed at once for this batch;
    3. replay: every later full batch is copied into the static buffers and the graph replayed: one
       launch for the forward, backward, fused SGD step and running totals.

    A batch of another size (the last, smaller batch of an epoch) runs the same step eagerly: it sets the
    gradients to ``None`` and backward allocates new ones, while the graph keeps its own gradient memory in
    its private pool, which no eager allocation can take. Without CUDA (tests on the CPU) the three phases
    call the step eagerly on the static buffers, which is what a replay computes. A failed capture raises
    :class:`~serobust.errors.SerobustError` naming the fix (``cuda_graph = "off"``).
    """

    def __init__(self, step: _Step, *, warmup: int = _GRAPH_WARMUP_STEPS) -> None:
        self.step = step
        self.device = step.device
        self.warmup_left = warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self._x: torch.Tensor | None = None  # static inputs (B, C, H, W) and (B,), shaped by the first batch
        self._y: torch.Tensor | None = None
        self._noise: torch.Tensor | None = None  # the attack's U[0, 1) draws (B, C, H, W), or None without AT
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor, noise: torch.Tensor | None = None) -> None:
        if self._x is None:
            self._x, self._y = torch.empty_like(xb), torch.empty_like(yb)
            self._noise = torch.empty_like(noise) if noise is not None else None
        if xb.shape != self._x.shape or yb.shape != self._y.shape:
            self.step(xb, yb, noise)
            return
        if self.warmup_left > 0:
            self.warmup_left -= 1
            with self._side_stream():
                self.step(xb, yb, noise)
            return
        self._x.copy_(xb)
        self._y.copy_(yb)
        if self._noise is not None:
            self._noise.copy_(noise)
        if self.graph is None and self._stream is not None:
            self._capture()
        if self.graph is not None:
            self.graph.replay()
        else:
            self.step(self._x, self._y, self._noise)

    @contextlib.contextmanager
    def _side_stream(self) -> Iterator[None]:
        if self._stream is None:
            yield
            return
        main = torch.cuda.current_stream(self.device)
        self._stream.wait_stream(main)
        with torch.cuda.stream(self._stream):
            yield
        main.wait_stream(self._stream)

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self._stream):
                self.step(self._x, self._y, self._noise)
        except RuntimeError as e:
            raise SerobustError(
                f"capturing the training step as a CUDA graph failed ({type(e).__name__}: {str(e).splitlines()[0]}); "
                "the model's forward probably synchronizes with the host (.item(), data-dependent shapes or "
                "control flow). Train eagerly: TrainConfig(cuda_graph='off') ([train] cuda_graph = \"off\")"
            ) from e
        self.graph = graph
        log.info("training step captured as a CUDA graph (batch %d)", self._x.shape[0])


def _train_epoch(run: Callable[..., None], step: _Step, x: torch.Tensor,
                 y: torch.Tensor, augment: Any, cfg: TrainConfig, epoch: int, bar: tqdm) -> tuple[float, float]:
    """One pass over ``(x, y)`` in the epoch's random order; returns (last learning rate, seconds).

    Per step the host only queues device work (batch gather, augmentation, the attack's start draws, the
    step with its attack): no host sync, so on CUDA it can run ahead of the GPU; the one wait at the end
    makes the time the GPU's. The order comes from :func:`_epoch_order` (CPU-drawn); augmentation and the
    attack's start are drawn from the epoch generator in that order, batch by batch.
    """
    model, dev = step.model, step.device
    n = len(y)
    steps = math.ceil(n / cfg.batch_size)
    total_steps = steps * cfg.epochs
    model.train()
    t0 = time.perf_counter()
    gen = _epoch_generator(cfg.seed, epoch, dev)
    perm = _epoch_order(n, cfg.seed, epoch, gen).to(dev)
    step.reset_totals()
    for i in range(steps):
        lr = _lr_at(epoch * steps + i, total_steps, cfg)
        _set_lr(step.opt, lr)
        idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
        xb, yb = x[idx], y[idx]  # (B, C, H, W), (B,)
        if augment is not None:
            xb = augment(xb, generator=gen)
        if cfg.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        noise = uniform_noise(xb, generator=gen) if step.attack is not None else None  # outside any graph
        run(xb, yb, noise)
        bar.update(1)
    _sync(dev)
    return lr, time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------


def _model_signature(model: nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict without the fields that do not change what is computed (``_EXECUTION_ONLY``)."""
    return {k: v for k, v in config.items() if k not in _EXECUTION_ONLY}


def _load_resume(path: Path, model: nn.Module, cfg: TrainConfig) -> dict | None:
    if not path.exists():
        return None
    ckpt = load_checkpoint(path, kind="train")
    if ckpt.get("signature") != _model_signature(model):
        raise CheckpointError(
            f"checkpoint {path} belongs to a different model (parameter names or shapes differ); "
            "use another checkpoint_dir or delete the file to train afresh"
        )
    saved, current = _identity(ckpt.get("config", {})), _identity(cfg.to_dict())
    if saved != current:
        changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        raise CheckpointError(
            f"checkpoint {path} was trained with another TrainConfig (differs in: {', '.join(changed)}); "
            "use another checkpoint_dir or delete the file to train afresh"
        )
    return ckpt


def _resume(path: Path | None, model: nn.Module, opt: torch.optim.Optimizer,
            cfg: TrainConfig) -> tuple[list[dict[str, float]], int]:
    """Load a compatible ``last.pt`` into ``model`` and ``opt``; returns (history so far, epochs done)."""
    ckpt = _load_resume(path, model, cfg) if path is not None else None
    if ckpt is None:
        return [], 0
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    done = int(ckpt["epoch"])
    log.info("%s %s from epoch %d/%d", "reusing" if done == cfg.epochs else "resuming", path, done, cfg.epochs)
    return list(ckpt["history"]), done


def _save(path: Path, model: nn.Module, opt: torch.optim.Optimizer, cfg: TrainConfig, epoch: int,
          history: list[dict[str, float]]) -> None:
    """``last.pt`` (atomically) and ``history.csv``; the optimizer as the eager mode writes it (a float
    learning rate, default kernels), so a checkpoint does not depend on ``cuda_graph``."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optimizer = opt.state_dict()
    for group in optimizer["param_groups"]:
        if isinstance(group["lr"], torch.Tensor):
            group.update(lr=history[-1]["lr"], fused=None, foreach=None)
    atomic_torch_save(
        {
            "format": "serobust",
            "kind": "train",
            "epoch": epoch,
            "complete": epoch == cfg.epochs,
            "config": cfg.to_dict(),
            "signature": _model_signature(model),
            "model": state,
            "optimizer": optimizer,
            "history": history,
            "torch": str(torch.__version__),
        },
        path,
    )
    atomic_write_text(path.with_name("history.csv"), pd.DataFrame(history).to_csv(index=False))


# ----------------------------------------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------------------------------------


def train(
    model: nn.Module,
    data: Any,
    config: TrainConfig | None = None,
    checkpoint_dir: str | Path | None = None,
    *,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[nn.Module, pd.DataFrame]:
    """Train ``model`` on ``data.train`` and report ``data.test`` accuracy every epoch.

    Args:
        model: any classifier taking [0, 1] images (serobust models normalize inside).
        data: a :class:`~serobust.data.DatasetBundle` (uses ``train``, ``test`` and ``augment``).
        config: hyper-parameters (default ``TrainConfig()``); ``config.cuda_graph`` picks eager steps or
            one CUDA graph per step.
        checkpoint_dir: if given, ``last.pt`` is written there atomically after every epoch together with
            ``history.csv``; an existing compatible ``last.pt`` is resumed (a finished one returns at once).
        device: ``None`` or ``"auto"`` picks CUDA when available.
        progress: tqdm bar; ``None`` shows it only on a terminal.
        on_epoch_end: called as ``f(epoch, metrics)`` after each epoch's checkpoint is written.

    Returns:
        ``(model, history)``: the trained model in eval mode on ``device`` and one history row per epoch
        (epoch, lr, train_loss, train_acc, test_loss, test_acc, time_s, images_per_s).

    Raises:
        CheckpointError: an existing checkpoint is corrupt, foreign or from another config.
        DeviceError: ``device`` is not available, or ``cuda_graph = "on"`` without CUDA.
        SerobustError: the model cannot be captured as a CUDA graph (use ``cuda_graph = "off"``).
    """
    cfg = config or TrainConfig()
    dev = resolve_device(device)
    graphed = _use_cuda_graph(cfg.cuda_graph, dev)
    model.to(dev)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = _make_optimizer(model, cfg)
    x_train, y_train = data.train.tensors(device=dev)
    x_test, y_test = data.test.tensors(device=dev)
    n = len(y_train)
    ckpt_path = Path(checkpoint_dir) / "last.pt" if checkpoint_dir is not None else None
    history, start_epoch = _resume(ckpt_path, model, opt, cfg)
    _set_step_mode(opt, device=dev, capturable=graphed)
    step = _Step(model, opt, nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), dev, capturable=graphed,
                 attack=_Attack.of(cfg))
    run = _GraphedStep(step) if graphed else step

    steps_per_epoch = math.ceil(n / cfg.batch_size)
    bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch, desc="train",
               unit="step", disable=(not progress) if progress is not None else None, leave=False)
    try:
        for epoch in range(start_epoch, cfg.epochs):
            lr, seconds = _train_epoch(run, step, x_train, y_train, getattr(data, "augment", None), cfg, epoch, bar)
            test_acc, test_loss = evaluate_accuracy(model, x_test, y_test, batch_size=cfg.eval_batch_size,
                                                    channels_last=cfg.channels_last)
            row = {
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": step.loss_sum.item() / n,
                "train_acc": step.correct.item() / n,
                "test_loss": test_loss,
                "test_acc": test_acc,
                "time_s": seconds,
                "images_per_s": n / seconds,
            }
            history.append(row)
            bar.set_postfix(test_acc=f"{test_acc:.4f}")
            log.info("epoch %d/%d: %s", epoch + 1, cfg.epochs, row)
            if ckpt_path is not None:
                _save(ckpt_path, model, opt, cfg, epoch + 1, history)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, row)
    finally:
        bar.close()
        if graphed:
            opt.zero_grad(set_to_none=True)  # the graph's gradient memory goes with the graph
    model.eval()
    return model, pd.DataFrame(history)
