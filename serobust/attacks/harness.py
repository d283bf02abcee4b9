"""The attack harness: adversarial examples (:func:`generate`) and robust accuracy (:func:`evaluate`).

Both take any ``nn.Module`` classifier that maps [0, 1] images to logits, and any registered attack by
name or :class:`~serobust.attacks.base.AttackSpec`. Both (and :func:`~.transfer.evaluate_transfer`) run
inside one :class:`~.session.AttackSession` (device, wrappers, batches and input checks, model state,
seeding, ledger, progress, notes); :func:`evaluate` returns one :class:`~.evaluation.Evaluation`.

Promises every call keeps (the harness owns the model's state, as torchattacks' ``Attack.__call__``
does): the model runs in eval mode with ``requires_grad=False`` parameters during the attack
(:func:`serobust.runtime.attack_state`), and every mode and flag is restored afterwards, also on
exceptions. Each (attack, eps, batch) runs from ``torch.manual_seed`` of a seed derived from
``(seed, attack label, eps, batch index)``, so a result does not depend on which other attacks ran in
the same call, and :func:`generate` reproduces the examples :func:`evaluate` scored (same seed and
batch size). Every batch's input is checked (NaN, [0, 1], label range) and every run's result
(``||x_adv - x|| <= eps`` in the attack's norm, ``x_adv`` in [0, 1], no NaN, robust <= clean); a bad
input raises :class:`~serobust.errors.InputError` naming the batch, a broken result RuntimeError.

Robust correctness of an example is ``clean correct AND adversarial prediction == label`` (AutoAttack's
convention): an attack that happens to fix a misclassified input does not count as robust.

Precision: with ``autocast=True`` (CUDA) the attacks *craft* under bf16 autocast, but every prediction
that is counted (the clean pass, each adversarial prediction, a minimum-norm attack's "fooled" test, the
transfer target's prediction) comes from a float32 forward with autocast and TF32 off
(:meth:`~.session.Logits.score`, :func:`serobust.runtime.fp32_scoring`): the accuracies are fp32 numbers.

On CUDA the per-batch loop never waits on the host: the RNG is forked once per call (each run starts
from ``manual_seed``, a host-side operation; the CPU generator, cheap to copy, is saved and restored
around each run as ``fork_rng`` did), checks and per-example results stay on the device, and one transfer
per dtype brings them back at the end. Per batch and (attack, eps) the harness adds to the attack itself
one forward for the adversarial prediction and four small reductions (:func:`~.checks.perturbation`);
per batch, the clean forward (and backward, for ``grad_norm``) and the input guards. The worst case over
attacks is computed on the host from the per-example results.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import InputError
from ..names import WORST_CASE
from .base import AttackSpec, as_spec, as_specs
from .batches import check_batch_size, require_float_images
from .budgets import check_l2_radius, parse_eps_for, resolve_eps
from .checks import perturbation, sanity
from .evaluation import Evaluation
from .runs import Job
from .session import AttackSession, join_notes, mean

__all__ = ["generate", "evaluate", "Evaluation", "SUMMARY_COLUMNS", "PER_EXAMPLE_COLUMNS"]

logger = logging.getLogger(__name__)

SUMMARY_COLUMNS = [
    "attack", "eps", "norm", "budget", "clean_acc", "robust_acc", "success_rate",
    "linf_mean", "linf_max", "l2_mean", "grad_norm", "zero_grad_frac", "n", "notes",
]
PER_EXAMPLE_COLUMNS = [
    "index", "attack", "eps", "label", "clean_pred", "adv_pred", "clean_correct", "robust_correct", "linf", "l2",
    "component",
]
_STATS = ("linf", "l2", "lo", "hi")


# ---------------------------------------------------------------------------------------------------------
# generate
# ---------------------------------------------------------------------------------------------------------


def generate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: str | AttackSpec,
    eps: float | str,
    *,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    autocast: bool = False,
) -> torch.Tensor:
    """Adversarial examples for one attack at one budget.

    The same seed and batch size give exactly the examples :func:`evaluate` scores for this
    (attack, eps), so probes and metrics can look at what was counted.

    Args:
        model: classifier taking [0, 1] images, returning logits; must already be on ``device``.
        x: clean images in [0, 1], shape (N, C, H, W), any float dtype, any device.
        y: labels, shape (N,).
        attack: a name in :data:`~serobust.attacks.ATTACKS` or an :class:`AttackSpec`.
        eps: budget in [0, 1] pixel units (``"8/255"`` accepted); an L2 radius for L2 attacks. A
            minimum-norm attack (``cw``) keeps its example where it fools within eps, else the clean input.
        seed: base seed; each batch runs from a seed derived from (seed, attack, eps, batch index).
        batch_size: examples per attack call.
        device: where the attack runs; None means the model's device.
        autocast: on CUDA, the attack crafts under bf16 autocast + channels_last (logits cast to float32,
            the attack step in float32); ignored on CPU.

    Returns:
        x_adv, float32, on x's device, same shape as x. eps=0 returns ``x.clone()`` (as float32).

    Raises:
        InputError: images not float in [0, 1] (NaN included) or labels out of range, naming the batch
            (also a TypeError for integer images).
        ValueError / TypeError: bad eps, attack, options or shapes.
        RuntimeError: a sanity check of the result failed (norm bound, [0, 1], NaN): a bug.
    """
    spec = as_spec(attack)
    batch_size = check_batch_size(batch_size)
    eps_f = parse_eps_for(spec, eps, name=f"eps for {spec.label}")
    y = _image_pair(x, y)
    check_l2_radius([spec], {spec.label: [eps_f]}, int(np.prod(x.shape[1:])))
    if eps_f == 0 or len(x) == 0:
        return x.detach().clone().float()
    session = AttackSession({"model": model}, (x, y), batch_size=batch_size, device=device, autocast=autocast,
                            order_matters=False)
    wm = session.wrapped["model"]
    job = Job(spec, [eps_f], seed=seed)
    outs: list[torch.Tensor] = []
    num_classes = 0
    with session.running() as seeder:
        for b, xb, yb in session.stream:
            if b == 0:  # one clean forward, for the output checks and the number of classes
                with torch.no_grad():
                    logits = wm.score(xb)
                num_classes = logits.shape[1]
                session.record("model", xb, logits)
                job.build(wm, num_classes)
            session.stream.check_labels(num_classes)
            for _, x_adv, _ in job.run(seeder, wm, xb, yb, b, None):
                for k, v in perturbation(x_adv, xb).items():
                    session.ledger.add(k, v)
                outs.append(x_adv)
    sanity(spec.label, spec.norm, eps_f, session.finish(stacklevel=2))
    return torch.cat(outs).to(x.device)


def _image_pair(x: Any, y: Any) -> torch.Tensor:
    """Check :func:`generate`'s (x, y) before anything runs; ``y`` as a tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor of images (N, C, H, W), got {type(x).__name__}")
    require_float_images(x, name="x")
    y = torch.as_tensor(y)
    if len(x) != len(y):
        raise InputError(f"x and y differ in length: {len(x)} vs {len(y)}")
    if x.ndim != 4:
        raise InputError(f"images must have shape (N, C, H, W), got {tuple(x.shape)}")
    return y


# ---------------------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------------------


def evaluate(
    model: nn.Module,
    data: Any,
    attacks: str | AttackSpec | Iterable[str | AttackSpec],
    eps: float | str | Iterable[float | str],
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    per_example: bool = False,
    return_examples: bool = False,
    seed: int = 0,
    autocast: bool = False,
    progress: bool | None = None,
    input_gradients: bool = True,
) -> Evaluation:
    """Robust accuracy of ``model`` under each attack at each budget: an :class:`Evaluation` whose
    ``summary`` is a tidy DataFrame.

    The data is read once: every batch is scored clean (with the input gradient of the CE loss, for
    ``grad_norm`` and ``zero_grad_frac``), then attacked by every (attack, eps). Rows come in the order
    the attacks and budgets were given, then one ``worst_case`` row per eps: an example counts as robust
    there only if every attack at that eps failed on it (its ``linf``/``l2``/``adv_pred`` are those of the
    first attack, in the given order, that fooled it, else of the first attack).

    Args:
        model: classifier taking [0, 1] images, returning logits; must already be on ``device``.
        data: a Dataset of (x, y) items, a DataLoader (its batches are re-chunked to ``batch_size``, so
            all three input types give the same numbers) or an (x, y) pair of tensors.
        attacks: one or many names in :data:`~serobust.attacks.ATTACKS` / :class:`AttackSpec` s.
        eps: one or many budgets ([0, 1] pixel units, ``"8/255"`` accepted; L2 radii for L2 attacks).
            eps=0 reproduces clean accuracy exactly: the attack does not run. A minimum-norm attack
            (``cw``) runs once per batch and counts an example as fooled at eps only if its perturbation
            is within eps.
        batch_size: examples per attack call.
        device: where the attack runs; None means the model's device.
        per_example: also make ``Evaluation.per_example``: one row per (example index, attack, eps),
            worst_case included.
        return_examples: also keep ``Evaluation.examples``: ``{(attack_label, eps): x_adv}`` (CPU tensors,
            worst_case included; they stay on the device until the end of the call, so budget device
            memory for them).
        seed: base seed; each (attack, eps, batch) runs from a seed derived from it.
        autocast: on CUDA, the attacks craft under bf16 autocast + channels_last (logits cast to float32);
            every counted prediction (clean and adversarial) still comes from a float32 forward with
            autocast and TF32 off. On CPU accepted, ignored and said in ``notes``.
        progress: tqdm bar over attacks x batches; None shows it when stderr is a terminal.
        input_gradients: compute ``grad_norm``/``zero_grad_frac`` (one backward per batch, shared by all
            attacks and budgets of the call); False skips it and leaves those columns NaN.

    Returns:
        An :class:`Evaluation` (always this type, whatever the flags; not itself a frame). Its
        ``summary`` has columns :data:`SUMMARY_COLUMNS`: accuracies and ``success_rate`` (fraction of
        clean-correct examples fooled) as fractions in [0, 1]; ``linf_mean``/``linf_max``/``l2_mean`` of
        the perturbation actually used, over all examples; ``grad_norm`` (mean per-example L2 norm of the
        input gradient at clean x) and ``zero_grad_frac`` (fraction of exactly-zero input gradients: a
        sign of saturation that masks gradient attacks) are model properties, repeated on every row.
        ``per_example`` (columns :data:`PER_EXAMPLE_COLUMNS`) and ``examples`` are None unless asked for.

    Raises:
        InputError: images not float in [0, 1] (NaN included) or labels out of range, naming the batch
            (also a TypeError for integer images).
        ValueError / TypeError: bad eps, attacks, options, data or shapes.
        RuntimeError: a sanity check of a result failed (norm bound, [0, 1], NaN, robust > clean): a bug.

    Example:
        >>> frame = evaluate(model, (x, y), ["fgsm", attack("pgd", steps=20)], eps=[0, "8/255"]).summary
    """
    specs = as_specs(attacks)
    batch_size = check_batch_size(batch_size)
    eps_list, eps_by_label = resolve_eps(specs, eps)
    session = AttackSession({"model": model}, data, batch_size=batch_size, device=device, autocast=autocast,
                            order_matters=per_example or return_examples)
    jobs = [Job(spec, eps_by_label[spec.label], seed=seed) for spec in specs]
    examples: dict[tuple[str, int], list[torch.Tensor]] = {}
    with session.running(progress=progress, runs_per_batch=len(jobs) * len(eps_list), desc="attacks") as seeder:
        for b, xb, yb in session.stream:
            pred = _clean_batch(session, jobs, eps_by_label, b, xb, yb, input_gradients=input_gradients)
            for job in jobs:
                for i, x_adv, adv_pred in job.run(seeder, session.wrapped["model"], xb, yb, b, pred):
                    session.ledger.add((job.label, i, "adv_pred"), adv_pred)
                    for k, v in perturbation(x_adv, xb).items():
                        session.ledger.add((job.label, i, k), v)
                    if return_examples:
                        examples.setdefault((job.label, i), []).append(x_adv)
                    session.tick()
    host = session.finish(stacklevel=2)
    return _tables(host, jobs, eps_list, run_notes=session.notes, input_gradients=input_gradients,
                   per_example=per_example, examples=examples if return_examples else None)


def _clean_batch(session: AttackSession, jobs: Sequence[Job], eps_by_label: dict[str, list[float]], b: int,
                 xb: torch.Tensor, yb: torch.Tensor, *, input_gradients: bool) -> torch.Tensor:
    """One batch's clean pass, into the ledger (labels, predictions, gradient statistics); on the first
    batch also the output checks, the L2 radius check and the attacks' runners. Returns the clean
    predictions (B,)."""
    logits, grad = session.clean_pass("model", xb, yb, input_gradients=input_gradients)
    if b == 0:
        session.record("model", xb, logits)
        check_l2_radius([job.spec for job in jobs], eps_by_label, int(np.prod(xb.shape[1:])))
        for job in jobs:
            job.build(session.wrapped["model"], logits.shape[1])
    pred = logits.argmax(1)  # (B,)
    session.ledger.add("label", yb)
    session.ledger.add("pred", pred)
    if grad is not None:
        gflat = grad.flatten(1)  # (B, C*H*W)
        session.ledger.add("grad_norm", gflat.norm(dim=1))
        session.ledger.add("zero_grad", (gflat == 0).all(1))
    return pred


def _worst_case(host: dict[Hashable, torch.Tensor], jobs: Sequence[Job], i: int,
                clean: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per example at eps index ``i``: the stats of the first attack that fooled it (else of the first
    attack), robust only if every attack failed; and that attack's index per example."""
    robust_all = torch.stack([clean & (host[(job.label, i, "adv_pred")] == host["label"]) for job in jobs])  # (A, N)
    first = (~robust_all).to(torch.uint8).argmax(0)  # (N,) index of the first success, else 0
    rec = {k: torch.stack([host[(job.label, i, k)] for job in jobs]).gather(0, first[None]).squeeze(0)
           for k in ("adv_pred", *_STATS)}
    rec["robust"] = robust_all.all(0)
    return rec, first


def _pick(parts: Sequence[torch.Tensor], first: torch.Tensor) -> torch.Tensor:
    """Row n of the result is row n of ``parts[first[n]]`` (without stacking every attack's examples)."""
    out = parts[0].clone()
    for a in range(1, len(parts)):
        take = first == a
        out[take] = parts[a][take]
    return out


def _tables(host: dict[Hashable, torch.Tensor], jobs: Sequence[Job], eps_list: Sequence[float], *,
            run_notes: list[str], input_gradients: bool, per_example: bool,
            examples: dict[tuple[str, int], list[torch.Tensor]] | None) -> Evaluation:
    """The summary (and per-example rows, examples) from the host tensors; every run sanity-checked."""
    y_all, pred_all = host["label"], host["pred"]
    clean_all = pred_all == y_all
    n, n_clean = len(y_all), int(clean_all.sum())
    grad_mean, zero_frac = ((mean(host["grad_norm"]), mean(host["zero_grad"])) if input_gradients
                            else (float("nan"), float("nan")))
    if zero_frac > 0:
        logger.info("%.1f%% of examples have an exactly zero input gradient at clean x", 100 * zero_frac)
    norms = {job.spec.norm for job in jobs}
    rows, pe_parts = [], []
    out_examples: dict[tuple[str, float], torch.Tensor] = {}

    def add(label: str, norm: str, e: float, st: dict[str, torch.Tensor], budget: str, notes: list[str],
            component: torch.Tensor | None = None) -> None:
        n_robust = int(st["robust"].sum())
        rows.append({
            "attack": label, "eps": e, "norm": norm, "budget": budget,
            "clean_acc": n_clean / n, "robust_acc": n_robust / n,
            "success_rate": (n_clean - n_robust) / n_clean if n_clean else float("nan"),
            "linf_mean": mean(st["linf"]), "linf_max": float(st["linf"].max()), "l2_mean": mean(st["l2"]),
            "grad_norm": grad_mean, "zero_grad_frac": zero_frac, "n": n, "notes": join_notes(run_notes + notes),
        })
        if per_example:
            pe_parts.append(pd.DataFrame({
                "index": np.arange(n), "attack": label, "eps": e, "label": y_all.numpy(),
                "clean_pred": pred_all.numpy(), "adv_pred": st["adv_pred"].numpy(),
                "clean_correct": clean_all.numpy(), "robust_correct": st["robust"].numpy(),
                "linf": st["linf"].numpy(), "l2": st["l2"].numpy(),
                "component": component.numpy() if component is not None else np.full(n, -1),
            }))

    for job in jobs:
        for i, e in enumerate(job.eps):
            st = {k: host[(job.label, i, k)] for k in ("adv_pred", *_STATS)}
            st["robust"] = clean_all & (st["adv_pred"] == y_all)
            sanity(job.label, job.spec.norm, e, st, clean=clean_all, robust=st["robust"])
            component = torch.cat(job.components[i]).cpu() if i in job.components else None
            add(job.label, job.spec.norm, e, st, job.budgets[i], job.notes[i], component)
            if examples is not None:
                out_examples[(job.label, e)] = torch.cat(examples[(job.label, i)]).cpu()
    for i, e in enumerate(eps_list):
        st, first = _worst_case(host, jobs, i, clean_all)
        if int(st["robust"].sum()) > n_clean:
            raise RuntimeError(f"harness bug: worst case at eps={e:.6g} robust accuracy exceeds clean accuracy")
        mixed = ["attacks at this eps mix norms; the same number is an Linf eps for some and an L2 radius for others"]
        add(WORST_CASE, next(iter(norms)) if len(norms) == 1 else "mixed", e, st,
            "every attack at this eps: " + ", ".join(job.label for job in jobs), [] if len(norms) == 1 else mixed)
        if examples is not None:
            out_examples[(WORST_CASE, e)] = _pick([out_examples[(job.label, job.eps[i])] for job in jobs], first)
    return Evaluation(
        summary=pd.DataFrame(rows, columns=SUMMARY_COLUMNS),
        per_example=pd.concat(pe_parts, ignore_index=True)[PER_EXAMPLE_COLUMNS] if per_example else None,
        examples=out_examples if examples is not None else None,
    )
