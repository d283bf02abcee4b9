"""Image folders (``path/<train|test|val>/<class>/<image>``): decoded once, cached as a tensor file.

The cache is keyed by the folder, every file's name, size and modification time, so an edited tree is
decoded again; it is written atomically and loaded with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DatasetFormatError, DatasetNotFoundError
from ..io import CheckpointError, atomic_torch_save, load_checkpoint
from ..runtime import available_cores
from .tensors import BatchAugment, ImageTensorDataset
from .torchvision_files import format_error

__all__ = ["load_imagefolder", "IMAGE_EXTENSIONS"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
_GRAY_MODES = ("1", "L", "LA")
_CACHE_VERSION = 1  # bump when the cache layout changes

def _walk_class(folder: str) -> tuple[list[Path], list[str]]:
    """Image files under one class folder, top-down in name order (as ``os.walk`` lists them), and the
    links it did not follow.

    A symlink is followed only when its real path stays inside the class folder, and every directory is
    entered once, by ``(st_dev, st_ino)``: a link to another class's folder cannot mislabel its images and a
    link loop cannot multiply them. A file reached twice (two links, hard links) is listed once.
    """
    top = os.path.realpath(folder)
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    files: list[Path] = []
    skipped: list[str] = []

    def inside(path: str) -> bool:
        real = os.path.realpath(path)
        return real == top or real.startswith(top.rstrip(os.sep) + os.sep)

    def visit(dirpath: str) -> None:
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen_dirs:
            skipped.append(dirpath)
            return
        seen_dirs.add((st.st_dev, st.st_ino))
        subdirs = []
        for entry in sorted(os.scandir(dirpath), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            if entry.is_symlink() and not inside(entry.path):
                skipped.append(entry.path)
                continue
            try:
                if entry.is_dir():
                    subdirs.append(entry.path)
                elif entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS):
                    fst = os.stat(entry.path)
                    if (fst.st_dev, fst.st_ino) not in seen_files:
                        seen_files.add((fst.st_dev, fst.st_ino))
                        files.append(Path(entry.path))
            except OSError:  # a dangling link
                skipped.append(entry.path)
        for sub in subdirs:
            visit(sub)

    visit(folder)
    return files, skipped


def _list_split(split_dir: Path) -> dict[str, list[Path]]:
    """class name -> image files under ``split_dir/<class>/`` (recursively, hidden entries skipped, links
    followed only inside their class folder, see :func:`_walk_class`)."""
    out: dict[str, list[Path]] = {}
    skipped: list[str] = []
    for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        out[entry.name], left = _walk_class(entry.path)
        skipped += left
    if skipped:
        logger.warning("%s: %d link(s) not followed (they lead out of their class folder, into a folder already "
                       "read, or nowhere), e.g. %s", split_dir, len(skipped), skipped[0])
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
        raise format_error(files[0], f"not a decodable image ({e})") from e
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
                raise format_error(f, f"not a decodable image ({e})") from e

    chunk = 512
    workers = min(8, available_cores())
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(work, s, min(s + chunk, n)) for s in range(0, n, chunk)]
        for fut in futures:
            fut.result()  # re-raises the first error
    if gray.all():
        return torch.from_numpy(out[..., 0].copy()).unsqueeze(1)  # (N, 1, H, W)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()  # (N, H, W, 3) -> (N, 3, H, W)


def _test_split(path: Path) -> str:
    """The name of the folder's test split (``test``, else ``val``), after checking the folder and its ``train``."""
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
    return test_name


def _classes(path: Path, test_name: str, listing: dict[str, dict[str, list[Path]]]) -> tuple[str, ...]:
    """The classes (those with training images, sorted); an error for a test-only class or fewer than two."""
    classes = tuple(sorted(c for c, found in listing["train"].items() if found))
    test_only = sorted(c for c, found in listing["test"].items() if found and c not in classes)
    if test_only:
        raise DatasetFormatError(
            f"{path / test_name / test_only[0]} holds images but {path / 'train' / test_only[0]} has none: the model "
            f"could never predict class {test_only[0]!r}; add its training images or remove its {test_name} folder"
        )
    if len(classes) < 2 and any(listing["train"].values()):
        raise DatasetFormatError(
            f"{path / 'train'} has images of {len(classes)} class ({', '.join(classes)}); a classifier needs at "
            "least two: add one folder of images per class (train/<class>/ and test/<class>/)"
        )
    if set(classes) != {c for c, found in listing["test"].items() if found}:
        warnings.warn(f"{path}: some classes have no {test_name} images; their accuracy is not measured",
                      stacklevel=4)  # the caller of load_imagefolder
    return classes


def _files_and_labels(path: Path, test_name: str, classes: tuple[str, ...],
                      listing: dict[str, dict[str, list[Path]]]) -> tuple[dict[str, list[Path]], dict[str, list[int]]]:
    """Per split, the image files in class order and their class indices; an error for an empty split."""
    files: dict[str, list[Path]] = {}
    labels: dict[str, list[int]] = {}
    for split, by_class in listing.items():
        files[split] = [f for c in classes for f in by_class.get(c, [])]
        labels[split] = [k for k, c in enumerate(classes) for _ in by_class.get(c, [])]
        if not files[split]:
            folder = path / ("train" if split == "train" else test_name)
            raise DatasetNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {folder}/<class>/")
    return files, labels


def _cache_path(path: Path, root: Path, files: dict[str, list[Path]]) -> Path:
    """The decoded-image cache file, keyed by the folder and every file's name, size and modification time."""
    digest = hashlib.sha256(f"v{_CACHE_VERSION}\n{path.resolve()}\n".encode())
    for split in ("train", "test"):
        for f in files[split]:
            st = f.stat()
            digest.update(f"{split}\t{f.relative_to(path)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return root / "imagefolder-cache" / f"{digest.hexdigest()[:24]}.pt"


def cached_images(cache: Path, kind: str, decode: Callable[[], dict[str, Any]], *, stacklevel: int) -> dict:
    """The payload of the cache file ``cache`` when it is readable, else ``decode()`` written there as
    ``{"format": "serobust", "kind": kind, ...}`` (best effort: a write that fails warns, at ``stacklevel``
    counted from the caller, and the next load decodes again). Shared by the image folder and ImageNet loaders."""
    if cache.is_file():
        try:
            payload = load_checkpoint(cache, kind=kind)
            logger.info("loaded decoded images from cache %s", cache)
            return payload
        except CheckpointError as e:
            logger.warning("ignoring unreadable image cache %s (%s); decoding again", cache, e)
    payload = {"format": "serobust", "kind": kind, **decode()}
    try:
        atomic_torch_save(payload, cache)
        logger.info("cached decoded images to %s", cache)
    except OSError as e:
        warnings.warn(f"could not write the image cache {cache} ({e}); the next load decodes again",
                      stacklevel=stacklevel + 1)
    return payload


def _images(path: Path, cache_path: Path, files: dict[str, list[Path]],
            classes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Both splits' images: from the cache when readable, else decoded (and cached, best effort)."""
    def decode() -> dict[str, Any]:
        t0 = time.perf_counter()
        n_train = len(files["train"])
        both = _decode_images(files["train"] + files["test"])  # one pool, one common size for both splits
        logger.info("decoded %d images from %s in %.1f s", len(both), path, time.perf_counter() - t0)
        return {"path": str(path.resolve()), "classes": list(classes),
                "train_images": both[:n_train].clone(), "test_images": both[n_train:].clone()}

    payload = cached_images(cache_path, "imagefolder-cache", decode, stacklevel=4)  # the caller of load_imagefolder
    return {"train": payload["train_images"], "test": payload["test_images"]}


def load_imagefolder(path: Path, root: Path):
    """An image-folder dataset (``train/<class>/<image>`` and ``test/`` or ``val/``): (train, test, classes,
    augmentation), the decoded images cached under ``root`` (named steps: :func:`_test_split`,
    :func:`_classes`, :func:`_files_and_labels`, :func:`_cache_path`, :func:`_images`)."""
    test_name = _test_split(path)
    listing = {split: _list_split(path / d) for split, d in (("train", "train"), ("test", test_name))}
    classes = _classes(path, test_name, listing)
    files, labels = _files_and_labels(path, test_name, classes, listing)
    images = _images(path, _cache_path(path, root, files), files, classes)
    train = ImageTensorDataset(images["train"], torch.tensor(labels["train"], dtype=torch.int64))
    test = ImageTensorDataset(images["test"], torch.tensor(labels["test"], dtype=torch.int64))
    h, w = train.shape[1:]
    return train, test, classes, BatchAugment(padding=max(min(h, w) // 8, 0), flip=True)
