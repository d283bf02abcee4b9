"""A trainer for any classifier and any :class:`~serobust.data.DatasetBundle`.

SGD with Nesterov momentum and weight decay, a one-cycle or cosine schedule computed from the global
step (so a resumed run picks up exactly where it stopped), optional label smoothing and optional
adversarial training (PGD-AT, Madry et al. 2018; FGSM with random start, Wong et al. 2020) in [0, 1]
pixel space. On CUDA the forward/backward runs under bf16 autocast with channels_last tensors; on the
CPU it is plain float32 (channels_last too, which measured faster there: ``benchmarks/train_throughput.py``).

Determinism: every source of randomness in an epoch (data order, augmentation, attack random starts)
comes from a ``torch.Generator`` seeded by ``(seed, epoch)``, so a run is bit-identical on the CPU for a
given seed, a baseline and its SE twin see the same batches in the same order, and a run resumed from
the checkpoint of epoch k ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .eps import parse_eps
from .io import CheckpointError, atomic_torch_save, atomic_write_text, load_checkpoint
from .linf_pgd import default_alpha, linf_pgd, uniform_start
from .runtime import eval_mode, model_device

__all__ = ["TrainConfig", "train", "evaluate_accuracy", "resolve_device"]

log = logging.getLogger(__name__)

SCHEDULES = ("onecycle", "cosine", "constant")
ADVERSARIAL = (None, "pgd", "fgsm_rs")


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
        if self.adversarial not in ADVERSARIAL:
            raise bad("adversarial", "none, 'pgd' or 'fgsm_rs'")
        # store budgets as floats so "8/255" and 0.0313... hash and compare equal
        object.__setattr__(self, "adv_eps", parse_eps(self.adv_eps, name="TrainConfig.adv_eps"))
        if self.adv_alpha is not None:
            object.__setattr__(self, "adv_alpha", parse_eps(self.adv_alpha, name="TrainConfig.adv_alpha"))
        if not isinstance(self.adv_steps, int) or self.adv_steps < 1:
            raise bad("adv_steps", "an integer >= 1")
        if not isinstance(self.eval_batch_size, int) or self.eval_batch_size < 1:
            raise bad("eval_batch_size", "an integer >= 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` means CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch.cuda.is_available() is False; use 'cpu'")
    return device


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


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def _adversarial_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
                       gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """PGD-AT or FGSM-RS examples in [0, 1] pixel space (the shared :func:`~serobust.linf_pgd.linf_pgd`).

    Both start at a uniform random point of the eps ball drawn from ``gen`` (the epoch's generator);
    FGSM-RS (Wong et al. 2020) is one step of size ``1.25 * eps``, PGD-AT (Madry et al. 2018)
    ``adv_steps`` steps of size ``2.5 * eps / steps`` unless ``adv_alpha`` is set. The model stays in
    the mode the trainer put it in; bf16 autocast on CUDA, as for the training step. Only the input
    gets gradients.
    """
    eps = parse_eps(cfg.adv_eps)
    if cfg.adversarial == "fgsm_rs":
        steps, alpha = 1, parse_eps(cfg.adv_alpha) if cfg.adv_alpha is not None else 1.25 * eps
    else:
        steps = cfg.adv_steps
        alpha = parse_eps(cfg.adv_alpha) if cfg.adv_alpha is not None else default_alpha(eps, steps)

    def loss(x_adv: torch.Tensor) -> torch.Tensor:
        with _autocast(device):
            return F.cross_entropy(model(x_adv), y)

    return linf_pgd(loss, x, eps=eps, alpha=alpha, steps=steps, start=uniform_start(x, eps, generator=gen))


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1000,
                      channels_last: bool = False) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on tensors, in eval mode, restoring every mode after.

    Runs on the model's device (:func:`serobust.runtime.model_device`: the CPU for a model without
    parameters or buffers); counts stay on the device until the one transfer at the end.
    """
    device = model_device(model)
    correct = torch.zeros((), device=device)
    loss = torch.zeros((), device=device)
    with eval_mode(model):
        for i in range(0, len(y), batch_size):
            xb = x[i : i + batch_size].to(device, non_blocking=True)
            yb = y[i : i + batch_size].to(device, non_blocking=True)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with _autocast(device):
                out = model(xb).float()
            correct += (out.argmax(1) == yb).sum()
            loss += F.cross_entropy(out, yb, reduction="sum")
    n = max(1, len(y))
    return correct.item() / n, loss.item() / n


def _model_signature(model: nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def _load_resume(path: Path, model: nn.Module, cfg: TrainConfig) -> dict | None:
    if not path.exists():
        return None
    ckpt = load_checkpoint(path, kind="train")
    if ckpt.get("signature") != _model_signature(model):
        raise CheckpointError(
            f"checkpoint {path} belongs to a different model (parameter names or shapes differ); "
            "use another checkpoint_dir or delete the file to train afresh"
        )
    saved = ckpt.get("config", {})
    if saved != cfg.to_dict():
        changed = sorted(k for k in set(saved) | set(cfg.to_dict()) if saved.get(k) != cfg.to_dict().get(k))
        raise CheckpointError(
            f"checkpoint {path} was trained with another TrainConfig (differs in: {', '.join(changed)}); "
            "use another checkpoint_dir or delete the file to train afresh"
        )
    return ckpt


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
        config: hyper-parameters (default ``TrainConfig()``).
        checkpoint_dir: if given, ``last.pt`` is written there atomically after every epoch together with
            ``history.csv``; an existing compatible ``last.pt`` is resumed (a finished one returns at once).
        device: ``None`` picks CUDA when available.
        progress: tqdm bar; ``None`` shows it only on a terminal.
        on_epoch_end: called as ``f(epoch, metrics)`` after each epoch's checkpoint is written.

    Returns:
        ``(model, history)``: the trained model in eval mode on ``device`` and one history row per epoch
        (epoch, lr, train_loss, train_acc, test_loss, test_acc, time_s, images_per_s).

    Raises:
        CheckpointError: an existing checkpoint is corrupt, foreign or from another config.
    """
    cfg = config or TrainConfig()
    dev = resolve_device(device)
    channels_last = cfg.channels_last
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
    )
    x_train, y_train = data.train.tensors(device=dev)
    x_test, y_test = data.test.tensors(device=dev)
    augment = getattr(data, "augment", None)
    n = len(y_train)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs

    ckpt_path = Path(checkpoint_dir) / "last.pt" if checkpoint_dir is not None else None
    history: list[dict[str, float]] = []
    start_epoch = 0
    if ckpt_path is not None:
        ckpt = _load_resume(ckpt_path, model, cfg)
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            history = list(ckpt["history"])
            start_epoch = int(ckpt["epoch"])
            log.info("%s %s from epoch %d/%d", "reusing" if start_epoch == cfg.epochs else "resuming", ckpt_path, start_epoch, cfg.epochs)

    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch, desc="train",
               unit="step", disable=(not progress) if progress is not None else None, leave=False)
    try:
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            t0 = time.perf_counter()
            gen = _epoch_generator(cfg.seed, epoch, dev)
            perm = torch.randperm(n, generator=gen, device=dev)
            loss_sum = torch.zeros((), device=dev)
            correct = torch.zeros((), device=dev)
            for i in range(steps_per_epoch):
                step = epoch * steps_per_epoch + i
                lr = _lr_at(step, total_steps, cfg)
                for group in opt.param_groups:
                    group["lr"] = lr
                idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                xb, yb = x_train[idx], y_train[idx]
                if augment is not None:
                    xb = augment(xb, generator=gen)
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                if cfg.adversarial is not None:
                    xb = _adversarial_batch(model, xb, yb, cfg, gen, dev)
                with _autocast(dev):
                    out = model(xb)
                    loss = loss_fn(out.float(), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.detach() * len(yb)
                correct += (out.detach().argmax(1) == yb).sum()
                bar.update(1)
            train_time = time.perf_counter() - t0
            test_acc, test_loss = evaluate_accuracy(model, x_test, y_test, batch_size=cfg.eval_batch_size,
                                                    channels_last=channels_last)
            row = {
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": loss_sum.item() / n,
                "train_acc": correct.item() / n,
                "test_loss": test_loss,
                "test_acc": test_acc,
                "time_s": train_time,
                "images_per_s": n / train_time,
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
    model.eval()
    return model, pd.DataFrame(history)


def _save(path: Path, model: nn.Module, opt: torch.optim.Optimizer, cfg: TrainConfig, epoch: int,
          history: list[dict[str, float]]) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_torch_save(
        {
            "format": "serobust",
            "kind": "train",
            "epoch": epoch,
            "complete": epoch == cfg.epochs,
            "config": cfg.to_dict(),
            "signature": _model_signature(model),
            "model": state,
            "optimizer": opt.state_dict(),
            "history": history,
            "torch": str(torch.__version__),
        },
        path,
    )
    atomic_write_text(path.with_name("history.csv"), pd.DataFrame(history).to_csv(index=False))
