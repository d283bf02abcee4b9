"""serobust's AutoAttack (torchattacks components, the published budgets) against the authors' own code.

Croce & Hein's reference implementation is on PyPI as ``pyautoattack`` (import name ``pyautoattack``;
``pip install pyautoattack``). This script trains one of the project's small models (the ``cnn`` baseline
with serobust's trainer, on the 8x8 ``digits`` by default, or ``mnist5k``), then runs on the same test
images at the same Linf eps

* ``serobust``: ``serobust.evaluate(model, (x, y), attack("autoattack"), eps)`` -- the standard version
  (APGD-CE, APGD-T on 9 targets, FAB-T on 9 targets, Square 5000 queries, 100 steps each);
* ``reference``: ``pyautoattack.AutoAttack(model, norm="Linf", eps=eps, version="standard")``'s
  ``run_standard_evaluation``, scored with the same model,

and prints both robust accuracies, the difference in images, and the per-image agreement (images robust
to one run only). Both are randomized (random starts, Square's random search), so a few borderline images
may differ; the implementations agree if the robust accuracies are within a few images.

Recorded (CPU, 2 cores shared with other engineers' jobs, torch 1 thread; pyautoattack 0.2.0, torchattacks
3.5.1; cnn trained 10 epochs on the 8x8 digits; ``--n 250 --eps 0.1 --seed 0``)::

    250 images, eps 0.1, clean accuracy 98.8%
    robust accuracy  serobust 52.8% (132 images, 423.9 s)   reference 52.4% (131 images, 269.3 s)
    difference +1 images; robust to serobust only: 1, to the reference only: 0; reference max |x_adv - x| = 0.1000

The same robust accuracy within one image of 250; the one image only the reference breaks is the only
per-image disagreement.

The slow test ``tests/test_autoattack_reference.py`` runs the same comparison on fewer digits.

Usage::

    python benchmarks/autoattack_reference.py --data digits --n 400 --eps 0.1
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch


def trained_model(data_name: str, *, epochs: int, seed: int) -> tuple[torch.nn.Module, Any]:
    """The ``cnn`` baseline trained with serobust's trainer on ``data_name``; returns (model, dataset)."""
    import serobust as sr
    from serobust.data import load_dataset

    data = load_dataset(data_name)
    model = sr.build_model("cnn", data.num_classes, data.image_size[0], seed=seed)
    model, _ = sr.train(model, data, sr.TrainConfig(epochs=epochs, seed=seed), device="cpu", progress=False)
    return model.eval(), data


def compare(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, seed: int = 0,
            batch_size: int = 500) -> dict[str, Any]:
    """Robust accuracy of serobust's and the reference AutoAttack on the same images; per-image agreement."""
    from pyautoattack import AutoAttack

    import serobust as sr

    t0 = time.perf_counter()
    per = sr.evaluate(model, (x, y), sr.attack("autoattack"), [eps], per_example=True, seed=seed,
                      batch_size=batch_size, device="cpu", progress=False).per_example
    label = sr.attack("autoattack").label
    per = per[(per["attack"] == label) & (per["eps"] == eps)].sort_values("index")
    ours = torch.tensor(per["robust_correct"].to_numpy(bool).copy())
    t1 = time.perf_counter()
    torch.manual_seed(seed)
    ref = AutoAttack(model, norm="Linf", eps=eps, version="standard", seed=seed, device="cpu")
    ref.verbose = False
    x_adv, _ = ref.run_standard_evaluation(x, y, batch_size=batch_size)  # (x_adv, y_adv) in 0.2.0
    with torch.no_grad():
        theirs = model(x_adv).argmax(1) == y
        clean = model(x).argmax(1) == y
    linf = float((x_adv - x).abs().max())
    t2 = time.perf_counter()
    return {"n": len(y), "eps": eps, "clean": int(clean.sum()), "serobust": int(ours.sum()),
            "reference": int(theirs.sum()), "only_serobust_robust": int((ours & ~theirs).sum()),
            "only_reference_robust": int((theirs & ~ours).sum()), "reference_linf": linf,
            "serobust_s": round(t1 - t0, 1), "reference_s": round(t2 - t1, 1)}


def report(r: dict[str, Any]) -> str:
    n = r["n"]
    return "\n".join([
        f"{n} images, eps {r['eps']:g}, clean accuracy {r['clean'] / n:.1%}",
        f"robust accuracy  serobust {r['serobust'] / n:.1%} ({r['serobust']} images, {r['serobust_s']} s)   "
        f"reference {r['reference'] / n:.1%} ({r['reference']} images, {r['reference_s']} s)",
        f"difference {r['serobust'] - r['reference']:+d} images; robust to serobust only: "
        f"{r['only_serobust_robust']}, to the reference only: {r['only_reference_robust']}; "
        f"reference max |x_adv - x| = {r['reference_linf']:.4f}",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="digits", choices=["digits", "mnist5k"])
    parser.add_argument("--n", type=int, default=400, help="test images attacked")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, data = trained_model(args.data, epochs=args.epochs, seed=args.seed)
    x, y = data.test.subset(args.n, seed=0).tensors()
    print(report(compare(model, x, y, args.eps, seed=args.seed)))


if __name__ == "__main__":
    main()
