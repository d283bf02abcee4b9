"""Excitation shift under perturbation: does the global state z stay put, and does the gate damp?

The hypothesis under test (DESIGN.md): SE's global rescaling damps adversarial sensitivity because the
squeeze ``z`` (the global state) hardly changes, so the excitation ``s`` hardly changes, and the gated
output ``g = s * u`` changes relatively less than the gate's input ``u``. This module measures each
link of that chain per SE block, per sample, and against chance:

* :func:`excitation_shift` -- clean vs perturbed: every metric of the table
  :data:`serobust.excitation.shift_metrics.SHIFT_METRICS` (relative changes of z, s, u and g, rank stability of
  the excitation, damping ratios, gate saturation, channel-activation magnitudes, and any metric
  registered with :func:`serobust.register_shift_metric`), per sample, per block or per channel.
* :func:`shift_analysis` -- the same for an attack and for random controls of matched size
  (:mod:`serobust.excitation.controls`), so an adversarial shift is read against what chance does.

Each batch of clean and perturbed inputs runs as ONE forward pass (the two halves concatenated), with
an :class:`~serobust.excitation.probe.ExcitationProbe` holding the maps of that batch only; the per-sample
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

from ..eps import parse_eps_list
from ..names import ADVERSARIAL, CONTROLS, GAUSSIAN, SIGN_NOISE
from ..runtime import check_int, eval_mode, model_device
from .adapters import find_se_modules
from .controls import matched_gaussian_noise, sign_noise
from .inputs import check_analysis_inputs
from .probe import ExcitationProbe
from .shift_metrics import (
    CHANNEL_COLUMNS,
    CHANNEL_QUANTITIES,
    POOLED_METRICS,
    SHIFT_METRICS,
    BlockPair,
    SampleGroup,
)

if TYPE_CHECKING:
    from ..attacks import AttackSpec

__all__ = ["excitation_shift", "shift_analysis"]

logger = logging.getLogger(__name__)


def _resolve_k(topk: int | None, channels: int) -> int:
    if topk is None:
        return max(1, channels // 4)
    return min(check_int(topk, name="topk", hint=" or None (default max(1, C // 4))"), channels)


# ------------------------------------------------------------------------------------- collection core
@dataclass
class _Collected:
    """Everything one pass over (x, x_adv) produced, on the CPU."""

    blocks: list[str]
    metrics: list[str]  # the per-sample metrics computed (the table at the time of the call)
    pooled: dict[str, Callable[[SampleGroup], float]]
    channels: dict[str, int]
    topk: dict[str, int]
    samples: dict[str, dict[str, np.ndarray]]  # block -> metric -> (N,)
    group_sums: dict[str, dict[str, np.ndarray]]  # block -> channel quantity -> (G, C) sums over the group
    group_counts: np.ndarray  # (G,) samples per group
    pred_clean: np.ndarray  # (N,)
    pred_adv: np.ndarray  # (N,)
    groups: np.ndarray  # (N,) group of each sample, -1 when excluded


def _block_metrics(pair: BlockPair, metrics: dict[str, Callable[[BlockPair], torch.Tensor]], block: str
                   ) -> dict[str, torch.Tensor]:
    """Every per-sample metric of one block for one paired batch, each (B,)."""
    out = {}
    for name, fn in metrics.items():
        value = fn(pair)
        if not isinstance(value, torch.Tensor) or value.shape != (pair.batch,):
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"shift metric {name!r} returned {got} for block {block!r}; a shift metric must "
                             f"return one value per sample, a tensor of shape ({pair.batch},)")
        out[name] = value
    return out


@torch.no_grad()
def _collect(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, *, y: torch.Tensor | None,
             split_success: bool, topk: int | None, batch_size: int) -> _Collected:
    """One pass over (x, x_adv) in paired batches; per-sample metrics and per-group channel sums.

    No host sync inside the loop: metrics, group sums and predictions stay on the device until the
    transfers after it. The inputs were checked as a whole by the caller, so the probe does not
    check them again batch by batch.
    """
    device = model_device(model)
    metrics = dict(SHIFT_METRICS)
    n_groups = 2 if split_success else 1
    with eval_mode(model), ExcitationProbe(model, store_maps=True, check_inputs=False) as probe:
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
            records = probe.pop_records()
            for name in blocks:
                rec = records[name]
                if rec["z"].shape[0] != 2 * b:
                    raise RuntimeError(f"SE block {name!r} ran {rec['z'].shape[0] // max(b, 1)} times per "
                                       "forward pass; excitation_shift needs each SE module called once")
                if name not in topk_of:
                    topk_of[name] = _resolve_k(topk, rec["z"].shape[1])
                pair = BlockPair.from_records(rec, b, topk_of[name])
                for key, value in _block_metrics(pair, metrics, name).items():
                    sample_chunks[name].setdefault(key, []).append(value)
                for key, fn in CHANNEL_QUANTITIES.items():
                    contrib = onehot.T @ fn(pair).float()  # (G, B) @ (B, C) -> (G, C)
                    sums[name][key] = sums[name][key] + contrib if key in sums[name] else contrib
            del records
    # one transfer per tensor, after the loop
    samples = {n: {k: torch.cat(v).cpu().numpy() for k, v in d.items()} for n, d in sample_chunks.items()}
    group_sums = {n: {k: v.cpu().numpy() for k, v in d.items()} for n, d in sums.items()}
    channels = {n: int(next(iter(d.values())).shape[1]) for n, d in group_sums.items()}
    return _Collected(
        blocks=blocks, metrics=list(metrics), pooled=dict(POOLED_METRICS), channels=channels, topk=topk_of,
        samples=samples, group_sums=group_sums, group_counts=counts.cpu().numpy(),
        pred_clean=torch.cat(preds_c).cpu().numpy(), pred_adv=torch.cat(preds_a).cpu().numpy(),
        groups=torch.cat(group_chunks).cpu().numpy(),
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
        data.update({k: col.samples[name][k] for k in col.metrics})
        frames.append(pd.DataFrame(data))
    return pd.concat(frames, ignore_index=True)


def _group_row(col: _Collected, name: str, gi: int) -> dict[str, float]:
    """The metric columns of one block row: means over the group's samples, then the pooled ones."""
    sel = col.groups == gi
    count = col.group_counts[gi]
    row: dict[str, float] = {}
    if not sel.any():  # an empty group: no value to report
        return {**{k: math.nan for k in col.metrics if k not in col.pooled}, **{k: math.nan for k in col.pooled}}
    group = SampleGroup(samples={k: v[sel] for k, v in col.samples[name].items()},
                        channel_sums={k: v[gi] for k, v in col.group_sums[name].items()}, count=count)
    with warnings.catch_warnings():  # all-NaN columns give NaN, on purpose
        warnings.simplefilter("ignore", RuntimeWarning)
        for key in col.metrics:
            if key not in col.pooled:
                row[key] = float(np.nanmean(group.samples[key]))
        for key, fn in col.pooled.items():
            row[key] = fn(group)
    return row


def _block_frame(col: _Collected, y: np.ndarray | None, split_success: bool) -> pd.DataFrame:
    rows = []
    group_labels = (False, True) if split_success else (None,)
    for depth, name in enumerate(col.blocks):
        for gi, label in enumerate(group_labels):
            row: dict[str, object] = {"block": name, "depth": depth, "channels": col.channels[name]}
            if label is not None:
                row["success"] = label
            row["n_samples"] = int((col.groups == gi).sum())
            row.update(_group_row(col, name, gi))
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
            c = col.channels[name]
            for gi, label in enumerate(group_labels):
                count = col.group_counts[gi]
                sums = {k: v[gi] for k, v in col.group_sums[name].items()}  # (C,) each
                data: dict[str, object] = {"block": name, "depth": depth, "channels": c}
                if label is not None:
                    data["success"] = label
                data.update({"n_samples": int(count), "channel": np.arange(c)})
                data.update({key: fn(sums, count) for key, fn in CHANNEL_COLUMNS.items()})
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

    One column per entry of :data:`serobust.excitation.shift_metrics.SHIFT_METRICS`; block rows (the default)
    hold means over samples of the per-sample values (NaN left out), or a pooled value:

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
      ``per_sample`` rows: of that sample's channel magnitudes);
    * every metric added with :func:`serobust.register_shift_metric`.

    Args:
        model: a model with SE modules, taking [0, 1] images; run in eval mode, modes restored.
        x: clean inputs (N, C, H, W) in [0, 1], on any device (moved batch by batch).
        x_adv: perturbed inputs, same shape, in [0, 1].
        per_channel: one row per (block, channel) instead: mean ``s_clean``/``s_adv``, ``s_change``,
            ``s_abs_change``, ``s_rel_change`` (mean |ds| / s; inf where a hard sigmoid gives s = 0),
            ``z_clean``/``z_adv``/``z_abs_change``, ``z_rel_change``/``u_rel_change``/``g_rel_change``
            (ratios of means over samples, since one sample's channel can be all zero),
            ``damping_ratio``, ``z_over_u``, saturation and crossing shares, ``topk_clean``/``topk_adv``
            (share of samples where the channel is in the top k), and the channel magnitudes.
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
        InputError: images not float (N, C, H, W) in [0, 1], NaN, mismatched shapes, bad labels.
        ValueError: ``split_success`` without ``y``, or ``per_sample`` together with ``per_channel``.
    """
    if per_sample and per_channel:
        raise ValueError("per_sample and per_channel together would give one row per sample x channel; "
                         "choose one")
    if split_success and y is None:
        raise ValueError("split_success=True needs the labels y to tell successful from failed attacks")
    check_analysis_inputs(x, y=y, x_adv=x_adv, batch_size=batch_size)
    col = _collect(model, x, x_adv, y=y, split_success=split_success and not per_sample, topk=topk,
                   batch_size=batch_size)
    y_np = y.detach().cpu().numpy() if y is not None else None
    if per_sample:
        return _per_sample_frame(col, y_np)
    if per_channel:
        return _channel_frame(col, split_success)
    return _block_frame(col, y_np, split_success)


AttackFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, float], torch.Tensor]


def _attack_runner(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: str | AttackSpec | AttackFn,
                   seed: int, batch_size: int) -> tuple[str, Callable[[float], torch.Tensor]]:
    """The attack's label and ``run(eps) -> x_adv`` for a name, an AttackSpec or a callable."""
    from ..attacks import AttackSpec, generate

    if isinstance(attack, str | AttackSpec):
        return (attack if isinstance(attack, str) else attack.label,
                lambda e: generate(model, x, y, attack, e, seed=seed, batch_size=batch_size))
    if callable(attack):
        return getattr(attack, "__name__", "custom"), lambda e: attack(model, x, y, e)
    raise TypeError("attack must be an attack name, an AttackSpec or a callable (model, x, y, eps) -> x_adv; "
                    f"got {attack!r}")


def shift_analysis(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | str | Sequence[float | str],
    *,
    attack: str | AttackSpec | AttackFn = "pgd",
    controls: Sequence[str] = CONTROLS,
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
    the L2 norm of the adversarial perturbation actually used
    (:func:`~serobust.excitation.controls.matched_gaussian_noise`). The control noise uses the same draws at
    every eps (common random numbers, seeded by ``seed``), so rows differ across eps only by the
    budget. An adversarial shift is then read against chance.

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
        label, ``"sign_noise"`` or ``"gaussian"``), ``kind`` (one of :data:`serobust.names.KINDS`:
        ``"adversarial"`` for the attack's rows, else the control's name), ``eps``, the
        :func:`excitation_shift` columns, ``accuracy`` under that perturbation, ``clean_accuracy``,
        ``pert_l2`` (mean per-sample L2 norm of the applied perturbation) and ``pert_linf`` (its
        largest Linf norm).

    Raises:
        InputError: bad images or labels, or the attack returned images of another shape or outside
            [0, 1].
    """
    eps_list = parse_eps_list(eps)
    controls = [controls] if isinstance(controls, str) else list(controls)
    bad = [c for c in controls if c not in CONTROLS]
    if bad:
        raise ValueError(f"unknown controls {bad}; valid names: {list(CONTROLS)}")
    check_analysis_inputs(x, y=y, batch_size=batch_size)
    find_se_modules(model)  # fail before the (slow) attack when probing a baseline
    attack_name, run_attack = _attack_runner(model, x, y, attack, seed, batch_size)
    y_np = y.detach().cpu().numpy()
    frames = []
    for e in eps_list:
        x_adv = run_attack(e).detach()
        check_analysis_inputs(x, x_adv=x_adv, x_adv_name=f"the output of attack {attack_name!r}")
        x_adv = x_adv.to(x.device)
        perturbed = [(attack_name, ADVERSARIAL, x_adv)]
        if SIGN_NOISE in controls:
            gen = torch.Generator().manual_seed(seed)
            perturbed.append((SIGN_NOISE, SIGN_NOISE, sign_noise(x, e, generator=gen)))
        if GAUSSIAN in controls:
            gen = torch.Generator().manual_seed(seed + 1)
            perturbed.append((GAUSSIAN, GAUSSIAN,
                              matched_gaussian_noise(x, x_adv, generator=gen, batch_size=max(batch_size, 1024))))
        for name, kind, xp in perturbed:
            col = _collect(model, x, xp, y=y, split_success=split_success, topk=topk, batch_size=batch_size)
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
