"""Data -> batches of exactly ``batch_size`` on the device, every batch's input checked without host syncs.

A Dataset, a DataLoader (its batches are re-chunked) and an (x, y) pair of tensors give the same
batches, hence the same per-batch seeds and the same numbers. :class:`GuardedBatches` moves each batch
to the device and records its checks there (:class:`serobust.runtime.BatchGuard` for the images; label
ranges likewise); :meth:`GuardedBatches.check` reads them back once, so that a NaN or a 0..255 pixel in
batch 7 raises :class:`~serobust.errors.InputError` naming batch 7 instead of surfacing later as a
broken attack.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from ..errors import InputError
from ..runtime import BatchGuard, batch_where, check_batch_size

__all__ = ["check_batch_size", "batches", "GuardedBatches", "ImageDtypeError", "require_float_images"]


class ImageDtypeError(InputError, TypeError):
    """Images of an integer dtype (``uint8``); a TypeError too, as serobust raised before InputError."""


def require_float_images(x: Any, *, name: str = "images") -> None:
    """Raise :class:`ImageDtypeError` for non-float images (the one check that is a TypeError)."""
    if isinstance(x, torch.Tensor) and not torch.is_floating_point(x):
        raise ImageDtypeError(f"{name} must be float in [0, 1], got dtype {x.dtype}; "
                              "for uint8 images use x.float() / 255")


def _split_item(item: Any) -> tuple[Any, Any]:
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return item[0], item[1]
    raise TypeError("data must yield (x, y) pairs; got an item of type "
                    f"{type(item).__name__}" + (f" with {len(item)} entries" if hasattr(item, "__len__") else ""))


def batches(data: Any, batch_size: int, *, order_matters: bool) -> tuple[Iterator[tuple[torch.Tensor, torch.Tensor]], int | None]:
    """Batches of ``batch_size`` (the last may be smaller), and the example count if known.

    Re-chunking a DataLoader's own batches makes a Dataset, a DataLoader over it and the (x, y) tensors
    give identical results: the per-batch seeds depend on batch boundaries.
    """
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        y = torch.as_tensor(y)
        if len(x) != len(y):
            raise InputError(f"x and y differ in length: {len(x)} vs {len(y)}")
        n = len(x)
        return ((x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, n, batch_size)), n
    if isinstance(data, DataLoader):
        if order_matters and isinstance(data.sampler, RandomSampler):
            warnings.warn(
                "the DataLoader shuffles: per-example indices follow this iteration's order and will not pair "
                "across calls or models; pass the Dataset or a loader with shuffle=False",
                stacklevel=4,
            )
        loader: Iterable[Any] = data
        try:
            n = len(data.dataset)  # type: ignore[arg-type]
            if data.drop_last and data.batch_size:
                n = (n // data.batch_size) * data.batch_size
        except TypeError:
            n = None
    elif isinstance(data, Dataset):
        loader = DataLoader(data, batch_size=batch_size, shuffle=False)
        try:
            n = len(data)  # type: ignore[arg-type]
        except TypeError:
            n = None
    else:
        raise TypeError(f"data must be a Dataset, a DataLoader or an (x, y) pair of tensors, got {type(data).__name__}")
    return _rechunk(loader, batch_size), n


def _rechunk(loader: Iterable[Any], batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    held = 0
    for item in loader:
        xb, yb = _split_item(item)
        xb, yb = torch.as_tensor(xb), torch.as_tensor(yb)
        xs.append(xb)
        ys.append(yb)
        held += len(xb)
        while held >= batch_size:
            x_all, y_all = torch.cat(xs), torch.cat(ys)
            yield x_all[:batch_size], y_all[:batch_size]
            xs, ys = [x_all[batch_size:]], [y_all[batch_size:]]
            held -= batch_size
    if held:
        yield torch.cat(xs), torch.cat(ys)


def _label_message(lo: int, hi: int, num_classes: int, where: str) -> str:
    return (f"labels{where} must be class indices in [0, {num_classes - 1}] for a model with {num_classes} "
            f"outputs, got labels in [{lo}, {hi}]")


class GuardedBatches:
    """Batches moved to the device, with every batch's images and labels checked.

    Images: :class:`~serobust.runtime.BatchGuard` (NaN and [0, 1] recorded on the device). Labels: dtype
    and shape on arrival; their range, once the caller knows the number of classes
    (:meth:`check_labels`, after the clean forward and before any loss), on the host when they arrive on
    the CPU (the usual case: no device sync, and an out-of-range label never reaches a CUDA kernel, where
    it would be a device-side assert), else recorded on the device and read back by :meth:`check`.

    Args:
        data: a Dataset, a DataLoader or an (x, y) pair (see :func:`batches`).
        batch_size: examples per batch.
        device: where the batches go.
        order_matters: warn if a shuffling DataLoader makes per-example indices meaningless.
    """

    def __init__(self, data: Any, batch_size: int, *, device: torch.device, order_matters: bool) -> None:
        self._source, self.n = batches(data, batch_size, order_matters=order_matters)
        self.batch_size = batch_size
        self.device = device
        self.images = BatchGuard("images", batch_size=batch_size)
        self._current: tuple[int, torch.Tensor] | None = None
        self._deferred: list[tuple[int, torch.Tensor]] = []
        self._num_classes: int | None = None

    @property
    def n_batches(self) -> int | None:
        """The number of batches, if the data's length is known."""
        return None if self.n is None else -(-self.n // self.batch_size)

    def _where(self, b: int) -> str:
        return batch_where(b, self.batch_size)

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(batch index, images, labels)`` on the device: float32 images, int64 labels."""
        non_blocking = self.device.type == "cuda"
        for b, (xb, yb) in enumerate(self._source):
            require_float_images(xb)
            if (yb.ndim != 1 or len(yb) != len(xb) or torch.is_floating_point(yb) or yb.is_complex()
                    or yb.dtype == torch.bool):
                raise InputError(f"labels{self._where(b)} must be integer class indices of shape ({len(xb)},), "
                                 f"got dtype {yb.dtype} and shape {tuple(yb.shape)}")
            self._current = (b, yb)
            xb = self.images(xb.to(self.device, torch.float32, non_blocking=non_blocking))
            yield b, xb, yb.to(self.device, torch.long, non_blocking=non_blocking)

    def check_labels(self, num_classes: int) -> None:
        """Check the current batch's label range against the model's ``num_classes`` outputs."""
        if self._num_classes is None:
            self._num_classes = num_classes
        if self._current is None or self._current[1].numel() == 0:
            return
        b, yb = self._current
        if yb.device.type == "cpu":
            lo, hi = int(yb.min()), int(yb.max())
            if lo < 0 or hi >= num_classes:
                raise InputError(_label_message(lo, hi, num_classes, self._where(b)))
        else:
            self._deferred.append((b, torch.stack(torch.aminmax(yb))))

    def check(self) -> None:
        """Read every deferred check back (one transfer each for images and labels); raise on the first bad batch."""
        self.images.check()
        if self._deferred and self._num_classes is not None:
            table = torch.stack([t for _, t in self._deferred]).cpu()  # (batches, 2)
            bad = (table[:, 0] < 0) | (table[:, 1] >= self._num_classes)
            if bool(bad.any()):
                j = int(bad.nonzero()[0, 0])
                raise InputError(_label_message(int(table[j, 0]), int(table[j, 1]), self._num_classes,
                                                self._where(self._deferred[j][0])))
