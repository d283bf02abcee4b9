"""Datasets as whole tensors of [0, 1] images, and a vectorized batch augmentation.

Every dataset is held in memory as one image tensor and one label tensor (:class:`ImageTensorDataset`):
the sets this project uses (MNIST, CIFAR, SVHN, up to ~70k small images) fit easily, and whole-tensor
access lets the trainer and the attack harness move a set to the GPU in one copy instead of collating
sample by sample. Images stay ``uint8`` in memory (4x less than float32) and become float32 in [0, 1]
only when read. Models normalize inside (``mean``/``std`` are handed to ``build_pair``), so everything
outside a model, attacks included, works in [0, 1] pixel space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..runtime import check_int

__all__ = ["ImageTensorDataset", "BatchAugment", "DatasetBundle", "stratified_split", "stratified_indices"]

# ----------------------------------------------------------------------------------------------------------
# In-memory dataset
# ----------------------------------------------------------------------------------------------------------


class ImageTensorDataset(Dataset):
    """A labelled image set held as two tensors; images read as float32 in [0, 1].

    Args:
        images: ``uint8`` tensor (N, C, H, W) meaning value / 255 (the compact storage every loader
            uses), or a floating tensor already in [0, 1] (stored as float32).
        labels: integer tensor (N,) of class indices (stored as int64).

    Raises:
        ValueError: wrong ranks, mismatched lengths, a float image outside [0, 1] or a negative label.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
            raise ValueError(
                f"images and labels must be torch tensors, got {type(images).__name__} and "
                f"{type(labels).__name__}; wrap numpy arrays with torch.from_numpy"
            )
        if images.ndim != 4:
            raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"labels must have shape (N,) with N = {images.shape[0]} images, got {tuple(labels.shape)}"
            )
        if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
            raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
        if images.dtype != torch.uint8:
            if not images.dtype.is_floating_point:
                raise ValueError(
                    f"images must be uint8 (value/255) or float in [0, 1], got dtype {images.dtype}"
                )
            images = images.to(torch.float32)
            if images.numel():
                lo, hi = torch.aminmax(images)
                if not (lo >= 0 and hi <= 1):  # NaN fails both comparisons
                    raise ValueError(
                        f"float images must lie in [0, 1], found [{lo.item():.4g}, {hi.item():.4g}]; "
                        "divide 0..255 images by 255 (or pass them as uint8)"
                    )
        labels = labels.to(torch.int64)
        if labels.numel() and labels.min() < 0:
            raise ValueError("labels must be >= 0 class indices")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """Return ``(image, label)``: a float32 (C, H, W) image in [0, 1] and a Python int."""
        return _to_float(self.images[index]), int(self.labels[index])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def tensors(self, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole set as ``(x, y)``: float32 (N, C, H, W) in [0, 1] and int64 (N,), on ``device``.

        The uint8 storage is moved first and converted on the target device, so a GPU copy moves
        4x fewer bytes. The returned tensors are fresh (safe to modify) unless the storage is already
        float32 on ``device``, in which case they are the stored tensors themselves.
        """
        x = self.images.to(device) if device is not None else self.images
        y = self.labels.to(device) if device is not None else self.labels
        return _to_float(x), y

    def subset(self, n: int, *, seed: int = 0, stratified: bool = True) -> ImageTensorDataset:
        """A deterministic subset of ``n`` examples, in their original order.

        Args:
            n: how many examples; ``n >= len(self)`` returns ``self`` unchanged.
            seed: seeds the draw; the same seed always gives the same subset.
            stratified: keep each class's share of the set (largest-remainder rounding), so a subset
                of a balanced set is balanced (e.g. 100 per class from CIFAR-10's test set for n=1000)
                and accuracy on it estimates accuracy on the whole set without class bias.
                ``False`` draws ``n`` examples uniformly at random.

        Raises:
            ValueError: ``n`` is not a positive integer.
        """
        n = check_int(n, name="subset size n")
        if n >= len(self):
            return self
        if stratified:
            chosen = stratified_indices(self.labels, n, seed=seed)
        else:
            g = torch.Generator().manual_seed(seed)
            chosen = torch.sort(torch.randperm(len(self), generator=g)[:n]).values
        return ImageTensorDataset(self.images[chosen], self.labels[chosen])

    def __repr__(self) -> str:
        return (
            f"ImageTensorDataset(n={len(self)}, shape={self.shape}, storage={str(self.images.dtype)[6:]})"
        )


def stratified_indices(labels: torch.Tensor, n: int, *, seed: int = 0) -> torch.Tensor:
    """Sorted indices of a seeded subset of ``n`` of ``labels`` keeping each class's share (largest-remainder
    rounding); what :meth:`ImageTensorDataset.subset` draws, usable on labels alone (before decoding files)."""
    if n >= labels.shape[0]:
        return torch.arange(labels.shape[0])
    counts = torch.bincount(labels)  # (K,)
    total = labels.shape[0]
    quota = counts * n  # exact integer largest-remainder allocation of n over classes
    take = quota // total
    remainder = quota % total
    extra = n - int(take.sum())
    if extra:
        # stable sort: ties go to the lower class index, so the result is deterministic
        order = torch.sort(-remainder, stable=True).indices
        take[order[:extra]] += 1
    chosen, _ = _stratified_pick(labels, take, seed=seed)
    return torch.sort(chosen).values


def _to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 value/255 -> float32 in [0, 1]; float32 passes through."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)
    return x


def _stratified_pick(labels: torch.Tensor, take: torch.Tensor, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick ``take[k]`` random examples of each class k, vectorized.

    Returns ``(chosen, rest)`` index tensors, both in the order of one seeded random permutation, so
    they are shuffled (classes interleaved) and deterministic.
    """
    n = labels.shape[0]
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)  # (N,)
    permuted = labels[perm]
    order = torch.sort(permuted, stable=True).indices  # groups classes, keeps the random order within each
    counts = torch.bincount(labels, minlength=take.shape[0])  # (K,), K >= len(take)
    starts = torch.cumsum(counts, 0) - counts  # first position of each class in the grouped order
    rank = torch.empty(n, dtype=torch.int64)
    rank[order] = torch.arange(n) - starts[permuted[order]]  # rank of each permuted example within its class
    per_class = torch.zeros_like(counts)
    per_class[: take.shape[0]] = take
    keep = rank < per_class[permuted]
    return perm[keep], perm[~keep]


def stratified_split(labels: torch.Tensor, n_test: torch.Tensor, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, test_idx) with ``n_test[k]`` test examples of class k, both shuffled, fixed by seed."""
    test_idx, train_idx = _stratified_pick(labels, n_test, seed=seed)
    return train_idx, test_idx


# ----------------------------------------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchAugment:
    """Random crop with zero padding and optional horizontal flip, on a whole batch at once.

    Each sample gets its own crop offset and flip, drawn in three vectorized calls; the crop and the
    flip are one gather from a zero-padded copy of the batch, so there is no per-sample Python loop and
    no host sync, on CPU or GPU. With ``padding = p`` each output image is the (H, W) window at offset
    (dy, dx), dy, dx uniform in {0, ..., 2p}, of the input padded by p zeros on every side (the usual
    ``RandomCrop(size, padding=p)``), mirrored left-right when its flip is drawn (probability 1/2).

    Attributes:
        padding: zero padding on each side before cropping back to (H, W); 0 disables the crop.
        flip: whether to mirror half the samples horizontally (not for digits or house numbers).
    """

    padding: int = 0
    flip: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.padding, bool) or not isinstance(self.padding, int) or self.padding < 0:
            raise ValueError(f"padding must be a non-negative int, got {self.padding!r}")
        if not isinstance(self.flip, bool):
            raise ValueError(f"flip must be True or False, got {self.flip!r}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a batch.

        Args:
            x: float images (B, C, H, W) on any device.
            generator: makes the draw reproducible; it may live on the CPU while ``x`` is on the GPU
                (the few random numbers are then copied over). ``None`` uses the global RNG of x's device.

        Returns:
            A new (B, C, H, W) tensor of x's dtype and device (``x`` itself when the augmentation is a no-op).
        """
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ValueError(f"BatchAugment expects a (B, C, H, W) tensor, got {getattr(x, 'shape', type(x))}")
        p = self.padding
        if p == 0 and not self.flip:
            return x
        b, c, h, w = x.shape
        dev = x.device
        gen_dev = generator.device if generator is not None else dev
        offsets = torch.randint(0, 2 * p + 1, (2, b), generator=generator, device=gen_dev).to(dev)  # (2, B)
        flips = torch.rand(b, generator=generator, device=gen_dev).lt(0.5).to(dev)  # (B,)
        if not self.flip:
            flips = torch.zeros_like(flips)
        padded = F.pad(x, (p, p, p, p)) if p else x  # (B, C, H+2p, W+2p), zeros outside the image
        ar_h = torch.arange(h, device=dev)
        ar_w = torch.arange(w, device=dev)
        rows = offsets[0, :, None] + ar_h  # (B, H)
        cols = offsets[1, :, None] + torch.where(flips[:, None], (w - 1) - ar_w, ar_w)  # (B, W), flip folded in
        bi = torch.arange(b, device=dev)[:, None, None, None]
        ci = torch.arange(c, device=dev)[None, :, None, None]
        out = padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            out = out.contiguous(memory_format=torch.channels_last)
        return out


# ----------------------------------------------------------------------------------------------------------
# Bundle
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetBundle:
    """One dataset, ready for training and attacks.

    Attributes:
        name: the dataset's name (as given to :func:`load_dataset`).
        train, test: the two splits.
        num_classes: number of classes (``len(classes)``).
        in_channels: C of the images.
        image_size: (H, W).
        mean, std: per-channel mean and (population) standard deviation of the train images in [0, 1],
            for the model's internal normalization (``build_pair(..., mean=data.mean, std=data.std)``).
        classes: class names, index = label.
        augment: a :class:`BatchAugment` for training batches, or ``None``.
    """

    name: str
    train: ImageTensorDataset
    test: ImageTensorDataset
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    augment: BatchAugment | None = None

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            if not isinstance(getattr(self, split), ImageTensorDataset):
                raise ValueError(f"{split} must be an ImageTensorDataset, got {type(getattr(self, split)).__name__}")
        if self.train.shape != self.test.shape:
            raise ValueError(f"train images are {self.train.shape} but test images are {self.test.shape}")
        c, h, w = self.train.shape
        if self.in_channels != c or tuple(self.image_size) != (h, w):
            raise ValueError(
                f"in_channels={self.in_channels}, image_size={self.image_size} do not match the images {(c, h, w)}"
            )
        if len(self.mean) != c or len(self.std) != c:
            raise ValueError(f"mean and std need {c} values (one per channel), got {self.mean} and {self.std}")
        if len(self.classes) != self.num_classes:
            raise ValueError(f"{len(self.classes)} class names for num_classes={self.num_classes}")
        if self.augment is not None and not isinstance(self.augment, BatchAugment):
            raise ValueError(f"augment must be a BatchAugment or None, got {type(self.augment).__name__}")

    @classmethod
    def from_tensors(
        cls,
        name: str,
        *,
        train: ImageTensorDataset,
        test: ImageTensorDataset,
        classes: Sequence[str] | None = None,
        augment: BatchAugment | None = None,
    ) -> DatasetBundle:
        """Build a bundle from two splits, computing mean/std from ``train`` (works for any custom set).

        Args:
            classes: class names; default ``"0", "1", ...`` up to the largest label.

        Raises:
            ValueError: a label is outside ``range(len(classes))``.
        """
        max_label = max(int(train.labels.max()) if len(train) else -1, int(test.labels.max()) if len(test) else -1)
        if classes is None:
            classes = tuple(str(i) for i in range(max_label + 1))
        classes = tuple(str(c) for c in classes)
        if max_label >= len(classes):
            raise ValueError(f"label {max_label} is out of range for {len(classes)} classes")
        mean, std = _channel_stats(train.images)
        c, h, w = train.shape
        return cls(
            name=name, train=train, test=test, num_classes=len(classes), in_channels=c, image_size=(h, w),
            mean=mean, std=std, classes=classes, augment=augment,
        )

    def __repr__(self) -> str:
        return (
            f"DatasetBundle(name={self.name!r}, train={len(self.train)}, test={len(self.test)}, "
            f"num_classes={self.num_classes}, shape={self.train.shape}, augment={self.augment})"
        )


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of images in [0, 1] (uint8 storage meaning value/255).

    uint8: exact, from a 256-bin histogram per channel (no float copy of the set). Float: two chunked
    float64 passes.
    """
    c = images.shape[1]
    if images.shape[0] == 0:
        raise ValueError("cannot compute mean/std of an empty train set")
    if images.dtype == torch.uint8:
        values = torch.arange(256, dtype=torch.float64) / 255.0
        means, stds = [], []
        for ch in range(c):
            counts = torch.bincount(images[:, ch].reshape(-1), minlength=256).to(torch.float64)  # (256,)
            m = (counts * values).sum() / counts.sum()
            var = (counts * (values - m) ** 2).sum() / counts.sum()
            means.append(float(m))
            stds.append(float(var.sqrt()))
        return tuple(means), tuple(stds)
    chunk = 4096
    total = torch.zeros(c, dtype=torch.float64)
    for i in range(0, images.shape[0], chunk):
        total += images[i : i + chunk].to(torch.float64).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count  # (C,)
    sq = torch.zeros(c, dtype=torch.float64)
    for i in range(0, images.shape[0], chunk):
        sq += ((images[i : i + chunk].to(torch.float64) - mean[None, :, None, None]) ** 2).sum(dim=(0, 2, 3))
    std = (sq / count).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())

