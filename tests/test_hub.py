"""Given pairs (serobust.hub): members from timm files, their preprocessing, ImageNet-layout data, a whole study.

No weights are downloaded: timm models are built without weights (random init) and saved as local
weights files, then loaded through the ``[model] pairs`` form.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from conftest import tiny_study
from PIL import Image

timm = pytest.importorskip("timm")

from serobust.config import ConfigError, study_config_from_dict  # noqa: E402
from serobust.excitation.adapters import find_se_modules  # noqa: E402
from serobust.excitation.probe import ExcitationProbe  # noqa: E402
from serobust.hub import (  # noqa: E402
    MemberError,
    WeightsNotFoundError,
    load_member,
    parse_member,
    parse_pair,
    preprocess,
    resize_crop,
)

CLASSES = ("n01440764", "n01443537", "n01484850", "n01491361")


def _image(rng, c: int, h: int = 40, w: int = 48) -> Image.Image:
    img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    img[4 + c * 8: 10 + c * 8, 4: w - 8] = 230  # the class is a bright band at a class-specific row
    return Image.fromarray(img)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Class folders, the flat devkit form of the same images, and two timm weights files (4 classes)."""
    import scipy.io

    root = tmp_path_factory.mktemp("hub")
    rng = np.random.default_rng(0)
    flat = root / "flat"
    flat.mkdir()
    # devkit ids are not in sorted-wnid order: id 1 is the last wnid, so a wrong mapping shows
    ids = {w: i + 1 for i, w in enumerate(reversed(CLASSES))}
    truth = []
    n = 0
    for c, wnid in enumerate(CLASSES):
        (root / "val" / wnid).mkdir(parents=True)
        for i in range(10):
            img = _image(rng, c)
            img.save(root / "val" / wnid / f"{i}.png")
            n += 1
            img.save(flat / f"ILSVRC2012_val_{n:08d}.png")
            truth.append(ids[wnid])
    (flat / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(map(str, truth)) + "\n")
    synsets = np.zeros(len(CLASSES), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"),
                                            ("num_children", "O")])
    for k, (wnid, i) in enumerate(ids.items()):
        synsets[k] = (i, wnid, wnid, "", 0)
    scipy.io.savemat(flat / "meta.mat", {"synsets": synsets})
    torch.manual_seed(0)
    for name in ("resnet18", "seresnet18"):  # zero_init_last=False: untrained blocks must not output zeros
        torch.save(timm.create_model(name, num_classes=len(CLASSES), zero_init_last=False).state_dict(),
                   root / f"{name}.pt")
    return root


def _member(root, name, **kw):
    return {"source": f"timm:{name}", "weights": str(root / f"{name}.pt"), "input_size": 16, "crop_pct": 1.0, **kw}


def _pairs_study(root, data_path, name="hub"):
    raw = tiny_study()
    del raw["train"], raw["study"]["seeds"]
    raw["study"]["name"] = name
    pair = {"baseline": _member(root, "resnet18"), "se": _member(root, "seresnet18")}
    raw["model"] = {"pairs": [{"name": "p0", **pair}, {"name": "p1", **pair}]}
    raw["data"] = {"name": "imagenet", "path": str(data_path), "root": str(root / "cache"), "eval_size": 24,
                   "train_size": 12}
    raw["attacks"].update(black_box_size=12)
    raw["diagnostics"].update(size=8, steps=[1, 2], restarts=[1], seeds=1, square_queries=5)
    raw["probe"]["size"] = 12
    raw["mechanism"].update(size=12, steps=2)
    raw["detect"].update(size=16, fit_size=12, adaptive_steps=2)
    raw["report"]["references"] = [{"member": "se", "pair": "p1", "attack": "pgd", "eps": 0, "robust_acc": 0.8,
                                    "clean_acc": 0.8, "source": "a published top-1"}]
    return raw


# ---------------------------------------------------------------------------------------------- preprocessing

def test_preprocessing_matches_timms_own_transform():
    """resize+crop when decoding, mean/std inside the model == resolve_data_config + create_transform, 1e-6."""
    from timm.data import create_transform, resolve_data_config

    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (300, 260, 3), dtype=np.uint8))
    for name in ("resnet50.a1_in1k", "resnet50.a3_in1k", "seresnet18"):
        reference = create_transform(**resolve_data_config(pretrained_cfg=timm.get_pretrained_cfg(name).to_dict()))(img)
        spec = parse_member(f"timm:{name}", "m") if name != "seresnet18" else parse_member(
            {"source": "timm:seresnet18", "weights": "x.pt"}, "m")
        prep = preprocess(spec)
        x = resize_crop(img, prep.geometry()).float() / 255  # what the data set stores, in [0, 1]
        assert x.min() >= 0 and x.max() <= 1
        mean, std = torch.tensor(prep.mean).view(3, 1, 1), torch.tensor(prep.std).view(3, 1, 1)
        assert x.shape == reference.shape
        assert torch.allclose((x - mean) / std, reference, atol=1e-6, rtol=0), name


def test_preprocessing_of_a_torchvision_member_matches_its_weights_transforms():
    import torchvision

    rng = np.random.default_rng(2)
    img = Image.fromarray(rng.integers(0, 256, (250, 310, 3), dtype=np.uint8))
    reference = torchvision.models.get_model_weights("regnet_y_400mf").DEFAULT.transforms()(img)
    prep = preprocess(parse_member("torchvision:regnet_y_400mf", "m"))
    x = resize_crop(img, prep.geometry()).float() / 255
    mean, std = torch.tensor(prep.mean).view(3, 1, 1), torch.tensor(prep.std).view(3, 1, 1)
    assert torch.allclose((x - mean) / std, reference, atol=1e-6, rtol=0)


def test_a_pair_with_different_geometries_is_refused_naming_the_fix():
    with pytest.raises(MemberError, match="input_size, crop_pct and interpolation"):
        parse_pair({"baseline": "timm:resnet50.a1_in1k", "se": "timm:seresnet50.a3_in1k"}, "model.pairs[0]")


# ---------------------------------------------------------------------------------------------- the probe on timm

def test_probe_finds_every_se_block_of_seresnet50_and_none_in_resnet50():
    from serobust.excitation.adapters import NoSEModuleError

    se = timm.create_model("seresnet50").eval()
    blocks = find_se_modules(se)
    assert len(blocks) == 16 == sum(len(getattr(se, f"layer{i}")) for i in range(1, 5))
    with pytest.raises(NoSEModuleError):
        find_se_modules(timm.create_model("resnet50"))
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        plain = se(x)
        with ExcitationProbe(se) as probe:
            probed = se(x)
    assert torch.equal(plain, probed)
    records = probe.records()
    assert len(records) == 16
    first = records[blocks[0].name]
    assert first["s"].shape == (2, 256) and ((first["s"] > 0) & (first["s"] < 1)).all()


def test_python_api_loads_a_pair_and_its_preprocessing(files):
    import serobust as sr

    base, se, prep = sr.load_pair(_member(files, "resnet18"), _member(files, "seresnet18"), num_classes=4)
    assert prep.size == 16 and prep.resize == 16 and prep.mean == (0.485, 0.456, 0.406)
    assert len(find_se_modules(se)) == 8 and not base.training
    x = torch.rand(3, 3, 16, 16)
    reference = timm.create_model("resnet18", num_classes=4).eval()
    reference.load_state_dict(torch.load(files / "resnet18.pt", weights_only=True))
    mean, std = torch.tensor(prep.mean).view(1, 3, 1, 1), torch.tensor(prep.std).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(base(x), reference((x - mean) / std), atol=1e-6)
    bundle = sr.load_dataset("imagenet", path=files / "val", root=files / "cache", preprocess=prep.geometry(),
                             eval_size=8, train_size=8)
    assert bundle.image_size == (16, 16) and len(bundle.test) == 8 and bundle.num_classes == 4


def test_pretrained_weights_offline_from_weights_dir_through_timms_loader(tmp_path):
    """<weights_dir>/timm/<name>.safetensors is read by timm's own pretrained loader (no network)."""
    from safetensors.torch import save_file

    from serobust.hub import missing_weights

    spec = parse_member("timm:resnet18.a1_in1k", "m")
    assert str(tmp_path / "timm" / "resnet18.a1_in1k.safetensors") in missing_weights(spec, str(tmp_path))
    torch.manual_seed(3)
    source = timm.create_model("resnet18").eval()
    (tmp_path / "timm").mkdir()
    save_file(source.state_dict(), tmp_path / "timm" / "resnet18.a1_in1k.safetensors")
    assert missing_weights(spec, str(tmp_path)) is None
    model = load_member(spec, num_classes=1000, weights_dir=str(tmp_path), download=False)
    x = torch.rand(2, 3, 64, 64)
    prep = preprocess(spec)
    mean, std = torch.tensor(prep.mean).view(1, 3, 1, 1), torch.tensor(prep.std).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), source((x - mean) / std), atol=1e-5)


def test_a_torchscript_baseline_with_its_preprocessing_from_the_member_table(files, tmp_path):
    net = timm.create_model("resnet18", num_classes=4).eval()
    net.load_state_dict(torch.load(files / "resnet18.pt", weights_only=True))
    torch.jit.save(torch.jit.trace(net, torch.rand(1, 3, 16, 16)), tmp_path / "base.pt")
    table = {"source": f"torchscript:{tmp_path / 'base.pt'}", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
             "input_size": 16}
    model = load_member(parse_member(table, "m"), num_classes=4)
    assert preprocess(parse_member(table, "m")).geometry()["size"] == 16
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), net((x - 0.5) / 0.25), atol=1e-5)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(MemberError, match="torch.jit.save"):
        load_member(parse_member({**table, "source": f"torchscript:{tmp_path / 'junk.pt'}"}, "m"), num_classes=4)


def test_pytorchcv_cifar_members_from_weights_files(tmp_path):
    """pytorchcv's CIFAR-10 ResNet-20 and SE-ResNet-20: its SEBlock is found, its CIFAR statistics go inside."""
    pytest.importorskip("pytorchcv")
    from pytorchcv.model_provider import get_model

    for name in ("resnet20_cifar10", "seresnet20_cifar10"):
        torch.save(get_model(name, pretrained=False).state_dict(), tmp_path / f"{name}.pt")
    base, se, prep = __import__("serobust").load_pair(
        {"source": "pytorchcv:resnet20_cifar10", "weights": str(tmp_path / "resnet20_cifar10.pt")},
        {"source": "pytorchcv:seresnet20_cifar10", "weights": str(tmp_path / "seresnet20_cifar10.pt")}, num_classes=10)
    assert prep.size is None and prep.mean == (0.4914, 0.4822, 0.4465)
    assert len(find_se_modules(se)) == 9  # one per residual block of ResNet-20 (3 stages x 3)
    with pytest.raises(MemberError, match="100 classes|10 classes"):
        load_member(parse_member({"source": "pytorchcv:resnet20_cifar10",
                                  "weights": str(tmp_path / "resnet20_cifar10.pt")}, "m"), num_classes=100)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad(), ExcitationProbe(se):
        probed = se(x)
    with torch.no_grad():
        assert torch.equal(probed, se(x)) and base(x).shape == (2, 10)


# ---------------------------------------------------------------------------------------------- errors

def test_member_errors_are_one_line_and_name_the_fix(files, tmp_path):
    spec = parse_member(_member(files, "resnet18"), "m")
    model = load_member(spec, num_classes=4)
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 4)
    cases = [
        (lambda: load_member(parse_member(_member(files, "resnet18"), "m"), num_classes=4, se=True),
         MemberError, "no SE module"),
        (lambda: load_member(parse_member(_member(files, "resnet18"), "m"), num_classes=10),
         MemberError, "classes"),
        (lambda: load_member(parse_member({**_member(files, "resnet18"), "source": "timm:resnet34"}, "m"),
                             num_classes=4), MemberError, "architecture"),
        (lambda: load_member(parse_member({**_member(files, "resnet18"), "weights": str(tmp_path / "no.pt")}, "m"),
                             num_classes=4, download=False), WeightsNotFoundError, "no.pt"),
        (lambda: load_member(parse_member("timm:resnet50.a1_in1k", "m"), num_classes=1000, download=False,
                             weights_dir=str(tmp_path / "w")), WeightsNotFoundError,
         r"timm/resnet50\.a1_in1k\.safetensors"),
        (lambda: parse_member("timm:resnet5O", "model.pairs[0].se"), MemberError, r"model\.pairs\[0\]\.se"),
        (lambda: parse_member("keras:resnet50", "m"), MemberError, "timm"),
    ]
    (tmp_path / "bad.pt").write_bytes(b"not a state dict")
    from serobust.io import CheckpointError

    cases.append((lambda: load_member(parse_member({**_member(files, "resnet18"), "weights": str(tmp_path / "bad.pt")},
                                                   "m"), num_classes=4), CheckpointError, "state_dict"))
    for fn, error, pattern in cases:
        with pytest.raises(error, match=pattern) as info:
            fn()
        assert "\n" not in str(info.value)


def test_config_refusals_for_pairs(files):
    raw = _pairs_study(files, files / "val")
    for change, pattern in (
        (lambda r: r["study"].update(seeds=[0, 1]), "study.seeds"),
        (lambda r: r.update(train={"epochs": 1}), r"\[train\]"),
        (lambda r: r["model"].update(arch="cnn"), "model.arch"),
        (lambda r: r["model"]["pairs"][0].update(se=_member(files, "resnet18", source="torchscript:x.pt")), "TorchScript"),
        (lambda r: r["model"]["pairs"][1].update(name="p0"), "repeats"),
    ):
        bad = copy.deepcopy(raw)
        change(bad)
        with pytest.raises(ConfigError, match=pattern):
            study_config_from_dict(bad)
    cfg = study_config_from_dict(raw)
    assert cfg.study.seeds == (0, 1) and [p.name for p in cfg.model.pair_specs()] == ["p0", "p1"]


def test_check_warns_about_missing_weights_and_run_refuses(files, tmp_path, capsys):
    from serobust.cli import main

    raw = _pairs_study(files, files / "val")
    raw["model"]["pairs"][1]["se"] = _member(files, "seresnet18", weights=str(tmp_path / "missing.pt"))
    path = tmp_path / "study.toml"
    path.write_text(_toml(raw))
    assert main(["check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["model"]["pairs"]
    assert err.count("warning") == 1 and str(tmp_path / "missing.pt") in err
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err
    assert "missing.pt" in err and len(err.strip().splitlines()) == 1


def test_check_refuses_a_baseline_given_as_the_se_member(files, tmp_path, capsys):
    from serobust.cli import main

    raw = _pairs_study(files, files / "val")
    raw["model"]["pairs"][0]["se"] = _member(files, "resnet18")
    path = tmp_path / "study.toml"
    path.write_text(_toml(raw))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and r"model.pairs[0].se = timm:resnet18 has no SE module" in err


def _toml(raw: dict) -> str:
    """A minimal TOML writer for the test's config (tables of scalars, lists and inline tables)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"

    return "\n".join(f"[{s}]\n" + "\n".join(f"{k} = {value(v)}" for k, v in t.items()) + "\n"
                     for s, t in raw.items())


# ---------------------------------------------------------------------------------------------- data

def test_class_folders_and_the_flat_devkit_form_give_the_same_labelled_images(files):
    from serobust.data.imagenet import list_imagenet_val, load_imagenet

    f1, y1, c1, layout1 = list_imagenet_val(files / "val")
    f2, y2, c2, layout2 = list_imagenet_val(files / "flat")
    assert (layout1, layout2) == ("class folders", "flat+devkit") and c1 == c2 == list(CLASSES)
    # the flat files were written in class-folder order: the devkit ids must map back to the same labels
    assert y1 == y2
    geometry = preprocess(parse_member(_member(files, "resnet18"), "m")).geometry()
    fit, test, classes, _ = load_imagenet(files / "flat", files / "cache", geometry=geometry, eval_size=8, fit_size=4)
    assert test.images.shape == (8, 3, 16, 16) and torch.bincount(test.labels).tolist() == [2, 2, 2, 2]
    assert len(fit) == 4 and classes == CLASSES
    again = load_imagenet(files / "val", files / "cache", geometry=geometry, eval_size=8, fit_size=4)[1]
    assert torch.equal(again.labels, test.labels)


def test_missing_imagenet_folder_says_where_to_put_it(tmp_path):
    from serobust.data.imagenet import list_imagenet_val
    from serobust.errors import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError, match="ILSVRC2012_validation_ground_truth.txt"):
        list_imagenet_val(tmp_path / "nowhere")
    (tmp_path / "flat").mkdir()
    _image(np.random.default_rng(0), 0).save(tmp_path / "flat" / "ILSVRC2012_val_00000001.png")
    with pytest.raises(DatasetNotFoundError, match="meta.mat"):
        list_imagenet_val(tmp_path / "flat")


# ---------------------------------------------------------------------------------------------- a whole study

@pytest.fixture(scope="module")
def study(files, tmp_path_factory):
    from serobust.pipeline import run_study

    out = tmp_path_factory.mktemp("hub_study")
    cfg = study_config_from_dict(_pairs_study(files, files / "flat"))
    return cfg, out, run_study(cfg, out_dir=out, progress=False)


def test_a_study_of_given_pairs_runs_end_to_end(study, files):
    import pandas as pd

    cfg, out, results = study
    assert (out / "index.html").is_file() and (out / "results.json").is_file()
    meta = results["meta"]
    assert meta["members"] == ["baseline", "se"] and meta["seeds"] == [0, 1]
    assert [p["name"] for p in meta["pairs"]] == ["p0", "p1"]
    assert meta["pairs"][0]["se"]["se_blocks"] == 8 and meta["pairs"][0]["baseline"]["se_blocks"] == 0
    se = timm.create_model("seresnet18", num_classes=4)
    assert meta["params"]["se"] == sum(q.numel() for q in se.parameters())
    assert meta["dataset"]["image_size"] == [16, 16] and meta["dataset"]["eval"] == 24
    assert "not initial weights" in results["verdict"]["se"]["design"]
    assert results["verdict"]["se"]["outcome"] in {"supported", "not supported", "inconclusive", "opposite"}
    page = (out / "index.html").read_text()
    assert "share a published training recipe" in page and "seed 1 = p1" in page
    for table in ("robust", "mcnemar", "shift", "detection", "members"):
        assert (out / "tables" / f"{table}.csv").is_file(), table
    assert not list((out / "tasks").glob("train/*"))  # nothing was trained
    refs = pd.read_csv(out / "tables" / "references.csv")
    se_p1 = pd.read_csv(out / "tables" / "robust.csv").query("model == 'se' and seed == 1 and eps == 0")
    assert refs.loc[0, "pair"] == "p1" and refs.loc[0, "published_clean_acc"] == 0.8
    assert refs.loc[0, "measured_clean_acc"] == pytest.approx(se_p1["clean_acc"].mean())
    assert "a published top-1" in page
    # clean accuracy recomputed independently: the saved weights, timm's own model, the same images
    robust = pd.read_csv(out / "tables" / "robust.csv")
    measured = robust[(robust["model"] == "baseline") & (robust["eps"] == 0) & (robust["seed"] == 0)]["clean_acc"]
    from serobust.data.imagenet import load_imagenet

    geometry = preprocess(parse_member(_member(files, "resnet18"), "m")).geometry()
    x = load_imagenet(files / "flat", files / "cache", geometry=geometry, eval_size=24, fit_size=12)[1]
    xs, ys = x.tensors()
    net = timm.create_model("resnet18", num_classes=4).eval()
    net.load_state_dict(torch.load(files / "resnet18.pt", weights_only=True))
    prep = preprocess(parse_member(_member(files, "resnet18"), "m"))
    with torch.no_grad():
        logits = net((xs - torch.tensor(prep.mean).view(1, 3, 1, 1)) / torch.tensor(prep.std).view(1, 3, 1, 1))
    expected = (logits.argmax(1) == ys).float().mean().item()
    assert math.isclose(float(measured.iloc[0]), expected, abs_tol=1e-9)


def test_the_second_run_reuses_every_task(study):
    from serobust.pipeline import run_study

    cfg, out, first = study
    again = run_study(cfg, out_dir=out, progress=False)
    assert json.dumps(again["robust_stats"]) == json.dumps(first["robust_stats"])  # NaN-safe equality
