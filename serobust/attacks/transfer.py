"""Transfer attacks: examples crafted white-box on one model, scored on another (same harness promises:
the same :class:`~.session.AttackSession`, the same seeds; one :class:`~.evaluation.Evaluation` back)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .base import AttackSpec, as_spec
from .batches import check_batch_size
from .budgets import check_l2_radius, resolve_eps
from .checks import perturbation, sanity
from .evaluation import Evaluation
from .runs import Job, SeededRuns
from .session import AttackSession, join_notes, mean

__all__ = ["evaluate_transfer", "TRANSFER_COLUMNS", "TRANSFER_PER_EXAMPLE_COLUMNS"]

TRANSFER_COLUMNS = [
    "attack", "eps", "norm", "budget", "source_clean_acc", "target_clean_acc", "source_robust_acc",
    "transfer_robust_acc", "target_whitebox_robust_acc", "transfer_success_rate", "n", "notes",
]
TRANSFER_PER_EXAMPLE_COLUMNS = [
    "index", "attack", "eps", "label", "source_clean_pred", "target_clean_pred", "source_adv_pred",
    "transfer_pred", "target_whitebox_pred", "source_clean_correct", "target_clean_correct",
    "source_robust_correct", "transfer_robust_correct", "target_whitebox_robust_correct", "linf", "l2",
]
_ROLES = ("source", "target")


def evaluate_transfer(
    source: nn.Module,
    target: nn.Module,
    data: Any,
    attack: str | AttackSpec,
    eps: float | str | Iterable[float | str],
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    per_example: bool = False,
    seed: int = 0,
    autocast: bool = False,
    progress: bool | None = None,
) -> Evaluation:
    """Transfer attack: examples crafted white-box on ``source``, scored on ``target``.

    One direction per call: for a (baseline, SE) pair, call it twice, ``(base, se)`` and ``(se, base)``.
    The source and the target white-box runs use the seeds :func:`~serobust.attacks.evaluate` would, so
    ``source_robust_acc`` equals ``evaluate(source, ...)`` and ``target_whitebox_robust_acc`` equals
    ``evaluate(target, ...)`` for the same attack, eps, seed and batch size.

    Args:
        source: the model the attack sees (white-box).
        target: the model the examples are scored on; on the same device as ``source``.
        data, attack, eps, batch_size, device, seed, autocast, progress: as in
            :func:`~serobust.attacks.evaluate` (one attack here).
        per_example: also make ``per_example``: one row per (example index, eps).

    Returns:
        An :class:`~.evaluation.Evaluation` (``examples`` always None). Its ``summary`` has one row per eps
        with columns :data:`TRANSFER_COLUMNS`: ``source_robust_acc`` (white-box on the source),
        ``transfer_robust_acc`` (target correct on clean and on the source's examples),
        ``target_whitebox_robust_acc`` (the same attack run on the target, for comparison),
        ``transfer_success_rate`` (fraction of target-clean-correct examples the transferred examples
        fool). ``per_example`` (None unless asked for) has columns :data:`TRANSFER_PER_EXAMPLE_COLUMNS`
        (``linf``/``l2`` of the source's perturbation).

    Raises:
        InputError: bad images or labels, naming the batch.
        ValueError / TypeError: bad eps, attack, options or data; models disagreeing on the classes.
        RuntimeError: a sanity check of a result failed: a bug.
    """
    spec = as_spec(attack)
    batch_size = check_batch_size(batch_size)
    eps_list, _ = resolve_eps([spec], eps)
    session = AttackSession({"source": source, "target": target}, data, batch_size=batch_size, device=device,
                            autocast=autocast, order_matters=per_example)
    jobs = {role: Job(spec, eps_list, seed=seed) for role in _ROLES}
    with session.running(progress=progress, runs_per_batch=len(eps_list), desc="transfer") as seeder:
        for b, xb, yb in session.stream:
            pred = _clean_batch(session, jobs, spec, eps_list, b, xb, yb)
            _attack_batch(session, seeder, jobs, eps_list, b, xb, yb, pred)
    host = session.finish(stacklevel=2)
    notes = [session.notes + jobs["source"].notes[i] + jobs["target"].notes[i] for i in range(len(eps_list))]
    return _tables(host, spec, eps_list, jobs["source"].budgets, notes, per_example=per_example)


def _clean_batch(session: AttackSession, jobs: dict[str, Job], spec: AttackSpec, eps_list: list[float], b: int,
                 xb: torch.Tensor, yb: torch.Tensor) -> dict[str, torch.Tensor]:
    """Both models' clean predictions (B,) on one batch, into the ledger; on the first batch also the class
    count agreement, the L2 radius check, the output checks and both white-box runners."""
    logits = {role: session.clean_pass(role, xb, yb, input_gradients=False)[0] for role in _ROLES}
    if b == 0:
        if logits["source"].shape[1] != logits["target"].shape[1]:
            raise ValueError(f"source and target disagree on the number of classes: "
                             f"{logits['source'].shape[1]} vs {logits['target'].shape[1]}")
        check_l2_radius([spec], {spec.label: eps_list}, int(np.prod(xb.shape[1:])))
        for role in _ROLES:
            session.record(role, xb, logits[role])
            jobs[role].build(session.wrapped[role], logits[role].shape[1])
    pred = {role: out.argmax(1) for role, out in logits.items()}
    session.ledger.add("label", yb)
    for role in _ROLES:
        session.ledger.add(f"{role}_clean_pred", pred[role])
    return pred


def _attack_batch(session: AttackSession, seeder: SeededRuns, jobs: dict[str, Job], eps_list: list[float], b: int,
                  xb: torch.Tensor, yb: torch.Tensor, pred: dict[str, torch.Tensor]) -> None:
    """One batch at every eps: the source's examples scored on the target (float32), and the same attack
    white-box on each model, into the ledger."""
    wms = session.wrapped
    target_runs = jobs["target"].run(seeder, wms["target"], xb, yb, b, pred["target"])
    for (i, x_src, src_adv), (_, x_tgt, tgt_wb) in zip(
            jobs["source"].run(seeder, wms["source"], xb, yb, b, pred["source"]), target_runs):
        if eps_list[i] == 0:
            transfer = pred["target"]
        else:
            with torch.no_grad():
                transfer = wms["target"].score(x_src).argmax(1)  # float32
        session.ledger.add(("source_adv_pred", i), src_adv)
        session.ledger.add(("transfer_pred", i), transfer)
        session.ledger.add(("target_whitebox_pred", i), tgt_wb)
        for role, xa in (("source", x_src), ("target", x_tgt)):
            for k, v in perturbation(xa, xb).items():
                session.ledger.add((role, k, i), v)
        session.tick()

def _tables(host: dict[Any, torch.Tensor], spec: AttackSpec, eps_list: list[float], budgets: list[str],
            notes: list[list[str]], *, per_example: bool) -> Evaluation:
    """One row per eps (and per-example rows) from the host tensors; both white-box runs sanity-checked."""
    y_all = host["label"]
    n = len(y_all)
    s_clean = host["source_clean_pred"] == y_all
    t_clean = host["target_clean_pred"] == y_all
    rows, parts = [], []
    for i, e in enumerate(eps_list):
        s_rob = s_clean & (host[("source_adv_pred", i)] == y_all)
        tr_rob = t_clean & (host[("transfer_pred", i)] == y_all)
        wb_rob = t_clean & (host[("target_whitebox_pred", i)] == y_all)
        for role, clean, rob in (("source", s_clean, s_rob), ("target", t_clean, wb_rob)):
            st = {k: host[(role, k, i)] for k in ("linf", "l2", "lo", "hi")}
            sanity(f"{spec.label} on {role}", spec.norm, e, st, clean=clean, robust=rob)
        n_t = int(t_clean.sum())
        rows.append({
            "attack": spec.label, "eps": e, "norm": spec.norm, "budget": budgets[i],
            "source_clean_acc": mean(s_clean), "target_clean_acc": mean(t_clean),
            "source_robust_acc": mean(s_rob), "transfer_robust_acc": mean(tr_rob),
            "target_whitebox_robust_acc": mean(wb_rob),
            "transfer_success_rate": (n_t - int(tr_rob.sum())) / n_t if n_t else float("nan"),
            "n": n, "notes": join_notes(notes[i]),
        })
        if per_example:
            parts.append(pd.DataFrame({
                "index": np.arange(n), "attack": spec.label, "eps": e, "label": y_all.numpy(),
                "source_clean_pred": host["source_clean_pred"].numpy(),
                "target_clean_pred": host["target_clean_pred"].numpy(),
                "source_adv_pred": host[("source_adv_pred", i)].numpy(),
                "transfer_pred": host[("transfer_pred", i)].numpy(),
                "target_whitebox_pred": host[("target_whitebox_pred", i)].numpy(),
                "source_clean_correct": s_clean.numpy(), "target_clean_correct": t_clean.numpy(),
                "source_robust_correct": s_rob.numpy(), "transfer_robust_correct": tr_rob.numpy(),
                "target_whitebox_robust_correct": wb_rob.numpy(),
                "linf": host[("source", "linf", i)].numpy(), "l2": host[("source", "l2", i)].numpy(),
            }))
    return Evaluation(
        summary=pd.DataFrame(rows, columns=TRANSFER_COLUMNS),
        per_example=pd.concat(parts, ignore_index=True)[TRANSFER_PER_EXAMPLE_COLUMNS] if per_example else None,
    )
