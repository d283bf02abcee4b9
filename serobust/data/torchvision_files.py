"""CIFAR-10/100, SVHN, MNIST and Fashion-MNIST in torchvision's on-disk layout, read by small readers.

torchvision's own dataset classes check md5 sums of the official files, so they refuse a well-formed copy
that is not byte-identical; the readers below check the format instead (shapes, dtypes, label ranges) and
name the file and the fix when it is wrong. torchvision is used only to download missing files.
"""

from __future__ import annotations

import gzip
import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DatasetFormatError, DatasetNotFoundError
from .embedded import DIGIT_CLASSES
from .tensors import BatchAugment, ImageTensorDataset

__all__ = ["load_cifar", "load_svhn", "load_mnist_like", "format_error"]

logger = logging.getLogger(__name__)

_FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

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


def format_error(path: Path, what: str) -> DatasetFormatError:
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
        raise format_error(path, f"not a readable CIFAR pickle ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise format_error(path, f"expected a pickled dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_cifar_batch(path: Path, label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One CIFAR batch: ``data`` (N, 3072) uint8 rows (R, G, B planes of 32x32) and a label list."""
    d = _read_pickle(path)
    if "data" not in d or label_key not in d:
        raise format_error(path, f"expected keys 'data' and {label_key!r}, found {sorted(d)}")
    data = np.asarray(d["data"])
    labels = np.asarray(d[label_key])
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise format_error(path, f"'data' should have shape (N, 3072), found {data.shape}")
    if data.dtype != np.uint8:
        if not np.issubdtype(data.dtype, np.integer) or data.size and (data.min() < 0 or data.max() > 255):
            raise format_error(path, f"'data' should be uint8 pixels, found dtype {data.dtype}")
        data = data.astype(np.uint8)
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise format_error(path, f"{label_key!r} should be {data.shape[0]} integers, found shape {labels.shape}")
    images = torch.from_numpy(np.ascontiguousarray(data)).reshape(-1, 3, 32, 32)  # (N, 3, 32, 32)
    return images, torch.from_numpy(labels.astype(np.int64))


def load_cifar(key: str, root: Path, *, download: bool):
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
        raise format_error(files[-1], f"expected {k} class names under {names_key!r}")
    classes = tuple(c.decode() if isinstance(c, bytes) else str(c) for c in classes)

    def read(paths: list[Path]) -> ImageTensorDataset:
        parts = [_read_cifar_batch(p, label_key) for p in paths]
        for p, (_, y) in zip(paths, parts):
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
                raise format_error(p, f"labels must lie in 0..{k - 1}, found {int(y.min())}..{int(y.max())}")
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
        raise format_error(path, f"not a readable MATLAB file ({type(e).__name__}: {e})") from e
    if "X" not in mat or "y" not in mat:
        raise format_error(path, f"expected variables 'X' and 'y', found {sorted(k for k in mat if not k.startswith('__'))}")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"])
    if x.ndim != 4 or x.shape[2] != 3 or x.dtype != np.uint8:
        raise format_error(path, f"'X' should be uint8 of shape (H, W, 3, N), found {x.dtype} {x.shape}")
    y = y.reshape(-1).astype(np.int64)
    if y.shape[0] != x.shape[3]:
        raise format_error(path, f"'y' has {y.shape[0]} labels for {x.shape[3]} images")
    if y.size and (y.min() < 0 or y.max() > 10):
        raise format_error(path, f"'y' should hold digits 1..10 (10 = digit 0), found {y.min()}..{y.max()}")
    y[y == 10] = 0
    images = torch.from_numpy(np.ascontiguousarray(np.transpose(x, (3, 2, 0, 1))))  # (H, W, C, N) -> (N, C, H, W)
    return images, torch.from_numpy(y)


def load_svhn(root: Path, *, download: bool):
    folder = root / "svhn"
    files = _ensure_files("svhn", folder, [["train_32x32.mat"], ["test_32x32.mat"]], root=root, download=download)
    train, test = (ImageTensorDataset(*_read_svhn_mat(p)) for p in files)
    return train, test, DIGIT_CLASSES, BatchAugment(padding=4, flip=False)  # a mirrored digit is not a digit


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
            raise format_error(path, f"a broken or truncated gzip stream ({e})") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise format_error(path, f"bad IDX magic number {raw[:4].hex() or 'empty'} (expected 0000080{ndim})")
    if raw[2] != 0x08:
        raise format_error(path, f"IDX type code 0x{raw[2]:02x}, expected 0x08 (unsigned bytes)")
    if raw[3] != ndim:
        raise format_error(path, f"IDX file has {raw[3]} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise format_error(path, "truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims)) if dims else 0
    if len(raw) - header != expected:
        raise format_error(
            path, f"header says {dims} = {expected} bytes of data but the file holds {len(raw) - header} (truncated?)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_mnist_like(key: str, root: Path, *, download: bool):
    folder = root / _TORCHVISION_CLASS[key] / "raw"
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    files = _ensure_files(key, folder, [[s, f"{s}.gz"] for s in stems], root=root, download=download)

    def read(img_path: Path, lbl_path: Path) -> ImageTensorDataset:
        x = _read_idx(img_path, ndim=3)  # (N, H, W)
        y = _read_idx(lbl_path, ndim=1)  # (N,)
        if x.shape[0] != y.shape[0]:
            raise format_error(lbl_path, f"{y.shape[0]} labels for {x.shape[0]} images in {img_path.name}")
        if y.size and y.max() > 9:
            raise format_error(lbl_path, f"labels must lie in 0..9, found {y.max()}")
        images = torch.from_numpy(x.copy()).unsqueeze(1)  # (N, 1, H, W)
        return ImageTensorDataset(images, torch.from_numpy(y.astype(np.int64)))

    classes = DIGIT_CLASSES if key == "mnist" else _FASHION_CLASSES
    return read(files[0], files[1]), read(files[2], files[3]), classes, None

