"""Best of several runs of a randomized attack, per example (restarts of PGD, draws of random noise).

Madry et al. (2018) and AutoAttack keep, per example, the first run that fools the model; PGD restarts
also keep the highest-loss run while none has succeeded, so that a later success is not needed to make
progress visible (AutoAttack's APGD does the same within a run).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Runner

__all__ = ["best_of"]


def _fooled_and_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        logits = model(x)
    return logits.argmax(1) != y, F.cross_entropy(logits, y, reduction="none")


def best_of(model: nn.Module, run: Runner, n: int, *, highest_loss: bool = True) -> Runner:
    """``n`` independent runs of ``run``; per example keep the first that fools ``model``, else (with
    ``highest_loss``) the one with the highest cross-entropy loss, else the first run.

    All on the device, no host sync: one forward per run to score it. ``n == 1`` returns ``run`` itself.
    """
    if n == 1:
        return run

    def go(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        best = run(x, y)
        fooled, loss = _fooled_and_loss(model, best, y)
        for _ in range(n - 1):
            cand = run(x, y)
            cand_fooled, cand_loss = _fooled_and_loss(model, cand, y)
            better = cand_fooled | (cand_loss > loss) if highest_loss else cand_fooled
            take = ~fooled & better  # (B,)
            best = torch.where(take[:, None, None, None], cand, best)
            if highest_loss:
                loss = torch.where(take, cand_loss, loss)
            fooled = fooled | cand_fooled
        return best

    return go
