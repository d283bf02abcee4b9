"""ImageNet-style evaluation data: the validation set's layout, a stratified subset, decoded at a model's size.

Two layouts of ``path`` are read (:func:`list_imagenet_val`):

- **class folders**: ``path/<class>/<image>`` (``val/n01440764/ILSVRC2012_val_00000293.JPEG``, as
  torchvision's ``ImageNet`` and most tools arrange it); classes are the sorted folder names, so with
  the 1,000 WordNet ids they are indexed as timm and torchvision index them;
- **the flat folder with the devkit labels**: ``path/ILSVRC2012_val_*.JPEG`` with
  ``ILSVRC2012_validation_ground_truth.txt`` and ``meta.mat`` (from ``ILSVRC2012_devkit_t12.tar.gz``)
  either in ``path`` or in ``path/ILSVRC2012_devkit_t12/data/``; the devkit's ids are mapped to the
  sorted WordNet ids, the index every ImageNet model uses. Kaggle's ``LOC_val_solution.csv`` (in ``path``
  or its parent) is read instead when the devkit files are absent.

Only the chosen images are decoded: a stratified, seeded subset of ``eval_size`` images (the same for
every member: the draw depends only on the labels and the seed), plus a disjoint one of ``fit_size`` for
the detector's statistics, each resized and center-cropped to the members' input geometry and cached
as uint8 under ``root/imagenet-cache/``.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import time
import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from ..errors import DatasetFormatError, DatasetNotFoundError
from ..runtime import available_cores
from .imagefolder import IMAGE_EXTENSIONS, cached_images
from .tensors import ImageTensorDataset, stratified_indices

__all__ = ["list_imagenet_val", "load_imagenet"]

log = logging.getLogger(__name__)

_CACHE_VERSION = 1
_GT = "ILSVRC2012_validation_ground_truth.txt"
_WHERE = ("ImageNet validation images not found at {path}: put them there as class folders "
          "({path}/<wnid>/<image>.JPEG) or flat ({path}/ILSVRC2012_val_00000001.JPEG ...) with "
          f"{_GT} and meta.mat from the devkit (ILSVRC2012_devkit_t12/data/) in the same folder, and set "
          "[data] path to that folder")


def _images(folder: Path) -> list[Path]:
    return sorted(Path(e.path) for e in os.scandir(folder)
                  if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS))


def _devkit_file(path: Path, name: str) -> Path | None:
    for folder in (path, path / "ILSVRC2012_devkit_t12" / "data", path.parent / "ILSVRC2012_devkit_t12" / "data"):
        if (folder / name).is_file():
            return folder / name
    return None


def _devkit_labels(path: Path, files: list[Path], gt: Path, meta: Path) -> tuple[list[str], list[int]]:
    """The devkit form: ground truth ids (1-based, in file-name order) -> WordNet ids -> sorted index."""
    import scipy.io

    try:
        synsets = scipy.io.loadmat(str(meta), squeeze_me=True)["synsets"]
        rows = [(int(s[0]), str(s[1]), int(s[4])) for s in synsets]  # ILSVRC2012_ID, WNID, ..., num_children
    except (OSError, KeyError, ValueError, IndexError, TypeError) as e:
        raise DatasetFormatError(f"{meta} is not the devkit's meta.mat (synsets with ILSVRC2012_ID, WNID, "
                                 f"num_children): {e}; take it from ILSVRC2012_devkit_t12/data/") from None
    id_to_wnid = {i: w for i, w, children in rows if children == 0}
    classes = sorted(id_to_wnid.values())
    index = {w: k for k, w in enumerate(classes)}
    try:
        ids = [int(line) for line in gt.read_text().split()]
    except ValueError as e:
        raise DatasetFormatError(f"{gt} must hold one class id per line: {e}") from None
    labels = []
    for f in files:
        try:  # ILSVRC2012_val_00000001.JPEG -> line 1
            n = int(f.stem.rsplit("_", 1)[-1])
            labels.append(index[id_to_wnid[ids[n - 1]]])
        except (ValueError, IndexError, KeyError):
            raise DatasetFormatError(f"{f.name} has no label in {gt} (its number must be a line of the file, "
                                     "with an id of meta.mat): use the devkit that matches these images") from None
    return classes, labels


def _csv_labels(files: list[Path], table: Path) -> tuple[list[str], list[int]]:
    """Kaggle's LOC_val_solution.csv: ImageId, PredictionString (its first word is the WordNet id)."""
    try:
        with table.open(newline="") as f:
            wnid = {row["ImageId"]: row["PredictionString"].split()[0] for row in csv.DictReader(f)}
    except (KeyError, IndexError, csv.Error) as e:
        raise DatasetFormatError(f"{table} must have columns ImageId, PredictionString ({e})") from None
    classes = sorted(set(wnid.values()))
    index = {w: k for k, w in enumerate(classes)}
    missing = [f.name for f in files if f.stem not in wnid]
    if missing:
        raise DatasetFormatError(f"{len(missing)} images (e.g. {missing[0]}) have no row in {table}")
    return classes, [index[wnid[f.stem]] for f in files]


def list_imagenet_val(path: str | os.PathLike) -> tuple[list[Path], list[int], list[str], str]:
    """``(files, labels, classes, layout)`` of an ImageNet-style validation folder (see the module text).

    Raises:
        DatasetNotFoundError: no images, or a flat folder without its labels (the message says where to put them).
        DatasetFormatError: a label file that does not match the images.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise DatasetNotFoundError(_WHERE.format(path=path))
    subdirs = sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith(".")
                     and e.name != "ILSVRC2012_devkit_t12")
    flat = _images(path)
    if flat:
        gt, meta = _devkit_file(path, _GT), _devkit_file(path, "meta.mat")
        if gt is not None and meta is not None:
            classes, labels = _devkit_labels(path, flat, gt, meta)
            return flat, labels, classes, "flat+devkit"
        table = next((p for p in (path / "LOC_val_solution.csv", path.parent / "LOC_val_solution.csv")
                      if p.is_file()), None)
        if table is not None:
            classes, labels = _csv_labels(flat, table)
            return flat, labels, classes, "flat+LOC_val_solution.csv"
        raise DatasetNotFoundError(f"{path} holds {len(flat)} images but no labels: put {_GT} and meta.mat "
                                   f"(ILSVRC2012_devkit_t12/data/ of the devkit) in {path}, or sort the images "
                                   "into class folders")
    files, labels = [], []
    for k, name in enumerate(subdirs):
        found = _images(path / name)
        files += found
        labels += [k] * len(found)
    if not files:
        raise DatasetNotFoundError(_WHERE.format(path=path))
    empty = [name for k, name in enumerate(subdirs) if k not in set(labels)]
    if empty:
        warnings.warn(f"{path}: class folders without images: {empty[:3]}", stacklevel=2)
    return files, labels, subdirs, "class folders"


def _decode(files: list[Path], geometry: Mapping[str, Any]) -> torch.Tensor:
    """uint8 (N, 3, S, S): each image resized and center-cropped (:func:`serobust.hub.resize_crop`)."""
    from PIL import Image, UnidentifiedImageError

    from ..hub.preprocessing import resize_crop

    def one(f: Path) -> torch.Tensor:
        try:
            with Image.open(f) as im:
                return resize_crop(im, geometry)
        except (UnidentifiedImageError, OSError) as e:
            raise DatasetFormatError(f"{f} is not a decodable image ({e}); remove or replace it") from None

    with ThreadPoolExecutor(max_workers=min(8, available_cores())) as pool:
        images = list(pool.map(one, files))
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) > 1:
        raise DatasetFormatError(f"images decode to different sizes {sorted(shapes)[:3]}: the members' preprocessing "
                                 "has no input size; set input_size on the members")
    return torch.stack(images)


def load_imagenet(path: str | os.PathLike, root: Path, *, geometry: Mapping[str, Any], eval_size: int = 1000,
                  fit_size: int = 0) -> tuple[ImageTensorDataset, ImageTensorDataset, tuple[str, ...], str]:
    """``(fit, eval, classes, layout)``: a stratified seeded subset of ``eval_size`` images (0 = all) and a
    disjoint one of ``fit_size`` (0 = as many as eval, at most what is left), decoded at ``geometry``.

    The subsets depend only on the labels (seed 0 for eval, 1 for fit), so every member sees the same images;
    the decoded tensors are cached under ``root/imagenet-cache/`` keyed by the files, the subset and the geometry.
    """
    files, labels, classes, layout = list_imagenet_val(path)
    y = torch.tensor(labels, dtype=torch.int64)
    chosen = stratified_indices(y, eval_size, seed=0) if eval_size else torch.arange(len(y))
    rest = torch.ones(len(y), dtype=torch.bool)
    rest[chosen] = False
    rest_idx = torch.nonzero(rest).flatten()
    n_fit = min(fit_size or len(chosen), len(rest_idx))
    fit = rest_idx[stratified_indices(y[rest_idx], n_fit, seed=1)] if n_fit else rest_idx[:0]
    if n_fit == 0:
        raise DatasetNotFoundError(f"{path}: all {len(y)} images are in the eval subset (data.eval_size = {eval_size}) "
                                   "and none are left for the detector's statistics; lower data.eval_size or add images")
    digest = hashlib.sha256(f"v{_CACHE_VERSION}\n{Path(path).resolve()}\n{sorted(geometry.items())}\n".encode())
    for part, idx in (("eval", chosen), ("fit", fit)):
        for i in idx.tolist():
            st = files[i].stat()
            digest.update(f"{part}\t{files[i].name}\t{labels[i]}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    cache = root / "imagenet-cache" / f"{digest.hexdigest()[:24]}.pt"

    def decode() -> dict[str, torch.Tensor]:
        t0 = time.perf_counter()
        both = _decode([files[i] for i in torch.cat([chosen, fit]).tolist()], geometry)
        log.info("decoded %d images of %s (%s) in %.1f s", len(both), path, layout, time.perf_counter() - t0)
        return {"eval": both[: len(chosen)].clone(), "fit": both[len(chosen):].clone()}

    images = cached_images(cache, "imagenet-cache", decode, stacklevel=2)
    return (ImageTensorDataset(images["fit"], y[fit]), ImageTensorDataset(images["eval"], y[chosen]),
            tuple(classes), layout)
