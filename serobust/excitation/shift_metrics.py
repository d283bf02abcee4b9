"""The table of excitation-shift metrics: one named function per quantity, clean vs perturbed.

The hypothesis under test (DESIGN.md; Hu et al., "Squeeze-and-Excitation Networks", 1709.01507): an
SE block squeezes its input map ``u`` to the channel means ``z``, computes the excitation
``s = sigmoid(W2 relu(W1 z))`` and outputs ``g = s * u``; if the global state ``z`` hardly moves under
attack, ``s`` hardly moves and ``g`` changes relatively less than ``u``. Each link of that chain is one
metric here, a function of a :class:`BlockPair` (one SE block's records for B clean inputs and their B
perturbed versions) that returns one value per sample, shape (B,).

:data:`SHIFT_METRICS` maps a column name to that function; :func:`serobust.excitation_shift` (per
sample and per block) and :func:`serobust.shift_analysis` compute every entry, so a new metric is one
call of :func:`register_shift_metric` and appears as a column everywhere. Block rows average a metric
over samples (NaN left out), unless a *pooled* function says how the whole group of samples gives the
block value (the channel-magnitude CVs of Bai et al., ICLR 2021, are taken across channels of the
sample-averaged magnitudes; ``damping_ratio_of_means`` is a ratio of two means).

The per-channel view (``excitation_shift(..., per_channel=True)``) is a second, smaller table:
:data:`CHANNEL_QUANTITIES` are (B, C) quantities summed over samples, and ``CHANNEL_COLUMNS`` turn the
sums into the columns (a mean over samples, or a ratio of two sums).

Relative change of q under x -> x' is ``||q(x') - q(x)|| / ||q(x)||`` per sample, with the L2 norm over
channels for z and s and over C x H x W for the maps u and g.

The gate's own contribution. The gated change splits exactly into what a frozen gate would pass and
what the excitation's own change adds::

    dg = s' u' - s u = s * du + ds * u'        (du = u' - u, ds = s' - s)

``absorb_ratio = ||dg|| / ||s * du||`` is the direct test of "the gate absorbs the perturbation": exactly
1 for a frozen gate (ds = 0), below 1 only when the excitation's change opposes the feature change
(``gate_added_cos`` < 0, the cosine between ``ds * u'`` and ``s * du`` over C x H x W), above 1 when it
amplifies it. Unlike the damping ratio, it is 1 for a frozen gate whatever the spread of s (the damping
ratio compares ``||s du|| / ||s u||`` with ``||du|| / ||u||`` and moves away from 1 whenever s is
uneven across channels). ``gate_passed_rel`` and ``gate_added_rel`` are the two parts' norms relative
to ``||g||`` (so ``gate_passed_rel`` is what ``g_rel_change`` would be with a frozen gate).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "BlockPair",
    "SampleGroup",
    "SHIFT_METRICS",
    "POOLED_METRICS",
    "CHANNEL_QUANTITIES",
    "CHANNEL_COLUMNS",
    "register_shift_metric",
    "SAT_LOW",
    "SAT_HIGH",
]

SAT_LOW = 0.05  # a gate below this is "closed" (saturated low)
SAT_HIGH = 0.95  # a gate above this is "open" (saturated high)

_MAPS = ("u", "g")  # the feature maps entering (u) and leaving (g = s * u) the gate
_SIDES = ("clean", "adv")

# names a metric may not take: the identifying and bookkeeping columns of the frames
_RESERVED = frozenset({
    "block", "depth", "channels", "channel", "sample", "success", "n_samples", "topk", "pred_clean",
    "pred_adv", "correct_clean", "correct_adv", "accuracy", "accuracy_clean", "accuracy_adv",
    "clean_accuracy", "perturbation", "kind", "eps", "pert_l2", "pert_linf",
})


# ---------------------------------------------------------------------------------------------- helpers
def average_ranks(x: torch.Tensor) -> torch.Tensor:
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


def _jaccard(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|A & B| / |A | B| of two boolean (B, C) masks, per row. Shape: (B,)."""
    return (a & b).sum(1) / (a | b).sum(1)


def _rel(delta: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``||delta|| / ||ref||`` per row, L2 over dim 1. Shape: (B, C) x2 -> (B,)."""
    return delta.square().sum(1).sqrt() / ref.square().sum(1).sqrt()


# ------------------------------------------------------------------------------------------ the records
@dataclass(eq=False)
class BlockPair:
    """One SE block's records for B clean inputs and their B perturbed versions (float32, on the device).

    The fields are what :class:`~serobust.excitation.probe.ExcitationProbe` records (``store_maps=True``); the
    properties are intermediate quantities several metrics share, computed once per batch.

    Attributes:
        z_clean, z_adv: squeeze ``z = mean_hw(u)``, (B, C).
        s_clean, s_adv: excitation ``s``, (B, C).
        u_clean, u_adv: the map entering the gate, (B, C, H, W).
        g_clean, g_adv: the gated map ``s * u``, (B, C, H, W).
        topk: k of the top-k channel sets (``max(1, C // 4)`` unless the caller chose).
    """

    z_clean: torch.Tensor
    z_adv: torch.Tensor
    s_clean: torch.Tensor
    s_adv: torch.Tensor
    u_clean: torch.Tensor
    u_adv: torch.Tensor
    g_clean: torch.Tensor
    g_adv: torch.Tensor
    topk: int

    @classmethod
    def from_records(cls, rec: dict[str, torch.Tensor], b: int, topk: int) -> BlockPair:
        """Split the probe's records of one 2B forward: rows [0, B) clean, [B, 2B) perturbed."""
        u, g = rec["u"].float(), rec["g"].float()
        return cls(z_clean=rec["z"][:b], z_adv=rec["z"][b:], s_clean=rec["s"][:b], s_adv=rec["s"][b:],
                   u_clean=u[:b], u_adv=u[b:], g_clean=g[:b], g_adv=g[b:], topk=topk)

    @property
    def batch(self) -> int:
        return self.s_clean.shape[0]

    @functools.cached_property
    def spatial(self) -> tuple[int, ...]:
        return tuple(range(2, self.u_clean.ndim))

    @functools.cached_property
    def ds(self) -> torch.Tensor:
        """``s' - s``, (B, C)."""
        return self.s_adv - self.s_clean

    @functools.cached_property
    def dz(self) -> torch.Tensor:
        """``z' - z``, (B, C)."""
        return self.z_adv - self.z_clean

    @functools.cached_property
    def channel_norms(self) -> dict[str, torch.Tensor]:
        """Per-channel L2 norms over the spatial dims, (B, C): ``u``, ``du`` (of u' - u), ``g``, ``dg``,
        ``u_adv`` (of u'), and the inner product ``du_dot_uadv`` = <u'_c - u_c, u'_c> (not a norm).

        Their squares summed over channels give the C x H x W norms of the maps.
        """
        sp = self.spatial
        du = self.u_adv - self.u_clean
        return {"u": torch.linalg.vector_norm(self.u_clean, dim=sp),
                "du": torch.linalg.vector_norm(du, dim=sp),
                "g": torch.linalg.vector_norm(self.g_clean, dim=sp),
                "dg": torch.linalg.vector_norm(self.g_adv - self.g_clean, dim=sp),
                "u_adv": torch.linalg.vector_norm(self.u_adv, dim=sp),
                "du_dot_uadv": (du * self.u_adv).sum(dim=sp)}

    @functools.cached_property
    def gate_parts(self) -> dict[str, torch.Tensor]:
        """The split ``dg = s * du + ds * u'`` per channel and per sample.

        ``passed_c`` = ||s_c du_c||, ``added_c`` = ||ds_c u'_c|| (B, C); ``passed``, ``added`` their
        C x H x W norms (B,); ``cos`` (B,) the cosine between the two parts over C x H x W, from
        <s_c du_c, ds_c u'_c> = s_c ds_c <du_c, u'_c> (NaN where a part is zero).
        """
        cn = self.channel_norms
        passed_c = self.s_clean.abs() * cn["du"]
        added_c = self.ds.abs() * cn["u_adv"]
        passed, added = passed_c.square().sum(1).sqrt(), added_c.square().sum(1).sqrt()
        dot = (self.s_clean * self.ds * cn["du_dot_uadv"]).sum(1)
        return {"passed_c": passed_c, "added_c": added_c, "passed": passed, "added": added,
                "cos": dot / (passed * added)}

    @functools.cached_property
    def u_rel(self) -> torch.Tensor:
        """Relative change of u over C x H x W, (B,)."""
        return _rel(self.channel_norms["du"], self.channel_norms["u"])

    @functools.cached_property
    def g_rel(self) -> torch.Tensor:
        """Relative change of g over C x H x W, (B,)."""
        return _rel(self.channel_norms["dg"], self.channel_norms["g"])

    @functools.cached_property
    def z_rel(self) -> torch.Tensor:
        """Relative change of z over channels, (B,)."""
        return _rel(self.dz, self.z_clean)

    @functools.cached_property
    def topk_masks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Boolean (B, C) masks of the clean and the perturbed top-k channels."""
        return _topk_mask(self.s_clean, self.topk), _topk_mask(self.s_adv, self.topk)

    @functools.cached_property
    def magnitudes(self) -> dict[str, torch.Tensor]:
        """Channel-activation magnitude (Bai et al. 2021): mean |.| per channel, ``u_mag_clean`` ... (B, C)."""
        return {f"{m}_mag_{side}": getattr(self, f"{m}_{side}").abs().mean(dim=self.spatial)
                for m in _MAPS for side in _SIDES}


@dataclass(frozen=True)
class SampleGroup:
    """The samples one block row summarises (all, or those an attack fooled), for pooled metrics.

    Attributes:
        samples: metric name -> per-sample values of the group's samples (float32 numpy).
        channel_sums: channel quantity -> (C,) sum over the group's samples (:data:`CHANNEL_QUANTITIES`).
        count: number of samples in the group (float32, > 0).
    """

    samples: dict[str, np.ndarray]
    channel_sums: dict[str, np.ndarray]
    count: np.float32


ShiftMetric = Callable[[BlockPair], torch.Tensor]
PooledMetric = Callable[[SampleGroup], float]


# ------------------------------------------------------------------------------------------- the table
def _mag_mean(key: str) -> ShiftMetric:
    return lambda p: p.magnitudes[key].mean(1)


def _mag_cv(key: str) -> ShiftMetric:
    return lambda p: _cv(p.magnitudes[key], dim=1)


def _channel_cv(key: str) -> PooledMetric:
    """CV across channels of the sample-averaged channel magnitudes (Bai et al.'s dataset-level view)."""

    def pooled(group: SampleGroup) -> float:
        per_channel = group.channel_sums[key] / group.count  # (C,)
        return float(per_channel.std() / per_channel.mean())

    return pooled


def _ratio_of_means(num: str, den: str) -> PooledMetric:
    return lambda group: float(np.nanmean(group.samples[num]) / np.nanmean(group.samples[den]))


_MAG_KEYS = tuple(f"{m}_mag_{side}" for m in _MAPS for side in _SIDES)

#: Per-sample shift metrics, name -> ``fn(pair) -> (B,)``, in column order.
SHIFT_METRICS: dict[str, ShiftMetric] = {
    "s_rel_change": lambda p: _rel(p.ds, p.s_clean),
    "s_cosine": lambda p: F.cosine_similarity(p.s_clean, p.s_adv, dim=1, eps=1e-12),
    "s_spearman": lambda p: _rowwise_pearson(average_ranks(p.s_clean), average_ranks(p.s_adv)),
    "s_topk_jaccard": lambda p: _jaccard(*p.topk_masks),
    "s_max_abs_change": lambda p: p.ds.abs().amax(dim=1),
    "z_rel_change": lambda p: p.z_rel,
    "u_rel_change": lambda p: p.u_rel,
    "g_rel_change": lambda p: p.g_rel,
    "damping_ratio": lambda p: p.g_rel / p.u_rel,  # < 1: the gate damps
    "z_over_u": lambda p: p.z_rel / p.u_rel,  # < 1: the squeeze moves less than the map it summarises
    # ||dg|| / ||s * du||: 1 for a frozen gate, < 1 when the excitation's change opposes the feature change
    "absorb_ratio": lambda p: p.channel_norms["dg"].square().sum(1).sqrt() / p.gate_parts["passed"],
    "gate_passed_rel": lambda p: p.gate_parts["passed"] / p.channel_norms["g"].square().sum(1).sqrt(),
    "gate_added_rel": lambda p: p.gate_parts["added"] / p.channel_norms["g"].square().sum(1).sqrt(),
    "gate_added_cos": lambda p: p.gate_parts["cos"],  # < 0: the excitation's change opposes s * du
    "sat_low_clean": lambda p: (p.s_clean < SAT_LOW).float().mean(1),
    "sat_low_adv": lambda p: (p.s_adv < SAT_LOW).float().mean(1),
    "sat_high_clean": lambda p: (p.s_clean > SAT_HIGH).float().mean(1),
    "sat_high_adv": lambda p: (p.s_adv > SAT_HIGH).float().mean(1),
    "crossings": lambda p: ((p.s_clean > 0.5) != (p.s_adv > 0.5)).float().mean(1),
    **{key: _mag_mean(key) for key in _MAG_KEYS},
    **{key.replace("_mag", "_mag_cv"): _mag_cv(key) for key in _MAG_KEYS},
}

#: Block-row columns computed from the whole group of samples rather than averaged per sample, in
#: column order after the averaged ones; a name that is also in :data:`SHIFT_METRICS` replaces its mean.
POOLED_METRICS: dict[str, PooledMetric] = {
    "damping_ratio_of_means": _ratio_of_means("g_rel_change", "u_rel_change"),
    "z_over_u_of_means": _ratio_of_means("z_rel_change", "u_rel_change"),
    "absorb_ratio_of_means": _ratio_of_means("g_rel_change", "gate_passed_rel"),
    **{key.replace("_mag", "_mag_cv"): _channel_cv(key) for key in _MAG_KEYS},
}


def register_shift_metric(name: str, fn: ShiftMetric, *, pooled: PooledMetric | None = None,
                          replace: bool = False) -> ShiftMetric:
    """Add a per-sample metric: a column of :func:`~serobust.excitation_shift` and
    :func:`~serobust.shift_analysis` frames from the next call on.

    Args:
        name: the column name.
        fn: ``fn(pair) -> Tensor (B,)``, one value per sample from a :class:`BlockPair` (clean and
            perturbed z, s, u, g of one SE block for one batch, on the model's device). Use torch
            operations (no ``.item()``): it runs once per block and batch.
        pooled: how a block row summarises a group of samples, ``pooled(group) -> float`` with a
            :class:`SampleGroup`; default the mean over samples, NaN left out.
        replace: allow replacing a registered metric of the same name.

    Returns:
        ``fn``, unchanged.

    Raises:
        ValueError: the name is taken (and ``replace`` is False) or names a bookkeeping column.
        TypeError: ``fn`` or ``pooled`` is not callable.

    Example::

        sr.register_shift_metric("s_l1_change", lambda p: (p.s_adv - p.s_clean).abs().sum(1))
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a shift metric's name must be an identifier-like column name, got {name!r}")
    if name in _RESERVED:
        raise ValueError(f"{name!r} is a bookkeeping column of the shift frames; choose another name")
    if name in POOLED_METRICS and name not in SHIFT_METRICS:
        raise ValueError(f"{name!r} is a block-level summary column; choose another name")
    if name in SHIFT_METRICS and not replace:
        raise ValueError(f"shift metric {name!r} is already registered; pass replace=True to replace it")
    if not callable(fn) or (pooled is not None and not callable(pooled)):
        raise TypeError("fn (and pooled, if given) must be callables: fn(pair) -> Tensor (B,), "
                        "pooled(group) -> float")
    SHIFT_METRICS[name] = fn
    if pooled is not None:
        POOLED_METRICS[name] = pooled
    else:
        POOLED_METRICS.pop(name, None)
    return fn


# ------------------------------------------------------------------------------------- per-channel view
#: Per-sample, per-channel quantities, name -> ``fn(pair) -> (B, C)``; summed over samples per group.
CHANNEL_QUANTITIES: dict[str, Callable[[BlockPair], torch.Tensor]] = {
    "s_clean": lambda p: p.s_clean,
    "s_adv": lambda p: p.s_adv,
    "s_change": lambda p: p.ds,
    "s_abs_change": lambda p: p.ds.abs(),
    "s_rel_change": lambda p: p.ds.abs() / p.s_clean,
    "z_clean": lambda p: p.z_clean,
    "z_adv": lambda p: p.z_adv,
    "z_abs": lambda p: p.z_clean.abs(),
    "z_abs_change": lambda p: p.dz.abs(),
    "u_norm": lambda p: p.channel_norms["u"],
    "u_abs_change": lambda p: p.channel_norms["du"],
    "g_norm": lambda p: p.channel_norms["g"],
    "g_abs_change": lambda p: p.channel_norms["dg"],
    "gate_passed": lambda p: p.gate_parts["passed_c"],
    "gate_added": lambda p: p.gate_parts["added_c"],
    "sat_low_clean": lambda p: p.s_clean < SAT_LOW,
    "sat_low_adv": lambda p: p.s_adv < SAT_LOW,
    "sat_high_clean": lambda p: p.s_clean > SAT_HIGH,
    "sat_high_adv": lambda p: p.s_adv > SAT_HIGH,
    "crossings": lambda p: (p.s_clean > 0.5) != (p.s_adv > 0.5),
    "topk_clean": lambda p: p.topk_masks[0],
    "topk_adv": lambda p: p.topk_masks[1],
    **{key: (lambda p, key=key: p.magnitudes[key]) for key in _MAG_KEYS},
}

ChannelColumn = Callable[[dict[str, np.ndarray], np.float32], np.ndarray]


def _channel_mean(key: str) -> ChannelColumn:
    return lambda sums, count: sums[key] / count


def _channel_rel(change: str, norm: str) -> ChannelColumn:
    """Relative change per channel as a ratio of means over samples (one sample's channel can be 0)."""
    return lambda sums, count: sums[change] / sums[norm]


def _channel_ratio(num: ChannelColumn, den: ChannelColumn) -> ChannelColumn:
    return lambda sums, count: num(sums, count) / den(sums, count)


_Z_REL = _channel_rel("z_abs_change", "z_abs")
_U_REL = _channel_rel("u_abs_change", "u_norm")
_G_REL = _channel_rel("g_abs_change", "g_norm")

#: Columns of the per-channel rows, name -> ``fn(sums, count) -> (C,)`` from a group's channel sums.
CHANNEL_COLUMNS: dict[str, ChannelColumn] = {
    **{key: _channel_mean(key) for key in ("s_clean", "s_adv", "s_change", "s_abs_change", "s_rel_change",
                                           "z_clean", "z_adv", "z_abs_change")},
    "z_rel_change": _Z_REL,
    "u_rel_change": _U_REL,
    "g_rel_change": _G_REL,
    "damping_ratio": _channel_ratio(_G_REL, _U_REL),
    "z_over_u": _channel_ratio(_Z_REL, _U_REL),
    "absorb_ratio": _channel_rel("g_abs_change", "gate_passed"),  # sum ||dg_c|| / sum ||s_c du_c||
    **{key: _channel_mean(key) for key in ("sat_low_clean", "sat_low_adv", "sat_high_clean", "sat_high_adv",
                                           "crossings", "topk_clean", "topk_adv", *_MAG_KEYS)},
}
