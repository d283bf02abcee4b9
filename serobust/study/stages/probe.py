"""Probe: how the twin's excitations (z, s, u, s*u) move under attack vs random controls of the same size, and
the feature sensitivity of the twin and its baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from ...config.study_config import StudyConfig
from ...names import BASELINE
from ..passes import Sizes, attack_passes
from ..plan import attack_spec, attack_table, implementations, options
from ..tasks import Task
from .base import MemberParams, Planning, Stage, head, register_stage


@dataclass(frozen=True)
class ProbeOptions:
    """The ``[probe]`` section but ``enabled``: ``size`` images probed at each of ``eps`` with ``attack``
    (by name), against the random ``controls`` of the same size, and the block x channel table when
    ``per_channel``."""

    size: int
    eps: tuple[float, ...]
    attack: str
    controls: tuple[str, ...]
    per_channel: bool


@dataclass(frozen=True)
class ProbeParams(MemberParams):
    """``probe``: :class:`ProbeOptions`; ``attack``: the probe attack's table."""

    probe: ProbeOptions
    attack: dict[str, Any]
    baseline_name: str
    implementations: dict[str, str]


def plan(study: Planning, seed: int | None) -> dict[str, Task]:
    """One task per twin, reading the twin and the baseline, when ``[probe] enabled``."""
    cfg = study.cfg
    if not cfg.probe.enabled:
        return {}
    p = options(ProbeOptions, cfg.probe, without=("enabled",))
    return study.per_member(STAGE, seed, study.twins, others=lambda t: {"baseline": BASELINE}, probe=p,
                            attack=attack_table(cfg, cfg.probe.attack), baseline_name=BASELINE,
                            implementations=implementations(cfg.probe.attack))


def run(ctx, p: ProbeParams, inputs, folder):
    """Excitation shift of the twin under the attack vs random controls, and feature sensitivity of both."""
    from ...attacks import generate
    from ...excitation.sensitivity import feature_sensitivity, matched_layers
    from ...excitation.shift import excitation_shift, shift_analysis

    cfg = p.probe
    twin, base = inputs["model"], inputs["baseline"]
    xs, ys = head(ctx, p, cfg.size)
    spec = attack_spec(p.attack)
    memo: dict[tuple[str, float], torch.Tensor] = {}

    def adv(member: str, eps: float) -> torch.Tensor:  # each attack runs once per stage
        if (member, eps) not in memo:
            model = twin if member == "twin" else base
            memo[member, eps] = generate(model, xs, ys, spec, eps, seed=p.seed, batch_size=p.batch_size)
        return memo[member, eps]

    def twin_attack(model, x, y, eps):
        return adv("twin", eps)

    twin_attack.__name__ = spec.label
    out = {"shift": shift_analysis(twin, xs, ys, list(cfg.eps), attack=twin_attack,
                                   controls=tuple(cfg.controls), seed=p.seed, batch_size=p.batch_size)}
    top = max(cfg.eps)
    if cfg.per_channel:
        channels = excitation_shift(twin, xs, adv("twin", top), per_channel=True, batch_size=p.batch_size)
        channels.insert(0, "eps", top)
        out["channels"] = channels
    layers = matched_layers(base, twin)
    parts = []
    for eps in cfg.eps:
        for member, model in (("baseline", base), ("twin", twin)):
            frame = feature_sensitivity(model, xs, adv(member, eps), layers=layers, batch_size=p.batch_size)
            frame.insert(0, "eps", eps)
            frame.insert(0, "member", p.baseline_name if member == "baseline" else p.member)
            parts.append(frame)
    out["sensitivity"] = pd.concat(parts, ignore_index=True)
    return out


def cost(cfg: StudyConfig, sizes: Sizes) -> float:
    """The probe attack on its subset at each of its budgets, on the twin and on the baseline."""
    probe = cfg.probe
    return min(probe.size, sizes.eval) * len(probe.eps) * 2 * attack_passes(attack_table(cfg, probe.attack))


# version 2: absorb_ratio and the gate split in the shift table
STAGE = register_stage(Stage("probe", ProbeParams, plan, run, order=50, version=2, priority=5, cost=cost,
                             tables=(("shift", "shift"), ("shift_channels", "channels"),
                                     ("sensitivity", "sensitivity"))))
