"""The example grid: clean images, each member's adversarial image and its perturbation, amplified.

At small budgets an adversarial image looks like its clean image; the perturbation ``x_adv - x`` is shown
beside it scaled by ``amplification(eps)`` around mid-grey, so +eps is white and -eps black, and the title
says by how much it was amplified.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from ..labels import attack_name
from ._common import FigureStyle, save, subplots

__all__ = ["amplification", "examples_grid"]


def amplification(eps: float) -> float:
    """The factor that maps a perturbation of +-eps onto the full grey range (0.5 / eps), rounded for text."""
    if eps <= 0:
        return 1.0
    k = 0.5 / float(eps)
    return float(round(k)) if k >= 10 else round(k, 1)


def _image(img: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(C, H, W) in [0, 1] -> what imshow wants, with a grey colour map for one channel."""
    img = np.clip(np.transpose(np.asarray(img, dtype=float), (1, 2, 0)), 0, 1)
    return (img[..., 0], "gray") if img.shape[-1] == 1 else (img, None)


def examples_grid(examples: dict[str, Any], path: Path, *, style: FigureStyle, attack: str | None = None,
                  classes: list[str] | None = None) -> Path:
    """Clean images (top row), then per member its adversarial images and their amplified perturbations.

    Args:
        examples: ``{"x", "y", "eps", "attack", "models": {member: {"x_adv", "pred_clean", "pred_adv"}}}``
            with images (N, C, H, W) in [0, 1].
        attack: the attack's label for the title (default ``examples["attack"]``).
        classes: class names for the titles (default: the class index).

    Titles are red where the prediction is wrong; row labels are in the member's colour.
    """
    x, y = np.asarray(examples["x"]), np.asarray(examples["y"])
    eps = float(examples["eps"])
    members = [m for m in style.palette if m in examples["models"]] + \
        [m for m in examples["models"] if m not in style.palette]
    k = amplification(eps)
    n = len(y)
    rows = 1 + 2 * len(members)
    fig, axes = subplots(rows, n, figsize=(1.25 * n + 1.2, 1.45 * rows))
    name = (lambda c: classes[c]) if classes else str

    def show(ax: Axes, img: np.ndarray, title: str, *, ok: bool = True, diff: bool = False) -> None:
        pic, cmap = _image(np.clip(0.5 + k * img, 0, 1) if diff else img)
        ax.imshow(pic, cmap=cmap, vmin=0, vmax=1)
        ax.set_title(title, fontsize=7, color="black" if ok else "red")
        ax.set_xticks([])
        ax.set_yticks([])

    def row_label(ax: Axes, text: str, color: str = "black") -> None:
        ax.set_ylabel(text, fontsize=8, color=color, rotation=0, ha="right", va="center", labelpad=6)

    for j in range(n):
        show(axes[0][j], x[j], f"label {name(int(y[j]))}")
    row_label(axes[0][0], "clean")
    for i, m in enumerate(members):
        e = examples["models"][m]
        adv, delta = axes[1 + 2 * i], axes[2 + 2 * i]
        for j in range(n):
            ok = int(e["pred_adv"][j]) == int(y[j])
            show(adv[j], e["x_adv"][j], f"{name(int(e['pred_clean'][j]))} \u2192 {name(int(e['pred_adv'][j]))}",
                 ok=ok)
            show(delta[j], np.asarray(e["x_adv"][j], dtype=float) - x[j], "", diff=True)
        row_label(adv[0], f"{m}\nadversarial", style.color(m))
        row_label(delta[0], f"{m}\nperturbation\n\u00d7{k:g}", style.color(m))
    title = (f"{attack_name(attack or examples.get('attack', ''))} at eps = {style.eps_label(eps)}: clean images, each model's "
             f"adversarial image (titles: clean \u2192 adversarial prediction, red = wrong) and its perturbation "
             f"amplified \u00d7{k:g} (grey = 0)")
    fig.suptitle(textwrap.fill(title, width=int(14 * fig.get_figwidth())), fontsize=8.5)
    return save(fig, path)
