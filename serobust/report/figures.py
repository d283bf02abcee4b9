"""Seaborn figures of a study. Each function takes tidy frames and writes one PNG, returning its path.

A figure whose table is absent (its stage was switched off) is skipped by the caller, not here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..io import atomic_path  # noqa: E402

__all__ = ["robust_accuracy", "paired_differences", "excitation_shift", "damping", "channel_heatmap",
           "interventions", "examples_grid", "training_curves", "sensitivity"]

_DPI = 110


def _save(fig: plt.Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=_DPI, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def robust_accuracy(robust: pd.DataFrame, path: Path, *, confidence: float = 0.95) -> Path:
    """Robust accuracy vs eps per attack, one line per model with a CI band across seeds."""
    attacks = list(dict.fromkeys(robust["attack"]))
    fig, axes = plt.subplots(1, len(attacks), figsize=(4.2 * len(attacks), 3.6), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], attacks):
        sub = robust[robust["attack"] == name]
        sns.lineplot(data=sub, x="eps", y="robust_acc", hue="model", style="model", markers=True, dashes=False,
                     errorbar=("ci", int(confidence * 100)), n_boot=1000, seed=0, ax=ax)
        ax.set_title(name)
        ax.set_xlabel("eps (Linf, [0, 1] pixels)")
        ax.set_ylabel("robust accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Robust accuracy vs budget (mean over seeds, {int(confidence * 100)}% CI band)")
    return _save(fig, path)


def paired_differences(robust: pd.DataFrame, path: Path, *, attack: str) -> Path:
    """Per-seed paired difference (SE twin minus baseline) of robust accuracy for one attack."""
    sub = robust[robust["attack"] == attack]
    wide = sub.pivot_table(index=["seed", "eps"], columns="model", values="robust_acc").reset_index()
    twins = [c for c in wide.columns if isinstance(c, str) and c.startswith("se_")]
    long = pd.concat([pd.DataFrame({"seed": wide["seed"], "eps": wide["eps"], "twin": t,
                                    "diff": wide[t] - wide["baseline"]}) for t in twins], ignore_index=True)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    long["eps_label"] = long["eps"].map(lambda e: f"{e:.3g}")
    many = len(twins) > 1
    sns.stripplot(data=long, x="eps_label", y="diff", hue="twin", dodge=many, alpha=0.7, ax=ax, legend=False)
    sns.pointplot(data=long, x="eps_label", y="diff", hue="twin", dodge=0.4 if many else False, errorbar=("ci", 95), seed=0,
                  linestyles="none", markers="D", ax=ax)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("eps")
    ax.set_ylabel("robust acc: SE twin - baseline")
    ax.set_title(f"Paired differences per seed ({attack}); diamonds: mean with 95% CI")
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def excitation_shift(shift: pd.DataFrame, path: Path) -> Path:
    """Relative change of s (and z) per block under adversarial vs random perturbations of the same size."""
    cols = [c for c in ("s_rel_change", "z_rel_change", "u_rel_change") if c in shift.columns]
    long = shift.melt(id_vars=["model", "kind", "eps", "block"], value_vars=cols, var_name="quantity",
                      value_name="relative change")
    g = sns.catplot(data=long, x="block", y="relative change", hue="kind", col="quantity", row="eps",
                    kind="bar", errorbar=("ci", 95), n_boot=500, seed=0, height=2.6, aspect=1.5, sharey=False)
    g.set_xticklabels(rotation=45, ha="right")
    g.figure.suptitle("Relative change per SE block: adversarial vs random noise of the same size", y=1.02)
    return _save(g.figure, path)


def damping(shift: pd.DataFrame, path: Path) -> Path:
    """Damping ratio (rel. change of s*u over rel. change of u) and z/u ratio per block; 1 = neutral."""
    long = shift.melt(id_vars=["model", "kind", "eps", "block"], value_vars=["damping_ratio", "z_over_u"],
                      var_name="ratio", value_name="value")
    g = sns.catplot(data=long, x="block", y="value", hue="kind", col="ratio", row="model", kind="point",
                    dodge=0.3, errorbar=("ci", 95), n_boot=500, seed=0, height=3, aspect=1.6, sharey=False)
    for ax in g.axes.flat:
        ax.axhline(1.0, color="black", lw=0.8, ls="--")
        ax.tick_params(axis="x", rotation=45)
    g.figure.suptitle("Below 1: the gate damps the change (damping) / the global state moves less than u (z/u)",
                      y=1.02)
    return _save(g.figure, path)


def channel_heatmap(channels: pd.DataFrame, path: Path, *, value: str) -> Path:
    """Block x channel heatmap of the mean excitation change (first twin, averaged over seeds)."""
    model = sorted(channels["model"].unique())[0]
    sub = channels[channels["model"] == model]
    grid = sub.pivot_table(index="block", columns="channel", values=value, aggfunc="mean", sort=False)
    fig, ax = plt.subplots(figsize=(min(16, 2 + 0.12 * grid.shape[1]), 1 + 0.45 * grid.shape[0]))
    sns.heatmap(grid, cmap="viridis", ax=ax, cbar_kws={"label": value})
    ax.set_title(f"{model}: {value} per channel under attack (eps={sub['eps'].iloc[0]:.3g}, mean over seeds)")
    ax.set_xlabel("channel")
    ax.set_ylabel("SE block")
    return _save(fig, path)


def interventions(frame: pd.DataFrame, path: Path) -> Path:
    """Accuracy under each intervention on the excitations (all blocks at once)."""
    sub = frame[frame["block"].isna() | (frame["block"].astype(str).isin(["all", "", "nan"]))] \
        if "block" in frame.columns else frame
    if sub.empty:
        sub = frame
    fig, ax = plt.subplots(figsize=(7, 3.6))
    sns.barplot(data=sub, x="condition", y="accuracy", hue="model", errorbar=("ci", 95), seed=0, ax=ax)
    ax.set_ylim(0, 1.02)
    ax.tick_params(axis="x", rotation=20)
    ax.set_title("Accuracy with excitations replaced (mean over seeds, 95% CI)")
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def sensitivity(frame: pd.DataFrame, path: Path, *, value: str) -> Path:
    """Relative change of block outputs through depth, baseline vs SE twin (matched layers)."""
    g = sns.relplot(data=frame, x="layer", y=value, hue="member", col="eps", kind="line", marker="o",
                    errorbar=("ci", 95), seed=0, height=3, aspect=1.3, facet_kws={"sharey": False})
    for ax in g.axes.flat:
        ax.tick_params(axis="x", rotation=45)
    g.figure.suptitle("Feature sensitivity through depth: relative change of block outputs under attack", y=1.03)
    return _save(g.figure, path)


def training_curves(history: pd.DataFrame, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    sns.lineplot(data=history, x="epoch", y="train_loss", hue="model", errorbar=("ci", 95), seed=0, ax=axes[0])
    sns.lineplot(data=history, x="epoch", y="test_acc", hue="model", errorbar=("ci", 95), seed=0, ax=axes[1])
    axes[0].set_title("training loss")
    axes[1].set_title("clean test accuracy")
    for ax in axes:
        ax.grid(alpha=0.3)
    return _save(fig, path)


def examples_grid(examples: dict[str, Any], path: Path, *, classes: list[str] | None = None) -> Path:
    """Clean images and each model's adversarial versions, titled with predictions (red when wrong)."""
    x, y = examples["x"], examples["y"]
    models = list(examples["models"])
    n = len(y)
    fig, axes = plt.subplots(1 + len(models), n, figsize=(1.3 * n, 1.45 * (1 + len(models))), squeeze=False)

    def show(ax, img, title, ok):
        img = np.clip(np.transpose(img, (1, 2, 0)), 0, 1)
        ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                  vmin=0, vmax=1)
        ax.set_title(title, fontsize=7, color="black" if ok else "red")
        ax.axis("off")

    name = (lambda c: classes[c]) if classes else str
    first = examples["models"][models[0]]
    for j in range(n):
        show(axes[0][j], x[j], f"label {name(int(y[j]))}\n{models[0]}: {name(int(first['pred_clean'][j]))}",
             first["pred_clean"][j] == y[j])
    for i, m in enumerate(models, start=1):
        e = examples["models"][m]
        for j in range(n):
            show(axes[i][j], e["x_adv"][j], f"{m}: {name(int(e['pred_adv'][j]))}", e["pred_adv"][j] == y[j])
    fig.suptitle(f"Clean (top) and adversarial examples at eps={examples['eps']:.3g} (red: misclassified)", fontsize=9)
    return _save(fig, path)
