"""Feature sensitivity through depth: does a perturbation grow less in an SE twin than in its baseline?

The SE paper's gate rescales each block's output (Hu et al., 1709.01507, Sec. 3); if that damps
perturbations, the relative change ``||f(x') - f(x)|| / ||f(x)||`` of block outputs should grow more
slowly with depth in the SE twin than in the baseline. :func:`matched_layers` names the blocks that
exist in both members of a pair (the parents of the SE modules), and :func:`feature_sensitivity`
measures the relative change of their outputs, one paired forward pass per batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..runtime import check_module_names, eval_mode, model_device
from .adapters import NoSEModuleError, find_se_modules
from .inputs import check_analysis_inputs

__all__ = ["feature_sensitivity", "matched_layers"]


def _se_parents(model: nn.Module) -> list[str]:
    parents = []
    for block in find_se_modules(model):
        if "." not in block.name:
            continue  # an SE module at the top level has no enclosing block to compare
        parent = block.name.rsplit(".", 1)[0]
        if parent not in parents:
            parents.append(parent)
    return parents


def matched_layers(baseline: nn.Module, se_model: nn.Module) -> list[str]:
    """Names of the blocks that hold an SE module in ``se_model`` and exist under the same name in
    ``baseline`` (the parents of the SE modules, e.g. ``features.0`` or ``layer1.0``).

    serobust pairs share module names, so :func:`feature_sensitivity` at these names compares the two
    models at the same depths.

    Raises:
        NoSEModuleError: ``se_model`` has no SE module.
        ValueError: none of those names exists in ``baseline`` (not a matching pair).
    """
    parents = _se_parents(se_model)
    base_names = {name for name, _ in baseline.named_modules()}
    kept = [p for p in parents if p in base_names]
    missing = [p for p in parents if p not in base_names]
    if not kept:
        raise ValueError(f"none of the SE twin's blocks {parents} exists in the baseline; are these two "
                         "models a pair built by serobust.build_pair?")
    if missing:
        warnings.warn(f"blocks {missing} of the SE twin have no namesake in the baseline; left out", stacklevel=2)
    return kept


def _resolve_layers(model: nn.Module, layers: Sequence[str] | str | None) -> list[str]:
    if layers is None:
        try:
            layers = _se_parents(model)
        except NoSEModuleError:
            raise ValueError("this model has no SE module to locate default layers; pass "
                             "layers=matched_layers(baseline, se_model)") from None
    layers = [layers] if isinstance(layers, str) else list(layers)
    if not layers:
        raise ValueError("layers is empty; name at least one module")
    return check_module_names(model, layers, what="layers",
                              hint="see model.named_modules() or use matched_layers(baseline, se_model)")


@torch.no_grad()
def feature_sensitivity(
    model: nn.Module,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    *,
    layers: Sequence[str] | None = None,
    batch_size: int = 256,
    per_sample: bool = False,
) -> pd.DataFrame:
    """Relative change ``||f(x') - f(x)|| / ||f(x)||`` (over all output elements) of named layers.

    Run it on a baseline and on its SE twin with ``layers=matched_layers(baseline, se_model)`` to see
    whether perturbations grow through depth more in one than in the other.

    Args:
        model: any model taking [0, 1] images; run in eval mode, modes restored.
        x: clean inputs (N, C, H, W) in [0, 1]; x_adv: perturbed inputs, same shape.
        layers: module names whose outputs to compare; default the parents of the model's SE modules
            (required for a model without SE: use :func:`matched_layers`).
        batch_size: samples per paired forward pass.
        per_sample: one row per (sample, layer) instead of per layer.

    Returns:
        Per layer: ``layer``, ``depth`` (index in ``layers``), ``n_samples``, ``rel_change`` (mean
        over samples), ``rel_change_median``, ``rel_change_std``, ``norm_clean``, ``norm_adv``; per
        sample: ``layer``, ``depth``, ``sample``, ``rel_change``, ``norm_clean``, ``norm_adv``.

    Raises:
        InputError: images not float (N, C, H, W) in [0, 1], NaN, or mismatched shapes.
        ValueError: unknown layers, or no default layers for a model without SE modules.
    """
    check_analysis_inputs(x, x_adv=x_adv, batch_size=batch_size)
    layers = _resolve_layers(model, layers)
    modules = dict(model.named_modules())
    device = model_device(model)
    chunks: dict[str, dict[str, list[torch.Tensor]]] = {n: {"rel": [], "nc": [], "na": []} for n in layers}
    half = {"b": 0}

    def make_hook(name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"layer {name!r} returns {type(output).__name__}, not a tensor; pick a "
                                "module whose output is a single tensor")
            b = half["b"]
            out = output.detach().float().reshape(output.shape[0], -1)  # (2B, D)
            nc = out[:b].norm(dim=1)
            chunks[name]["rel"].append((out[b:] - out[:b]).norm(dim=1) / nc)
            chunks[name]["nc"].append(nc)
            chunks[name]["na"].append(out[b:].norm(dim=1))

        return hook

    handles = [modules[name].register_forward_hook(make_hook(name)) for name in layers]
    try:
        with eval_mode(model):
            for start in range(0, x.shape[0], batch_size):
                xb = x[start : start + batch_size].to(device, non_blocking=True)
                xab = x_adv[start : start + batch_size].to(device, non_blocking=True, dtype=xb.dtype)
                half["b"] = xb.shape[0]
                model(torch.cat([xb, xab], dim=0))
    finally:
        for handle in handles:
            handle.remove()
    frames, rows = [], []
    for depth, name in enumerate(layers):
        rel, nc, na = (torch.cat(chunks[name][k]).cpu().numpy() for k in ("rel", "nc", "na"))
        if per_sample:
            frames.append(pd.DataFrame({"layer": name, "depth": depth, "sample": np.arange(rel.shape[0]),
                                        "rel_change": rel, "norm_clean": nc, "norm_adv": na}))
        else:
            rows.append({"layer": name, "depth": depth, "n_samples": int(rel.shape[0]),
                         "rel_change": float(np.nanmean(rel)), "rel_change_median": float(np.nanmedian(rel)),
                         "rel_change_std": float(np.nanstd(rel)), "norm_clean": float(nc.mean()),
                         "norm_adv": float(na.mean())})
    return pd.concat(frames, ignore_index=True) if per_sample else pd.DataFrame(rows)
