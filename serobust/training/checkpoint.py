"""Training checkpoints: ``last.pt`` written atomically after every epoch (with ``history.csv``), and resumed
only into the same model trained with the same :class:`~serobust.training.config.TrainConfig` (fields that
change how a step runs, not what it computes, excepted: :data:`~serobust.training.config.EXECUTION_ONLY`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..io import CheckpointError, atomic_torch_save, atomic_write_text, load_checkpoint
from .config import EXECUTION_ONLY, TrainConfig

__all__ = ["identity", "resume", "save_checkpoint"]

log = logging.getLogger(__name__)


def _model_signature(model: nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict without the fields that do not change what is computed (``EXECUTION_ONLY``)."""
    return {k: v for k, v in config.items() if k not in EXECUTION_ONLY}


def _load_resume(path: Path, model: nn.Module, cfg: TrainConfig) -> dict | None:
    if not path.exists():
        return None
    ckpt = load_checkpoint(path, kind="train")
    if ckpt.get("signature") != _model_signature(model):
        raise CheckpointError(
            f"checkpoint {path} belongs to a different model (parameter names or shapes differ); "
            "use another checkpoint_dir or delete the file to train afresh"
        )
    saved, current = identity(ckpt.get("config", {})), identity(cfg.to_dict())
    if saved != current:
        changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        raise CheckpointError(
            f"checkpoint {path} was trained with another TrainConfig (differs in: {', '.join(changed)}); "
            "use another checkpoint_dir or delete the file to train afresh"
        )
    return ckpt


def _check_history_slot(path: Path) -> None:
    """Refuse to start where ``history.csv`` is a file serobust did not write: training would overwrite it.

    A serobust history starts with the header ``epoch,lr,...``; one left by an earlier run whose ``last.pt``
    was deleted (to train afresh) is ours and is replaced.
    """
    history = path.with_name("history.csv")
    if not (history.exists() or history.is_symlink()):
        return
    try:
        with history.open(encoding="utf-8") as f:
            ours = f.readline().startswith("epoch,lr,")
    except (OSError, UnicodeDecodeError):
        ours = False
    if not ours:
        raise CheckpointError(
            f"{history} was not written by serobust and training would overwrite it; "
            "move it or use another checkpoint_dir"
        )


def resume(path: Path | None, model: nn.Module, opt: torch.optim.Optimizer,
           cfg: TrainConfig) -> tuple[list[dict[str, float]], int]:
    """Load a compatible ``last.pt`` into ``model`` and ``opt``; returns (history so far, epochs done).

    Without a ``last.pt``, a ``history.csv`` beside it that serobust did not write is refused (CheckpointError)
    before anything is written."""
    ckpt = _load_resume(path, model, cfg) if path is not None else None
    if ckpt is None:
        if path is not None:
            _check_history_slot(path)
        return [], 0
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    done = int(ckpt["epoch"])
    log.info("%s %s from epoch %d/%d", "reusing" if done == cfg.epochs else "resuming", path, done, cfg.epochs)
    return list(ckpt["history"]), done


def save_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, cfg: TrainConfig, epoch: int,
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
