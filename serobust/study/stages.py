"""The stages of a study: each a function of its params and its deps' outputs, registered by name.

A stage function is called as ``fn(ctx, params, inputs, folder)`` by :func:`serobust.study.context.run_task`:
``params`` are the task's explicit inputs (see :mod:`serobust.study.plan` for what each stage gets),
``inputs`` the outputs of its deps by role (a trained model for a train dep, the stored frames otherwise),
``folder`` the task's own folder (training writes its resumable checkpoint there). It returns a dict of
parts (pandas frames, numpy arrays, JSON-able values) that the store writes. It must not read anything
else: whatever changes its result has to be in ``params`` or in a dep, so that the task key covers it.

Bump a stage's ``version`` when its computation changes, so cached results of the old code are not reused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = ["Stage", "STAGES", "stage"]

StageFn = Callable[[Any, Mapping[str, Any], Mapping[str, Any], Path], dict[str, Any]]


@dataclass(frozen=True)
class Stage:
    """A registered stage: its function, its version (part of every task key) and whether it makes a model."""

    name: str
    fn: StageFn
    version: int = 1
    makes_model: bool = False


STAGES: dict[str, Stage] = {}


def stage(name: str, *, version: int = 1, makes_model: bool = False) -> Callable[[StageFn], StageFn]:
    """Register a stage function under ``name``."""

    def deco(fn: StageFn) -> StageFn:
        if name in STAGES:
            raise ValueError(f"stage {name!r} is already registered")
        STAGES[name] = Stage(name, fn, version, makes_model)
        return fn

    return deco


def _spec(table: Mapping[str, Any]):
    from .plan import attack_spec

    return attack_spec(dict(table))


def _head(ctx, p: Mapping[str, Any], n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = ctx.eval_set(p["data"])
    return x[:n], y[:n]


@stage("train", makes_model=True)
def train_member(ctx, p, inputs, folder):
    """One member trained for one seed; ``folder/last.pt`` is written every epoch, so a killed run resumes."""
    from ..trainer import TrainConfig, train

    model = ctx.build_model(p["model"], p["data"], seed=p["train"]["seed"])
    _, history = train(model, ctx.dataset(p["data"]), TrainConfig(**p["train"]), checkpoint_dir=folder,
                       device=ctx.device, progress=False)
    return {"history": history}


@stage("load", makes_model=True)
def load_member(ctx, p, inputs, folder):
    """A given member (published, or the user's checkpoint): loaded and checked, never trained.

    Checks that it fits the data (class count, input size; an SE member must have SE modules) and records
    what the report shows beside it: parameters, SE blocks, the preprocessing that came with the weights."""
    from ..hub import MemberError, parse_member, preprocess
    from ..se_adapters import NoSEModuleError, find_se_modules

    spec = parse_member(p["source"], f"pair {p['pair']} {p['member']}")
    bundle = ctx.dataset(p["data"])
    prep = preprocess(spec)
    if prep.size and tuple(bundle.image_size) != (prep.size, prep.size):
        raise MemberError(f"{spec.source} expects {prep.size}x{prep.size} images but data.name = {bundle.name!r} has "
                          f"{bundle.image_size[0]}x{bundle.image_size[1]}: use data.name = 'imagenet' (decoded at the "
                          "model's size) or set input_size on the member")
    model = ctx.load_member(p)
    try:
        se_blocks = len(find_se_modules(model))
    except NoSEModuleError:
        se_blocks = 0
    info = {"pair": p["pair"], "member": p["member"], "source": spec.source, "weights": spec.weights or "pretrained",
            "params": sum(q.numel() for q in model.parameters()), "se_blocks": se_blocks,
            "input_size": prep.size or bundle.image_size[0], "resize": prep.resize, "interpolation": prep.interpolation,
            "mean": list(prep.mean), "std": list(prep.std)}
    return {"info": pd.DataFrame([info])}


@stage("evaluate")
def evaluate_member(ctx, p, inputs, folder):
    """White-box attacks at every eps (per example too), then the black-box checks on a subset."""
    from ..attacks import evaluate

    a = p["attacks"]
    model = inputs["model"]
    x, y = ctx.eval_set(p["data"])
    summary, per_example = evaluate(model, (x, y), [_spec(t) for t in a["white_box"]], a["eps"],
                                    batch_size=a["batch_size"], device=ctx.device, per_example=True,
                                    seed=p["seed"], progress=False)
    if a["black_box"]:
        xb, yb = _head(ctx, p, a["black_box_size"])
        blackbox = evaluate(model, (xb, yb), [_spec(t) for t in a["black_box"]], a["black_box_eps"],
                            batch_size=a["batch_size"], device=ctx.device, seed=p["seed"], progress=False)
    else:  # black_box = []: no gradient-free check asked for (the report says so)
        from ..attacks import SUMMARY_COLUMNS

        blackbox = pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    return {"summary": summary, "per_example": per_example, "blackbox": blackbox}


@stage("diagnostics")
def masking_checks(ctx, p, inputs, folder):
    """The gradient-masking checks of one member, with transfer from the pair's other member."""
    from ..diagnostics import masking_diagnostics

    d = p["diagnostics"]
    x, y = _head(ctx, p, d["size"])
    checks = masking_diagnostics(
        inputs["model"], (x, y), d["eps"], attack_steps=tuple(d["steps"]), restarts=tuple(d["restarts"]),
        large_eps=d["large_eps"], transfer_from=inputs["other"], square_queries=d["square_queries"],
        extra_attacks=[_spec(t) for t in d["extra_attacks"]], l2_eps=d["l2_eps"] or None,
        batch_size=p["batch_size"], device=ctx.device, seed=p["seed"])
    return {"checks": checks}


@stage("transfer")
def transfer(ctx, p, inputs, folder):
    """The main attack crafted on the source member, scored on the target member."""
    from ..attacks import evaluate_transfer

    x, y = _head(ctx, p, p["size"])
    frame = evaluate_transfer(inputs["source"], inputs["target"], (x, y), _spec(p["attack"]), p["eps"],
                              batch_size=p["batch_size"], device=ctx.device, seed=p["seed"])
    return {"transfer": frame}


@stage("probe", version=2)  # 2: absorb_ratio and the gate split in the shift table
def probe(ctx, p, inputs, folder):
    """Excitation shift of the twin under the attack vs random controls, and feature sensitivity of both."""
    from .. import excitation_shift, feature_sensitivity, generate, matched_layers, shift_analysis

    cfg = p["probe"]
    twin, base = inputs["model"], inputs["baseline"]
    xs, ys = _head(ctx, p, cfg["size"])
    spec = _spec(p["attack"])
    memo: dict[tuple[str, float], torch.Tensor] = {}

    def adv(member: str, eps: float) -> torch.Tensor:  # each attack runs once per stage
        if (member, eps) not in memo:
            model = twin if member == "twin" else base
            memo[member, eps] = generate(model, xs, ys, spec, eps, seed=p["seed"], batch_size=p["batch_size"])
        return memo[member, eps]

    def twin_attack(model, x, y, eps):
        return adv("twin", eps)

    twin_attack.__name__ = spec.label
    out = {"shift": shift_analysis(twin, xs, ys, list(cfg["eps"]), attack=twin_attack,
                                   controls=tuple(cfg["controls"]), seed=p["seed"], batch_size=p["batch_size"])}
    top = max(cfg["eps"])
    if cfg["per_channel"]:
        channels = excitation_shift(twin, xs, adv("twin", top), per_channel=True, batch_size=p["batch_size"])
        channels.insert(0, "eps", top)
        out["channels"] = channels
    layers = matched_layers(base, twin)
    parts = []
    for eps in cfg["eps"]:
        for member, model in (("baseline", base), ("twin", twin)):
            frame = feature_sensitivity(model, xs, adv(member, eps), layers=layers, batch_size=p["batch_size"])
            frame.insert(0, "eps", eps)
            frame.insert(0, "member", p["baseline_name"] if member == "baseline" else p["member"])
            parts.append(frame)
    out["sensitivity"] = pd.concat(parts, ignore_index=True)
    return out


@stage("mechanism")
def mechanism(ctx, p, inputs, folder):
    """Interventions on the twin's gates, adaptive attacks, and class-profile shift, at one budget."""
    from .. import adaptive_attacks, generate, interventions, profile_shift

    m = p["mechanism"]
    model = inputs["model"]
    xs, ys = _head(ctx, p, m["size"])
    # batches of at most attacks.batch_size (memory at ImageNet resolution); min() keeps the 256-image batches,
    # and so the results, of every study whose batch_size is >= 256
    x_adv = generate(model, xs, ys, _spec(p["attack"]), m["eps"], seed=p["seed"], batch_size=min(256, p["batch_size"]))
    return {
        "interventions": interventions(model, xs, ys, x_adv, batch_size=p["batch_size"]),
        "adaptive": adaptive_attacks(model, xs, ys, [m["eps"]], steps=m["steps"], weight=m["weight"],
                                     seed=p["seed"], batch_size=p["batch_size"]),
        "profile_shift": profile_shift(model, xs, ys, x_adv, batch_size=p["batch_size"]),
    }


@stage("autoattack", version=2)  # 2: PGD on the same images, and the per-image check against it
def autoattack(ctx, p, inputs, folder):
    """AutoAttack with its published budgets on a subset; per example, which component fooled it; and the
    masking check that AutoAttack breaks every image the curve attack (PGD) breaks on the same images."""
    from ..attacks import evaluate
    from ..diagnostics import per_image_not_weaker

    a = p["autoattack"]
    x, y = _head(ctx, p, a["size"])
    spec, pgd = _spec(p["attack"]), _spec(p["pgd"])
    summary, per_example = evaluate(inputs["model"], (x, y), [spec, pgd], [0.0, *a["eps"]],
                                    batch_size=p["batch_size"], device=ctx.device, per_example=True,
                                    seed=p["seed"], progress=False, input_gradients=False)
    from ..attacks.autoattack import components

    checks = per_image_not_weaker(per_example, strong=spec.label, reference=pgd.label,
                                  check="autoattack_not_weaker_than_pgd")
    names = components(spec.config, ctx.dataset(p["data"]).num_classes)
    summary = summary[summary["attack"] == spec.label]  # the AutoAttack rows only: PGD's curve is elsewhere
    per_example = per_example[per_example["attack"] == spec.label]
    return {"summary": summary, "per_example": per_example, "components": _components(per_example, spec.label, names),
            "checks": checks}


def _components(per_example: pd.DataFrame, label: str, names: list[str]) -> pd.DataFrame:
    """Robust accuracy after each AutoAttack component in turn (cumulative), per eps, as AutoAttack reports it."""
    rows = []
    for eps, sub in per_example[(per_example["attack"] == label) & (per_example["eps"] > 0)].groupby("eps"):
        clean = sub["clean_correct"].to_numpy(bool)
        fooled_by = sub["component"].to_numpy()
        for k, name in enumerate(names):
            robust = clean & ((fooled_by < 0) | (fooled_by > k))
            rows.append({"eps": eps, "step": k + 1, "component": name, "robust_acc": float(robust.mean()),
                         "n": len(sub)})
    return pd.DataFrame(rows)


@stage("detect", version=2)  # 2: the within-twin control, adaptive weights, no random start
def detect(ctx, p, inputs, folder):
    """The excitation detector on the twin vs pooled-feature controls on the twin and the baseline, adaptive
    attack too."""
    from ..detect import detection_analysis

    d = p["detect"]
    fit = ctx.dataset(p["data"]).train.subset(d["fit_size"], seed=0)
    x_fit, y_fit = fit.tensors()
    x, y = _head(ctx, p, d["size"])
    frame = detection_analysis(inputs["model"], inputs["baseline"], x_fit, y_fit, x, y, eps=d["eps"],
                               adaptive_steps=d["adaptive_steps"], adaptive_weight=list(d["adaptive_weights"]),
                               seed=p["seed"], batch_size=p["batch_size"])
    return {"detection": frame}


def _differing_eps(evals: Mapping[str, Mapping[str, Any]], label: str) -> float:
    """The budget > 0 where the members' robust accuracies under ``label`` differ most (ties: the smallest);
    with no difference anywhere, the budget where the first member is nearest 50%."""
    rows = pd.concat([e["summary"].assign(member=m) for m, e in evals.items()])
    rows = rows[(rows["attack"] == label) & (rows["eps"] > 0)]
    if rows.empty:
        raise ValueError(f"no {label!r} rows to choose the example budget from")
    wide = rows.pivot_table(index="eps", columns="member", values="robust_acc")
    spread = (wide.max(axis=1) - wide.min(axis=1)).round(12)
    if spread.max() > 0:
        return float(spread.idxmax())
    return float((wide.iloc[:, 0] - 0.5).abs().idxmin())


@stage("examples", version=2)
def examples(ctx, p, inputs, folder):
    """A few clean images and each member's adversarial versions with predictions, for the report's grid.

    With ``eps = "auto"`` the budget is the one where the members' robust accuracies (first seed, the
    curve attack) differ most, so the grid shows what the study found, not a budget where all fail."""
    from ..attacks import generate

    xs, ys = _head(ctx, p, p["n"])
    evals = {m: inputs[f"eval:{m}"] for m in p["members"]}
    eps = _differing_eps(evals, p["curve"]) if p["eps"] == "auto" else p["eps"]
    spec = _spec(p["attack"])
    out: dict[str, Any] = {"x": xs.numpy(), "y": ys.numpy(), "meta": {"eps": eps, "attack": spec.label}}
    for member in p["members"]:
        model = inputs[member]
        x_adv = generate(model, xs, ys, spec, eps, seed=0)
        with torch.no_grad():
            out[f"{member}.pred_clean"] = model(xs.to(ctx.device)).argmax(1).cpu().numpy()
            out[f"{member}.pred_adv"] = model(x_adv.to(ctx.device)).argmax(1).cpu().numpy()
        out[f"{member}.x_adv"] = x_adv.cpu().numpy().astype(np.float32)
    return out
