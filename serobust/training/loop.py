"""The trainer: :func:`train`, the epoch loop, for any classifier and any :class:`~serobust.data.DatasetBundle`.

SGD with Nesterov momentum and weight decay, a one-cycle or cosine schedule computed from the global
step (so a resumed run picks up exactly where it stopped), optional label smoothing and optional
adversarial training (PGD-AT, Madry et al. 2018; FGSM with random start, Wong et al. 2020) in [0, 1]
pixel space. On CUDA the forward/backward runs under bf16 autocast with channels_last tensors; on the
CPU it is plain float32 (channels_last too, which measured faster there: ``benchmarks/train_throughput.py``).
The per-epoch test accuracy is always scored in float32 (autocast and TF32 off:
:func:`serobust.runtime.fp32_scoring`), whatever the training step used.
On CUDA a step is one CUDA graph by default (:mod:`serobust.training.step`).

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

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..linf_pgd import uniform_noise
from ..runtime import check_batch_size, eval_mode, fp32_scoring, model_device, resolve_device
from .adversarial import TrainingAttack
from .checkpoint import resume, save_checkpoint
from .config import TrainConfig
from .schedule import epoch_generator, epoch_order, lr_at
from .step import GraphedStep, Step, make_optimizer, set_lr, set_step_mode, use_cuda_graph

__all__ = ["train", "evaluate_accuracy"]

log = logging.getLogger(__name__)


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA only): once an epoch, so that timings are the GPU's."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def _train_epoch(run: Callable[..., None], step: Step, x: torch.Tensor,
                 y: torch.Tensor, augment: Any, cfg: TrainConfig, epoch: int, bar: tqdm) -> tuple[float, float]:
    """One pass over ``(x, y)`` in the epoch's random order; returns (last learning rate, seconds).

    Per step the host only queues device work (batch gather, augmentation, the attack's start draws, the
    step with its attack): no host sync, so on CUDA it can run ahead of the GPU; the one wait at the end
    makes the time the GPU's. The order comes from :func:`epoch_order` (CPU-drawn); augmentation and the
    attack's start are drawn from the epoch generator in that order, batch by batch.
    """
    model, dev = step.model, step.device
    n = len(y)
    steps = math.ceil(n / cfg.batch_size)
    total_steps = steps * cfg.epochs
    model.train()
    t0 = time.perf_counter()
    gen = epoch_generator(cfg.seed, epoch, dev)
    perm = epoch_order(n, cfg.seed, epoch, gen).to(dev)
    step.reset_totals()
    for i in range(steps):
        lr = lr_at(epoch * steps + i, total_steps, cfg)
        set_lr(step.opt, lr)
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
    graphed = use_cuda_graph(cfg.cuda_graph, dev)
    model.to(dev)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    x_train, y_train = data.train.tensors(device=dev)
    x_test, y_test = data.test.tensors(device=dev)
    n = len(y_train)
    ckpt_path = Path(checkpoint_dir) / "last.pt" if checkpoint_dir is not None else None
    history, start_epoch = resume(ckpt_path, model, opt, cfg)
    set_step_mode(opt, device=dev, capturable=graphed)
    step = Step(model, opt, nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), dev, capturable=graphed,
                 attack=TrainingAttack.of(cfg))
    run = GraphedStep(step) if graphed else step

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
                save_checkpoint(ckpt_path, model, opt, cfg, epoch + 1, history)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, row)
    finally:
        bar.close()
        if graphed:
            opt.zero_grad(set_to_none=True)  # the graph's gradient memory goes with the graph
    model.eval()
    return model, pd.DataFrame(history)
