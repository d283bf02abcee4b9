"""The numeric mode of a training step: bf16 autocast on CUDA, plain float32 elsewhere."""

from __future__ import annotations

import torch

__all__ = ["autocast"]


def autocast(device: torch.device, *, cache: bool = True):
    """bf16 autocast on CUDA, nothing elsewhere; ``cache=False`` for a region captured as a CUDA graph
    (autocast's weight-cast cache must be off under capture, as ``torch.cuda.make_graphed_callables``
    requires; the casts are the same, only recomputed)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda", cache_enabled=cache)
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda", cache_enabled=cache)
