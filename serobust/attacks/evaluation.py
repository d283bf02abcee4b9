"""What :func:`~.harness.evaluate` and :func:`~.transfer.evaluate_transfer` return: one :class:`Evaluation`.

One result type whatever was asked for (it used to be a frame, a 2-tuple or a 3-tuple depending on flags):
the ``summary`` always, ``per_example`` and ``examples`` when asked for, else None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

import pandas as pd
import torch

__all__ = ["Evaluation"]

_NOT_A_FRAME = ("an Evaluation is not a DataFrame or a tuple: take .summary (the table), .per_example "
                "(per_example=True) or .examples (return_examples=True), e.g. evaluate(...).summary")


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The result of one :func:`~serobust.attacks.evaluate` (or :func:`~serobust.attacks.evaluate_transfer`)
    call.

    Deliberately *not* frame-like: a notebook writes ``evaluate(...).summary`` (one attribute, always the
    same type), and indexing or unpacking an Evaluation raises TypeError saying so, rather than quietly
    behaving like one of its tables.

    Attributes:
        summary: one row per (attack, eps) plus the worst case per eps (columns
            :data:`~serobust.attacks.SUMMARY_COLUMNS`), or one row per eps for a transfer
            (:data:`~serobust.attacks.TRANSFER_COLUMNS`).
        per_example: one row per (example index, attack, eps) (:data:`~serobust.attacks.PER_EXAMPLE_COLUMNS`,
            transfer: :data:`~serobust.attacks.TRANSFER_PER_EXAMPLE_COLUMNS`); None unless
            ``per_example=True``.
        examples: ``{(attack label, eps): x_adv}`` as CPU float32 tensors, worst case included; None unless
            ``return_examples=True`` (never for a transfer).
    """

    summary: pd.DataFrame
    per_example: pd.DataFrame | None = None
    examples: dict[tuple[str, float], torch.Tensor] | None = None

    def __iter__(self) -> NoReturn:
        raise TypeError(_NOT_A_FRAME)

    def __getitem__(self, key: Any) -> NoReturn:
        raise TypeError(_NOT_A_FRAME)

    def __repr__(self) -> str:
        per = "None" if self.per_example is None else f"{len(self.per_example)} rows"
        ex = "None" if self.examples is None else f"{len(self.examples)} tensors"
        return f"Evaluation(summary: {len(self.summary)} rows, per_example: {per}, examples: {ex})"
