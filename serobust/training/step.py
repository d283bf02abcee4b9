"""One SGD training step, eager or captured as one CUDA graph, and the optimizer it drives.

On CUDA each training step is by default one CUDA graph (``TrainConfig.cuda_graph``): a small model's
step is a few hundred short kernels, and launching them from Python costs more than running them (about
11 ms a step for a ResNet-20 on an H100, whatever the batch size). Recorded once and replayed with one
launch, the step costs the GPU time only. With adversarial training the graph holds the whole
adversarial step: the random start (from uniform draws made outside the graph into a static buffer), every
PGD / FGSM-RS iteration and the update, so PGD-7 AT is one launch instead of eight launch-bound passes.
See :class:`GraphedStep` for the protocol, which follows PyTorch's "whole-network capture" recipe
(``torch.cuda.graph``, static input buffers, warm-up on a side stream, fused SGD reading a learning-rate
tensor). On the CPU nothing changes: the step runs eagerly.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch
from torch import nn

from ..errors import DeviceError, SerobustError
from .adversarial import TrainingAttack
from .config import TrainConfig
from .precision import autocast

__all__ = ["Step", "GraphedStep", "use_cuda_graph", "make_optimizer", "set_step_mode", "set_lr",
           "GRAPH_WARMUP_STEPS"]

log = logging.getLogger(__name__)

GRAPH_WARMUP_STEPS = 3  # eager steps before capture (PyTorch's make_graphed_callables default)


def use_cuda_graph(setting: str, device: torch.device) -> bool:
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


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with Nesterov momentum; weight decay on weights (ndim > 1) only, not on biases and BN affines."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return torch.optim.SGD(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
    )


def set_step_mode(opt: torch.optim.SGD, *, device: torch.device, capturable: bool) -> None:
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


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """The learning rate of the coming step: in place into the shared device tensor (capturable mode: one
    fill kernel, no host sync), else into every group as a Python float."""
    first = opt.param_groups[0]["lr"]
    if isinstance(first, torch.Tensor):
        first.fill_(lr)
    else:
        for group in opt.param_groups:
            group["lr"] = lr


class Step:
    """One SGD step on a batch: (the adversarial examples,) forward, loss, backward, optimizer step, and the
    epoch's running totals.

    Everything it does stays on the device (no ``.item()``, no data-dependent shapes, no random draw: the
    attack's random start comes in as ``noise``), so the same code runs eagerly or is captured whole as a
    CUDA graph by :class:`GraphedStep`. Gradients are set to ``None`` before backward, so backward assigns
    them (in a capture: from the graph's private memory pool).

    Attributes:
        loss_sum, correct: summed loss and count of correct predictions since :meth:`reset_totals`;
            0-dim device tensors updated in place (a captured graph keeps writing to the same memory).
    """

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, loss_fn: nn.Module, device: torch.device,
                 *, capturable: bool = False, attack: TrainingAttack | None = None) -> None:
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
        with autocast(self.device, cache=not self.capturable):
            out = self.model(xb)  # (B, classes)
            loss = self.loss_fn(out.float(), yb)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.loss_sum += loss.detach() * len(yb)
        self.correct += (out.detach().argmax(1) == yb).sum()


class GraphedStep:
    """A :class:`Step` captured as one CUDA graph and replayed from static input buffers.

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

    def __init__(self, step: Step, *, warmup: int = GRAPH_WARMUP_STEPS) -> None:
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
