"""Excitation shift under perturbation: does the global state z stay put, and does the gate damp?

The hypothesis under test (DESIGN.md): SE's global rescaling damps adversarial sensitivity because the
squeeze ``z`` (the global state) hardly changes, so the excitation ``s`` hardly changes, and the gated
output ``g = s * u`` changes relatively less than the gate's input ``u``. This module measures each
link of that chain per SE block, per sample, and against chance:

* :func:`excitation_shift` -- clean vs perturbed: relative changes of z, s, u and g, the rank stability
  of the excitation (cosine, Spearman, top-k overlap), the damping ratio ``g_rel / u_rel`` and
  ``z_rel / u_rel``, gate saturation and 0.5-crossings, and the channel-activation magnitudes of
  Bai et al. (ICLR 2021) before and after the gate.
* :func:`shift_analysis` -- the same for an attack and for two random controls at matched size
  (sign noise at the same Linf eps, Gaussian noise at the adversarial perturbation's L2 norm), so an
  adversarial shift is read against what chance does.
* :func:`feature_sensitivity` and :func:`matched_layers` -- relative change of block outputs at the
  same names in a baseline and its SE twin, so amplification through depth can be compared.

Relative change of q under x -> x' is ``||q(x') - q(x)|| / ||q(x)||`` per sample, with the L2 norm over
channels for z and s and over C x H x W for the maps u and g.

Each batch of clean and perturbed inputs runs as ONE forward pass (the two halves concatenated), with
an :class:`~serobust.probe.ExcitationProbe` holding the maps of that batch only; the per-sample
reductions are computed on the device and the maps dropped before the next batch. The model runs in
eval mode (BatchNorm then treats samples independently, so concatenation changes nothing) and its
modes are restored afterwards.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn

from .eps import parse_eps_list
from .runtime import eval_mode, model_device
from .probe import ExcitationProbe
from .se_adapters import NoSEModuleError, find_se_modules

if TYPE_CHECKING:
    from .attacks import AttackSpec

__all__ = [
    "excitation_shift",
    "shift_analysis",
    "feature_sensitivity",
    "matched_layers",
    "sign_noise",
    "matched_gaussian_noise",
    "SAT_LOW",
    "SAT_HIGH",
]

logger = logging.getLogger(__name__)

SAT_LOW = 0.05  # a gate below this is "closed" (saturated low)
SAT_HIGH = 0.95  # a gate above this is "open" (saturated high)

# per-sample metrics, in column order (block rows average them over samples)
_SAMPLE_METRICS = (
    "s_rel_change", "s_cosine", "s_spearman", "s_topk_jaccard", "s_max_abs_change",
    "z_rel_change", "u_rel_change", "g_rel_change", "damping_ratio", "z_over_u",
    "sat_low_clean", "sat_low_adv", "sat_high_clean", "sat_high_adv", "crossings",
    "u_mag_clean", "u_mag_adv", "g_mag_clean", "g_mag_adv",
    "u_mag_cv_clean", "u_mag_cv_adv", "g_mag_cv_clean", "g_mag_cv_adv",
)
# per-sample CVs are replaced, in block rows, by the CV of the sample-averaged channel magnitudes
_CV_COLUMNS = ("u_mag_cv_clean", "u_mag_cv_adv", "g_mag_cv_clean", "g_mag_cv_adv")
# per-channel quantities summed over samples (then divided by the count)
_CHANNEL_SUMS = (
    "s_clean", "s_adv", "s_change", "s_abs_change", "s_rel_change",
    "z_clean", "z_adv", "z_abs", "z_abs_change",
    "u_norm", "u_abs_change", "g_norm", "g_abs_change",
    "sat_low_clean", "sat_low_adv", "sat_high_clean", "sat_high_adv", "crossings",
    "topk_clean", "topk_adv", "u_mag_clean", "u_mag_adv", "g_mag_clean", "g_mag_adv",
)
_MAG_KEYS = ("u_mag_clean", "u_mag_adv", "g_mag_clean", "g_mag_adv")


# ---------------------------------------------------------------------------------------------- helpers


def _check_pair(x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor | None, batch_size: int) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(x_adv, torch.Tensor):
        raise TypeError("x and x_adv must be tensors of images in [0, 1], shape (N, C, H, W)")
    if x.shape != x_adv.shape:
        raise ValueError(f"x and x_adv must have the same shape, got {tuple(x.shape)} and {tuple(x_adv.shape)}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x must hold at least one sample with a batch dimension, got shape {tuple(x.shape)}")
    if y is not None and (y.ndim != 1 or y.shape[0] != x.shape[0]):
        raise ValueError(f"y must have shape ({x.shape[0]},) to match x, got {tuple(y.shape)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..C along dim 1, ties sharing their average rank (scipy's ``rankdata``), without loops.

    Shape: (B, C) -> (B, C).
    """
    b, c = x.shape
    sorted_x, order = x.sort(dim=1)
    new_group = torch.ones_like(sorted_x, dtype=torch.bool)
    new_group[:, 1:] = sorted_x[:, 1:] != sorted_x[:, :-1]
    gid = new_group.long().cumsum(dim=1) - 1  # (B, C): tie group of each sorted position
    pos = torch.arange(1, c + 1, device=x.device, dtype=torch.float32).expand(b, c)
    total = torch.zeros(b, c, device=x.device).scatter_add_(1, gid, pos)  # (B, groups<=C)
    count = torch.zeros(b, c, device=x.device).scatter_add_(1, gid, torch.ones_like(pos))
    avg = total.gather(1, gid) / count.gather(1, gid)  # (B, C) in sorted order
    return torch.empty_like(avg).scatter_(1, order, avg)


def _rowwise_pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each row pair; NaN where a row is constant. Shape: (B, C) x2 -> (B,)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(1) / (a.square().sum(1).sqrt() * b.square().sum(1).sqrt())


def _topk_mask(s: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean (B, C) mask of each row's k largest entries."""
    idx = s.topk(k, dim=1).indices  # (B, k)
    return torch.zeros_like(s, dtype=torch.bool).scatter_(1, idx, True)


def _cv(m: torch.Tensor, dim: int) -> torch.Tensor:
    """Coefficient of variation (population std / mean) along ``dim``."""
    std, mean = torch.std_mean(m, dim=dim, correction=0)
    return std / mean


def _resolve_k(topk: int | None, channels: int) -> int:
    if topk is None:
        return max(1, channels // 4)
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ValueError(f"topk must be a positive integer or None (default max(1, C // 4)), got {topk!r}")
    return min(topk, channels)


# ------------------------------------------------------------------------------------- collection core
@dataclass
class _Collected:
    """Everything one pass over (x, x_adv) produced, on the CPU."""

    blocks: list[str]
    channels: dict[str, int]
    topk: dict[str, int]
    samples: dict[str, dict[str, np.ndarray]]  # block -> metric -> (N,)
    group_sums: dict[str, dict[str, np.ndarray]]  # block -> key -> (G, C) sums over samples of the group
    group_counts: np.ndarray  # (G,) samples per group
    pred_clean: np.ndarray  # (N,)
    pred_adv: np.ndarray  # (N,)
    groups: np.ndarray  # (N,) group of each sample, -1 when excluded


def _batch_metrics(rec: dict[str, torch.Tensor], b: int, k: int, per_channel: bool
                   ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per-sample (B,) and per-sample-per-channel (B, C) quantities of one block for one paired batch.

    ``rec`` holds the probe's records of a 2B forward: rows [0, B) clean, [B, 2B) perturbed.
    """
    z_c, z_a = rec["z"][:b], rec["z"][b:]  # (B, C)
    s_c, s_a = rec["s"][:b], rec["s"][b:]  # (B, C)
    u = rec["u"].float()
    g = rec["g"].float()
    spatial = tuple(range(2, u.ndim))
    u_c, u_a = u[:b], u[b:]  # (B, C, H, W)
    g_c, g_a = g[:b], g[b:]
    # per-channel L2 norms over the spatial dims, (B, C); squared sums give the C*H*W norms
    u_ch = torch.linalg.vector_norm(u_c, dim=spatial)
    du_ch = torch.linalg.vector_norm(u_a - u_c, dim=spatial)
    g_ch = torch.linalg.vector_norm(g_c, dim=spatial)
    dg_ch = torch.linalg.vector_norm(g_a - g_c, dim=spatial)
    ds = s_a - s_c  # (B, C)
    dz = z_a - z_c

    def rel(delta: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:  # (B, C) x2 -> (B,)
        return delta.square().sum(1).sqrt() / ref.square().sum(1).sqrt()

    u_rel = rel(du_ch, u_ch)
    g_rel = rel(dg_ch, g_ch)
    z_rel = rel(dz, z_c)
    mask_c, mask_a = _topk_mask(s_c, k), _topk_mask(s_a, k)
    low_c, low_a = s_c < SAT_LOW, s_a < SAT_LOW
    high_c, high_a = s_c > SAT_HIGH, s_a > SAT_HIGH
    cross = (s_c > 0.5) != (s_a > 0.5)
    # channel-activation magnitude (Bai et al. 2021): mean |.| per channel, (B, C)
    mags = {
        "u_mag_clean": u_c.abs().mean(dim=spatial), "u_mag_adv": u_a.abs().mean(dim=spatial),
        "g_mag_clean": g_c.abs().mean(dim=spatial), "g_mag_adv": g_a.abs().mean(dim=spatial),
    }
    sample = {
        "s_rel_change": rel(ds, s_c),
        "s_cosine": torch.nn.functional.cosine_similarity(s_c, s_a, dim=1, eps=1e-12),
        "s_spearman": _rowwise_pearson(_average_ranks(s_c), _average_ranks(s_a)),
        "s_topk_jaccard": (mask_c & mask_a).sum(1) / (mask_c | mask_a).sum(1),
        "s_max_abs_change": ds.abs().amax(dim=1),
        "z_rel_change": z_rel,
        "u_rel_change": u_rel,
        "g_rel_change": g_rel,
        "damping_ratio": g_rel / u_rel,
        "z_over_u": z_rel / u_rel,
        "sat_low_clean": low_c.float().mean(1), "sat_low_adv": low_a.float().mean(1),
        "sat_high_clean": high_c.float().mean(1), "sat_high_adv": high_a.float().mean(1),
        "crossings": cross.float().mean(1),
    }
    for key, m in mags.items():
        sample[key] = m.mean(1)
    for key in _CV_COLUMNS:
        sample[key] = _cv(mags[key.replace("_cv", "")], dim=1)
    channel = dict(mags)
    if per_channel:
        channel.update({
            "s_clean": s_c, "s_adv": s_a, "s_change": ds, "s_abs_change": ds.abs(), "s_rel_change": ds.abs() / s_c,
            "z_clean": z_c, "z_adv": z_a, "z_abs": z_c.abs(), "z_abs_change": dz.abs(),
            "u_norm": u_ch, "u_abs_change": du_ch, "g_norm": g_ch, "g_abs_change": dg_ch,
            "sat_low_clean": low_c, "sat_low_adv": low_a, "sat_high_clean": high_c, "sat_high_adv": high_a,
            "crossings": cross, "topk_clean": mask_c, "topk_adv": mask_a,
        })
    return sample, channel


@torch.no_grad()
def _collect(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, *, y: torch.Tensor | None,
             split_success: bool, topk: int | None, per_channel: bool, batch_size: int) -> _Collected:
    """One pass over (x, x_adv) in paired batches; per-sample metrics and per-group channel sums."""
    device = model_device(model)
    n_groups = 2 if split_success else 1
    with eval_mode(model), ExcitationProbe(model, store_maps=True) as probe:
        blocks = probe.blocks
        sample_chunks: dict[str, dict[str, list[torch.Tensor]]] = {n: {} for n in blocks}
        sums: dict[str, dict[str, torch.Tensor]] = {n: {} for n in blocks}
        topk_of: dict[str, int] = {}
        preds_c, preds_a, group_chunks = [], [], []
        counts = torch.zeros(n_groups, device=device)
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size].to(device, non_blocking=True)
            xab = x_adv[start : start + batch_size].to(device, non_blocking=True, dtype=xb.dtype)
            b = xb.shape[0]
            logits = model(torch.cat([xb, xab], dim=0))  # (2B, K)
            pred = logits.argmax(dim=1)
            pc, pa = pred[:b], pred[b:]
            preds_c.append(pc)
            preds_a.append(pa)
            if split_success:
                yb = y[start : start + batch_size].to(device, non_blocking=True)
                # 1: attack succeeded (clean correct, perturbed wrong); 0: failed; -1: clean already wrong
                grp = torch.where(pc == yb, (pa != yb).long(), torch.full_like(pc, -1))
            else:
                grp = torch.zeros_like(pc)
            group_chunks.append(grp)
            keep = grp >= 0
            onehot = torch.nn.functional.one_hot(grp.clamp(min=0), n_groups).float() * keep[:, None]  # (B, G)
            counts += onehot.sum(0)
            records = probe.records(device=None)
            probe.clear()
            for name in blocks:
                rec = records[name]
                if rec["z"].shape[0] != 2 * b:
                    raise RuntimeError(f"SE block {name!r} ran {rec['z'].shape[0] // max(b, 1)} times per "
                                       "forward pass; excitation_shift needs each SE module called once")
                if name not in topk_of:
                    topk_of[name] = _resolve_k(topk, rec["z"].shape[1])
                sample, channel = _batch_metrics(rec, b, topk_of[name], per_channel)
                for key, value in sample.items():
                    sample_chunks[name].setdefault(key, []).append(value)
                for key, value in channel.items():
                    contrib = onehot.T @ value.float()  # (G, B) @ (B, C) -> (G, C)
                    sums[name][key] = sums[name][key] + contrib if key in sums[name] else contrib
            del records
    # one transfer per tensor, after the loop
    samples = {n: {k: torch.cat(v).cpu().numpy() for k, v in d.items()} for n, d in sample_chunks.items()}
    group_sums = {n: {k: v.cpu().numpy() for k, v in d.items()} for n, d in sums.items()}
    channels = {n: int(next(iter(d.values())).shape[1]) for n, d in group_sums.items()}
    return _Collected(
        blocks=blocks, channels=channels, topk=topk_of, samples=samples, group_sums=group_sums,
        group_counts=counts.cpu().numpy(), pred_clean=torch.cat(preds_c).cpu().numpy(),
        pred_adv=torch.cat(preds_a).cpu().numpy(), groups=torch.cat(group_chunks).cpu().numpy(),
    )


# ------------------------------------------------------------------------------------------ formatting
def _per_sample_frame(col: _Collected, y: np.ndarray | None) -> pd.DataFrame:
    n = col.pred_clean.shape[0]
    frames = []
    for depth, name in enumerate(col.blocks):
        data = {"block": name, "depth": depth, "channels": col.channels[name], "sample": np.arange(n),
                "pred_clean": col.pred_clean, "pred_adv": col.pred_adv}
        if y is not None:
            data["correct_clean"] = col.pred_clean == y
            data["correct_adv"] = col.pred_adv == y
            data["success"] = data["correct_clean"] & ~data["correct_adv"]
        data.update({k: col.samples[name][k] for k in _SAMPLE_METRICS})
        frames.append(pd.DataFrame(data))
    return pd.concat(frames, ignore_index=True)


def _block_frame(col: _Collected, y: np.ndarray | None, split_success: bool) -> pd.DataFrame:
    rows = []
    group_labels = (False, True) if split_success else (None,)
    for depth, name in enumerate(col.blocks):
        metrics = col.samples[name]
        for gi, label in enumerate(group_labels):
            sel = col.groups == gi
            row: dict[str, object] = {"block": name, "depth": depth, "channels": col.channels[name]}
            if label is not None:
                row["success"] = label
            row["n_samples"] = int(sel.sum())
            with warnings.catch_warnings():  # empty groups and all-NaN columns give NaN, on purpose
                warnings.simplefilter("ignore", RuntimeWarning)
                for key in _SAMPLE_METRICS:
                    if key not in _CV_COLUMNS:
                        row[key] = float(np.nanmean(metrics[key][sel])) if sel.any() else math.nan
                row["damping_ratio_of_means"] = float(
                    np.nanmean(metrics["g_rel_change"][sel]) / np.nanmean(metrics["u_rel_change"][sel])
                ) if sel.any() else math.nan
                row["z_over_u_of_means"] = float(
                    np.nanmean(metrics["z_rel_change"][sel]) / np.nanmean(metrics["u_rel_change"][sel])
                ) if sel.any() else math.nan
                count = col.group_counts[gi]
                for key in _MAG_KEYS:  # CV across channels of the sample-averaged channel magnitudes
                    per_channel = col.group_sums[name][key][gi] / count  # (C,)
                    row[key.replace("_mag", "_mag_cv")] = float(per_channel.std() / per_channel.mean())
            row["topk"] = col.topk[name]
            if y is not None:
                row["accuracy_clean"] = float((col.pred_clean == y).mean())
                row["accuracy_adv"] = float((col.pred_adv == y).mean())
            rows.append(row)
    return pd.DataFrame(rows)


def _channel_frame(col: _Collected, split_success: bool) -> pd.DataFrame:
    frames = []
    group_labels = (False, True) if split_success else (None,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for depth, name in enumerate(col.blocks):
            sums = col.group_sums[name]
            c = col.channels[name]
            for gi, label in enumerate(group_labels):
                count = col.group_counts[gi]
                mean = {k: v[gi] / count for k, v in sums.items()}  # (C,) each
                data: dict[str, object] = {"block": name, "depth": depth, "channels": c}
                if label is not None:
                    data["success"] = label
                data.update({"n_samples": int(count), "channel": np.arange(c)})
                data.update({
                    "s_clean": mean["s_clean"], "s_adv": mean["s_adv"], "s_change": mean["s_change"],
                    "s_abs_change": mean["s_abs_change"], "s_rel_change": mean["s_rel_change"],
                    "z_clean": mean["z_clean"], "z_adv": mean["z_adv"], "z_abs_change": mean["z_abs_change"],
                    "z_rel_change": sums["z_abs_change"][gi] / sums["z_abs"][gi],
                    "u_rel_change": sums["u_abs_change"][gi] / sums["u_norm"][gi],
                    "g_rel_change": sums["g_abs_change"][gi] / sums["g_norm"][gi],
                })
                data["damping_ratio"] = data["g_rel_change"] / data["u_rel_change"]
                data["z_over_u"] = data["z_rel_change"] / data["u_rel_change"]
                for key in ("sat_low_clean", "sat_low_adv", "sat_high_clean", "sat_high_adv", "crossings",
                            "topk_clean", "topk_adv", *_MAG_KEYS):
                    data[key] = mean[key]
                frames.append(pd.DataFrame(data))
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------------------ public API
def excitation_shift(
    model: nn.Module,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    *,
    per_channel: bool = False,
    per_sample: bool = False,
    topk: int | None = None,
    batch_size: int = 256,
    y: torch.Tensor | None = None,
    split_success: bool = False,
) -> pd.DataFrame:
    """How much each SE block's squeeze, excitation and gated output move from ``x`` to ``x_adv``.

    Block rows (the default) hold means over samples of per-sample quantities:

    * ``s_rel_change``, ``z_rel_change``, ``u_rel_change``, ``g_rel_change``: relative changes
      ``||q' - q|| / ||q||`` (over channels for s and z, over C x H x W for u and g);
    * ``s_cosine``: cosine similarity of clean and perturbed excitation vectors;
    * ``s_spearman``: Spearman rank correlation of the channels' excitations (ties get average ranks;
      NaN for a constant excitation, such samples are left out of the mean);
    * ``s_topk_jaccard``: |A & B| / |A | B| of the clean and perturbed top-k channel sets (column
      ``topk`` gives k, default ``max(1, C // 4)``);
    * ``s_max_abs_change``: largest |s' - s| over channels;
    * ``damping_ratio``: mean over samples of ``g_rel / u_rel`` (< 1: the gate damps);
      ``damping_ratio_of_means``: ``mean(g_rel) / mean(u_rel)``, less sensitive to samples whose u
      barely moved. Samples with ``u_rel = 0`` (x_adv == x) give NaN and are left out of the mean;
    * ``z_over_u`` (mean of ratios) and ``z_over_u_of_means``: ``z_rel / u_rel``, "the global state is
      stable" tested directly (< 1: the squeeze moves less than the map it summarises);
    * gate saturation: ``sat_low_clean/adv`` share of gates below 0.05, ``sat_high_clean/adv`` share
      above 0.95; ``crossings`` share of gates on opposite sides of 0.5 clean vs perturbed;
    * channel activation (Bai et al., ICLR 2021): ``u_mag_clean/adv`` and ``g_mag_clean/adv`` mean
      |u| (|g|) per channel averaged over channels and samples; ``u_mag_cv_*``/``g_mag_cv_*`` the
      coefficient of variation across channels of the sample-averaged channel magnitudes (in
      ``per_sample`` rows: of that sample's channel magnitudes).

    Args:
        model: a model with SE modules, taking [0, 1] images; run in eval mode, modes restored.
        x: clean inputs (N, C, H, W), on any device (moved batch by batch).
        x_adv: perturbed inputs, same shape.
        per_channel: one row per (block, channel) instead: mean ``s_clean``/``s_adv``, ``s_change``,
            ``s_abs_change``, ``s_rel_change`` (mean |ds| / s; inf where a hard sigmoid gives s = 0), ``z_clean``/``z_adv``/``z_abs_change``,
            ``z_rel_change``/``u_rel_change``/``g_rel_change`` (ratios of means over samples, since one
            sample's channel can be all zero), ``damping_ratio``, ``z_over_u``, saturation and
            crossing shares, ``topk_clean``/``topk_adv`` (share of samples where the channel is in
            the top k), and the channel magnitudes.
        per_sample: one row per (sample, block) with the per-sample values, plus ``sample`` (index
            into x), ``pred_clean``/``pred_adv`` and, given ``y``, ``correct_clean``,
            ``correct_adv`` and ``success`` (clean correct, perturbed wrong), for CIs and splits.
        topk: k of the top-k overlap; ``None`` gives ``max(1, C // 4)`` per block; clamped to C.
        batch_size: samples per paired forward pass (each pass runs 2 * batch_size inputs).
        y: labels (N,); adds ``accuracy_clean``/``accuracy_adv`` to block rows.
        split_success: needs ``y``; block (or channel) rows per ``success`` value: True for samples
            the perturbation flipped from correct to wrong, False for samples that stayed correct.
            Samples misclassified when clean belong to neither group.

    Returns:
        A DataFrame with columns ``block``, ``depth`` (index among the SE modules), ``channels`` and
        ``n_samples`` first, then the metrics above.

    Raises:
        NoSEModuleError: the model has no SE module.
        ValueError: mismatched shapes, ``split_success`` without ``y``, or ``per_sample`` together with
            ``per_channel``.
    """
    if per_sample and per_channel:
        raise ValueError("per_sample and per_channel together would give one row per sample x channel; "
                         "choose one")
    if split_success and y is None:
        raise ValueError("split_success=True needs the labels y to tell successful from failed attacks")
    _check_pair(x, x_adv, y, batch_size)
    col = _collect(model, x, x_adv, y=y, split_success=split_success and not per_sample, topk=topk,
                   per_channel=per_channel, batch_size=batch_size)
    y_np = y.detach().cpu().numpy() if y is not None else None
    if per_sample:
        return _per_sample_frame(col, y_np)
    if per_channel:
        return _channel_frame(col, split_success)
    return _block_frame(col, y_np, split_success)


def sign_noise(x: torch.Tensor, eps: float, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``clip(x + eps * sign(N(0, 1)), 0, 1)``: uniform random signs at the Linf budget ``eps``.

    The noise is drawn on the CPU (reproducible across devices with a CPU ``generator``) and moved to
    x's device. Shape: same as x.
    """
    signs = torch.randn(x.shape, generator=generator).sign().to(device=x.device, dtype=x.dtype)
    return (x + eps * signs).clamp(0.0, 1.0)


def matched_gaussian_noise(
    x: torch.Tensor,
    x_adv: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    batch_size: int = 1024,
    iters: int = 50,
) -> torch.Tensor:
    """Gaussian noise whose applied perturbation has, per sample, the L2 norm of ``x_adv - x``.

    The direction is a standard normal draw; its scale t is found per sample by bisection so that the
    perturbation actually applied, ``clip(x + t * n, 0, 1) - x``, has the adversarial perturbation's L2
    norm (clipping only shrinks a perturbation, and ``t -> ||clip(x + t n) - x||`` is non-decreasing, so
    bisection converges). Scaling before clipping would leave the control weaker than the attack on
    images with many pixels at 0 or 1. Where the target is out of reach (every pixel would saturate),
    the noise saturates and a warning says for how many samples.

    Shape: x, x_adv (N, ...) -> (N, ...).
    """
    if x.shape != x_adv.shape:
        raise ValueError(f"x and x_adv must have the same shape, got {tuple(x.shape)} and {tuple(x_adv.shape)}")
    out = torch.empty_like(x)
    unreachable = 0
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size].float()
        b = xb.shape[0]
        xf = xb.reshape(b, -1)  # (B, D)
        target = (x_adv[start : start + batch_size].float().reshape(b, -1) - xf).norm(dim=1)  # (B,)
        n = torch.randn(xf.shape, generator=generator).to(xf.device)
        n = n / n.norm(dim=1, keepdim=True)
        # farthest reachable perturbation: every pixel pushed to 0 or 1 along the sign of n
        reach = torch.where(n > 0, 1 - xf, torch.where(n < 0, xf, torch.zeros_like(xf)))
        max_norm = reach.norm(dim=1)
        t_sat = (reach / n.abs().clamp_min(1e-30)).amax(dim=1)  # scale at which everything saturates
        too_far = target > max_norm
        unreachable += int(too_far.sum())
        lo = torch.zeros_like(target)
        hi = torch.where(too_far, t_sat, torch.maximum(t_sat, target))
        for _ in range(iters):
            mid = (lo + hi) / 2
            norm = ((xf + mid[:, None] * n).clamp(0, 1) - xf).norm(dim=1)
            below = norm < target
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        t = torch.where(too_far, t_sat, hi)
        out[start : start + b] = (xf + t[:, None] * n).clamp(0, 1).reshape(xb.shape).to(x.dtype)
    if unreachable:
        warnings.warn(f"{unreachable} samples: the adversarial L2 norm exceeds what clipped noise can reach; "
                      "their Gaussian control saturates every pixel", stacklevel=2)
    return out


_CONTROLS = ("sign_noise", "gaussian")


def shift_analysis(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | str | Sequence[float | str],
    *,
    attack: str | AttackSpec | Callable[[nn.Module, torch.Tensor, torch.Tensor, float], torch.Tensor] = "pgd",
    controls: Sequence[str] = _CONTROLS,
    seed: int = 0,
    batch_size: int = 256,
    per_channel: bool = False,
    split_success: bool = False,
    topk: int | None = None,
) -> pd.DataFrame:
    """Excitation shift under an attack and under random perturbations of matched size, per eps.

    For each eps: the adversarial inputs (``serobust.attacks.generate``), then the controls on the
    same clean inputs: ``"sign_noise"`` -- ``clip(x + eps * sign(N(0, 1)))``, the same Linf budget with
    random signs; ``"gaussian"`` -- a Gaussian direction whose applied perturbation has, per sample,
    the L2 norm of the adversarial perturbation actually used (:func:`matched_gaussian_noise`). The
    control noise uses the same draws at every eps (common random numbers, seeded by ``seed``), so
    rows differ across eps only by the budget. An adversarial shift is then read against chance.

    Args:
        model: an SE model on its device; run in eval mode.
        x: clean inputs (N, C, H, W) in [0, 1].
        y: labels (N,).
        eps: one budget or several, in [0, 1] pixel units (floats or strings like ``"8/255"``).
        attack: an attack name or :class:`~serobust.attacks.AttackSpec` for
            :func:`serobust.attacks.generate` (run with ``seed`` and ``batch_size``), or a callable
            ``attack(model, x, y, eps) -> x_adv``. The ``"sign_noise"`` control reads eps as an Linf
            budget; for L2 attacks the ``"gaussian"`` control is the matched one.
        controls: which controls to run, among ``"sign_noise"`` and ``"gaussian"``.
        seed: seeds the attack and the control noise.
        batch_size: batch size of the attack and of the paired forward passes.
        per_channel: rows per (perturbation, eps, block, channel), as in :func:`excitation_shift`.
        split_success: rows per ``success`` value (see :func:`excitation_shift`).
        topk: k of the top-k overlap (default ``max(1, C // 4)``).

    Returns:
        One row per (perturbation, eps, block[, channel][, success]): ``perturbation`` (the attack's
        name, ``"sign_noise"`` or ``"gaussian"``), ``kind`` (``"adversarial"`` or ``"control"``),
        ``eps``, the :func:`excitation_shift` columns, ``accuracy`` under that perturbation,
        ``clean_accuracy``, ``pert_l2`` (mean per-sample L2 norm of the applied perturbation) and
        ``pert_linf`` (its largest Linf norm).
    """
    eps_list = parse_eps_list(eps)
    controls = [controls] if isinstance(controls, str) else list(controls)
    bad = [c for c in controls if c not in _CONTROLS]
    if bad:
        raise ValueError(f"unknown controls {bad}; valid names: {list(_CONTROLS)}")
    if not isinstance(y, torch.Tensor):
        raise TypeError("y must be a tensor of labels, shape (N,)")
    _check_pair(x, x, y, batch_size)
    find_se_modules(model)  # fail before the (slow) attack when probing a baseline
    from .attacks import AttackSpec, generate

    if isinstance(attack, str | AttackSpec):
        attack_name = attack if isinstance(attack, str) else attack.label

        def run_attack(e: float) -> torch.Tensor:
            return generate(model, x, y, attack, e, seed=seed, batch_size=batch_size)
    elif callable(attack):
        attack_name = getattr(attack, "__name__", "custom")

        def run_attack(e: float) -> torch.Tensor:
            return attack(model, x, y, e)
    else:
        raise TypeError("attack must be an attack name, an AttackSpec or a callable (model, x, y, eps) -> x_adv; "
                        f"got {attack!r}")

    y_np = y.detach().cpu().numpy()
    frames = []
    for e in eps_list:
        x_adv = run_attack(e).detach()
        if x_adv.shape != x.shape:
            raise RuntimeError(f"attack {attack_name!r} returned shape {tuple(x_adv.shape)} for inputs "
                               f"{tuple(x.shape)}")
        x_adv = x_adv.to(x.device)
        perturbed = [(attack_name, "adversarial", x_adv)]
        if "sign_noise" in controls:
            gen = torch.Generator().manual_seed(seed)
            perturbed.append(("sign_noise", "control", sign_noise(x, e, generator=gen)))
        if "gaussian" in controls:
            gen = torch.Generator().manual_seed(seed + 1)
            perturbed.append(("gaussian", "control",
                              matched_gaussian_noise(x, x_adv, generator=gen, batch_size=max(batch_size, 1024))))
        for name, kind, xp in perturbed:
            col = _collect(model, x, xp, y=y, split_success=split_success, topk=topk,
                           per_channel=per_channel, batch_size=batch_size)
            frame = _channel_frame(col, split_success) if per_channel else _block_frame(col, y_np, split_success)
            frame = frame.drop(columns=["accuracy_clean", "accuracy_adv"], errors="ignore")
            delta = (xp.float() - x.float()).reshape(x.shape[0], -1)  # (N, D)
            frame.insert(0, "eps", e)
            frame.insert(0, "kind", kind)
            frame.insert(0, "perturbation", name)
            frame["accuracy"] = float((col.pred_adv == y_np).mean())
            frame["clean_accuracy"] = float((col.pred_clean == y_np).mean())
            frame["pert_l2"] = float(delta.norm(dim=1).mean())
            frame["pert_linf"] = float(delta.abs().amax())
            frames.append(frame)
            logger.info("shift_analysis: %s eps=%.4g accuracy=%.4f", name, e, frame["accuracy"].iloc[0])
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------ matched sensitivity
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
        x: clean inputs (N, ...); x_adv: perturbed inputs, same shape.
        layers: module names whose outputs to compare; default the parents of the model's SE modules
            (required for a model without SE: use :func:`matched_layers`).
        batch_size: samples per paired forward pass.
        per_sample: one row per (sample, layer) instead of per layer.

    Returns:
        Per layer: ``layer``, ``depth`` (index in ``layers``), ``n_samples``, ``rel_change`` (mean
        over samples), ``rel_change_median``, ``rel_change_std``, ``norm_clean``, ``norm_adv``; per
        sample: ``layer``, ``depth``, ``sample``, ``rel_change``, ``norm_clean``, ``norm_adv``.
    """
    _check_pair(x, x_adv, None, batch_size)
    if layers is None:
        try:
            layers = _se_parents(model)
        except NoSEModuleError:
            raise ValueError("this model has no SE module to locate default layers; pass "
                             "layers=matched_layers(baseline, se_model)") from None
    layers = [layers] if isinstance(layers, str) else list(layers)
    if not layers:
        raise ValueError("layers is empty; name at least one module")
    modules = dict(model.named_modules())
    unknown = [name for name in layers if name not in modules]
    if unknown:
        raise ValueError(f"layers {unknown} are not modules of {type(model).__name__}; "
                         "see model.named_modules() or use matched_layers(baseline, se_model)")
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
