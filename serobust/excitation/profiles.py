"""Class profiles of the excitation, and whether attacks move excitations toward the fooled class.

Hu et al. (1709.01507, Sec. 7.2, Fig. 6) found the excitations of early SE blocks class-agnostic and
those of late blocks class-specific. :func:`class_profiles` computes those profiles (mean ``s`` per
class, block and channel); :func:`profile_shift` asks whether the excitations of successful
adversarial examples move toward the profile of the class the model is fooled into, i.e. whether
the attack drives the class-specific gates. Excitations are read with an
:class:`~serobust.excitation.probe.ExcitationProbe`, batch by batch, and reduced on the device.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

from ..errors import InputError
from ..runtime import eval_mode, model_device
from .adapters import find_se_modules
from .inputs import batch_slices, check_analysis_inputs
from .probe import ExcitationProbe

__all__ = ["class_profiles", "profile_shift"]

logger = logging.getLogger(__name__)


def _num_classes(y: torch.Tensor) -> int:
    """K = max label + 1 (one host sync, before any loop); negative labels raise."""
    lo, hi = torch.stack([y.min(), y.max()]).tolist()
    if lo < 0:
        raise InputError("y holds negative labels; class labels must be 0..K-1")
    return int(hi) + 1


@torch.no_grad()
def _class_means(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-class mean ``s``: name -> (K, C) (NaN rows for absent classes) and class counts (K,)."""
    device = model_device(model)
    num_classes = _num_classes(y)
    sums: dict[str, torch.Tensor] = {}
    counts = torch.zeros(num_classes, device=device)
    with eval_mode(model), ExcitationProbe(model, check_inputs=False) as probe:
        for sl in batch_slices(len(x), batch_size):
            yb = y[sl].to(device)
            model(x[sl].to(device, torch.float32))
            counts.index_add_(0, yb, torch.ones(len(yb), device=device))
            for name, rec in probe.pop_records().items():
                s = rec["s"]  # (B, C)
                if name not in sums:
                    sums[name] = torch.zeros(num_classes, s.shape[1], device=device)
                sums[name].index_add_(0, yb, s)  # (K, C)
    means = {k: v / counts[:, None] for k, v in sums.items()}  # 0/0 -> NaN for absent classes
    return means, counts


def class_profiles(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256) -> pd.DataFrame:
    """Mean excitation per class, per SE block and channel (the SE paper's Fig. 6 profiles).

    Args:
        model: the SE twin.
        x: images in [0, 1], (N, C, H, W).
        y: labels, (N,); classes absent from ``y`` get no rows.
        batch_size: examples per forward pass.

    Returns:
        Long DataFrame with columns ``block, class, channel, s_mean, n`` (``n``: examples of that class).

    Raises:
        NoSEModuleError: ``model`` has no SE module.
        InputError: images not float (N, C, H, W) in [0, 1], NaN, empty, or bad labels.
    """
    blocks = find_se_modules(model)
    check_analysis_inputs(x, y=y, batch_size=batch_size)
    means, counts = _class_means(model, x, y, batch_size)
    counts_l = counts.long().tolist()
    frames = []
    for b in blocks:
        m = means[b.name].cpu()  # (K, C)
        k, c = m.shape
        frame = pd.DataFrame({
            "block": b.name,
            "class": torch.arange(k).repeat_interleave(c).numpy(),
            "channel": torch.arange(c).repeat(k).numpy(),
            "s_mean": m.reshape(-1).numpy(),
            "n": [counts_l[i] for i in range(k) for _ in range(c)],
        })
        frames.append(frame[frame["n"] > 0])
    return pd.concat(frames, ignore_index=True)


def _profiles_from_frame(profiles: pd.DataFrame, names: Sequence[str], num_classes: int,
                         device: torch.device) -> dict[str, torch.Tensor]:
    needed = {"block", "class", "channel", "s_mean"}
    if not needed <= set(profiles.columns):
        raise ValueError(f"profiles must be a class_profiles() frame with columns {sorted(needed)}, "
                         f"got {list(profiles.columns)}")
    out = {}
    for name in names:
        part = profiles[profiles["block"] == name]
        if part.empty:
            raise ValueError(f"profiles has no rows for SE block {name!r}; compute them with class_profiles() "
                             "on the same model")
        k = max(num_classes, int(part["class"].max()) + 1)
        c = int(part["channel"].max()) + 1
        table = torch.full((k, c), float("nan"))
        rows = torch.tensor(part["class"].to_numpy(copy=True), dtype=torch.long)
        cols = torch.tensor(part["channel"].to_numpy(copy=True), dtype=torch.long)
        table[rows, cols] = torch.tensor(part["s_mean"].to_numpy(copy=True), dtype=torch.float32)
        out[name] = table.to(device)
    return out


_STATS = ("clean_to_true", "clean_to_fooled", "adv_to_true", "adv_to_fooled", "closer", "nearer")


def _rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Root-mean-square distance over channels. Shape: (B, C) x2 -> (B,)."""
    return (a - b).pow(2).mean(1).sqrt()


def _fooled_distances(s_clean: torch.Tensor, s_adv: torch.Tensor, table: torch.Tensor, yb: torch.Tensor,
                      pred_adv: torch.Tensor, fooled: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Distances of one block's excitations to the true and fooled class profiles, and the valid mask (B,)."""
    in_range = (pred_adv < table.shape[0]) & (yb < table.shape[0])
    p_true = table[torch.where(in_range, yb, 0)]  # (B, C)
    p_fooled = table[torch.where(in_range, pred_adv, 0)]  # (B, C)
    valid = fooled & in_range & ~p_true.isnan().any(1) & ~p_fooled.isnan().any(1)
    d = {"clean_to_true": _rms(s_clean, p_true), "clean_to_fooled": _rms(s_clean, p_fooled),
         "adv_to_true": _rms(s_adv, p_true), "adv_to_fooled": _rms(s_adv, p_fooled)}
    d["closer"] = (d["adv_to_fooled"] < d["clean_to_fooled"]).float()
    d["nearer"] = (d["adv_to_fooled"] < d["adv_to_true"]).float()
    return d, valid


def profile_shift(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_adv: torch.Tensor,
    *,
    profiles: pd.DataFrame | None = None,
    batch_size: int = 256,
) -> pd.DataFrame:
    """Do excitations of successful adversarial examples move toward the fooled class's profile?

    For every example the model classifies correctly on ``x`` and wrongly on ``x_adv`` ("fooled",
    predicted class ``p``), and every SE block, distances are measured between the excitation and the
    class profiles (per-class mean ``s``): of ``s(x_adv)`` and of ``s(x)`` to the true-class profile
    and to the fooled-class profile. Distances are root-mean-square over channels (L2 / sqrt(C)) so
    blocks of different width compare. If adversarial excitations move toward the fooled class
    (``share_closer_to_fooled`` well above 0.5, ``adv_to_fooled < clean_to_fooled``), the attack
    drives the class-specific excitations of the late blocks, i.e. the gates are part of how it works.

    Args:
        model: the SE twin.
        x: clean images in [0, 1], (N, C, H, W).
        y: labels, (N,).
        x_adv: adversarial images made from ``x``.
        profiles: a :func:`class_profiles` frame (for example from training data); computed from the
            clean ``(x, y)`` when ``None``. Fooled examples whose true or fooled class has no profile
            are skipped (logged).
        batch_size: examples per forward pass.

    Returns:
        One row per block: ``block, n_fooled, clean_to_true, clean_to_fooled, adv_to_true,
        adv_to_fooled, share_closer_to_fooled`` (``s(x_adv)`` nearer the fooled profile than ``s(x)``
        was) and ``share_nearer_fooled_than_true`` (``s(x_adv)`` nearer the fooled than the true
        profile). Distances and shares are NaN when no example was fooled.

    Raises:
        NoSEModuleError: ``model`` has no SE module.
        InputError: images not float (N, C, H, W) in [0, 1], NaN, mismatched shapes, bad labels.
    """
    names = [b.name for b in find_se_modules(model)]
    check_analysis_inputs(x, y=y, x_adv=x_adv, batch_size=batch_size)
    device = model_device(model)
    if profiles is None:
        prof, _ = _class_means(model, x, y, batch_size)
    else:
        prof = _profiles_from_frame(profiles, names, _num_classes(y), device)
    sums = {(n, s): torch.zeros((), device=device) for n in names for s in _STATS}
    counts = {n: torch.zeros((), device=device) for n in names}
    skipped = torch.zeros((), dtype=torch.long, device=device)
    with eval_mode(model), torch.no_grad(), ExcitationProbe(model, check_inputs=False) as probe:
        for sl in batch_slices(len(x), batch_size):
            yb = y[sl].to(device)
            pred_clean = model(x[sl].to(device, torch.float32)).argmax(1)
            s_clean = {n: rec["s"] for n, rec in probe.pop_records().items()}
            pred_adv = model(x_adv[sl].to(device, torch.float32)).argmax(1)
            s_adv = {n: rec["s"] for n, rec in probe.pop_records().items()}
            fooled = (pred_clean == yb) & (pred_adv != yb)  # (B,)
            for i, n in enumerate(names):
                d, valid = _fooled_distances(s_clean[n], s_adv[n], prof[n], yb, pred_adv, fooled)
                if i == 0:
                    skipped += (fooled & ~valid).sum()
                for s in _STATS:
                    sums[(n, s)] += torch.where(valid, d[s], 0).sum()
                counts[n] += valid.sum()
    keys = list(sums)
    totals = dict(zip(keys, torch.stack([sums[k] for k in keys]).tolist()))  # one host sync
    n_valid = dict(zip(names, torch.stack([counts[n] for n in names]).tolist()))
    if int(skipped):
        logger.warning("profile_shift skipped %d fooled examples whose true or fooled class has no profile",
                       int(skipped))
    rows = []
    for n in names:
        k = n_valid[n]
        avg = {s: (totals[(n, s)] / k if k else float("nan")) for s in _STATS}
        rows.append({"block": n, "n_fooled": int(k), "clean_to_true": avg["clean_to_true"],
                     "clean_to_fooled": avg["clean_to_fooled"], "adv_to_true": avg["adv_to_true"],
                     "adv_to_fooled": avg["adv_to_fooled"], "share_closer_to_fooled": avg["closer"],
                     "share_nearer_fooled_than_true": avg["nearer"]})
    return pd.DataFrame(rows)
