"""The training hyper-parameters (:class:`TrainConfig`): frozen and validated, so a config can key a checkpoint
cache and a study task; also the ``[train]`` section of a study config."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..eps import parse_eps

__all__ = ["TrainConfig", "SCHEDULES", "ADVERSARIAL_TRAINING", "CUDA_GRAPH_MODES", "EXECUTION_ONLY"]

SCHEDULES = ("onecycle", "cosine", "constant")
ADVERSARIAL_TRAINING = (None, "pgd", "fgsm_rs")
CUDA_GRAPH_MODES = ("auto", "on", "off")
# TrainConfig fields that choose how a step runs, not what it computes: a checkpoint written under one
# value resumes under another (the saved state is the same)
EXECUTION_ONLY = frozenset({"cuda_graph"})


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
