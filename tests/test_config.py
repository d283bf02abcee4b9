"""Study configs: the bundled TOML files load; bad keys, types and values name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from serobust.config import ConfigError, load_study_config, study_config_from_dict

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "experiments").glob("*.toml")))
def test_bundled_configs_load(name):
    cfg = load_study_config(ROOT / "experiments" / name)
    assert len(cfg.study.seeds) >= 3
    assert cfg.attacks.main in [a["name"] for a in cfg.attacks.white_box] or (
        cfg.attacks.main == "autoattack" and cfg.autoattack.enabled)


def test_default_study_meets_the_brief():
    cfg = load_study_config(ROOT / "experiments" / "mnist.toml")
    assert cfg.data.name == "mnist5k" and cfg.model.arch == "cnn"
    assert len([e for e in cfg.attacks.eps]) >= 6 and max(cfg.attacks.eps) == pytest.approx(0.3)
    assert {a["name"] for a in cfg.attacks.white_box} >= {"fgsm", "pgd"}
    assert {a["name"] for a in cfg.attacks.black_box} == {"square"}
    assert cfg.probe.enabled and cfg.mechanism.enabled and cfg.probe.controls


def test_at_config_trains_adversarially():
    cfg = load_study_config(ROOT / "experiments" / "cifar10_resnet20_at.toml")
    assert cfg.train.adversarial == "pgd" and cfg.train.adv_eps == pytest.approx(8 / 255)


@pytest.mark.parametrize("raw,match", [
    ({"study": {"name": "x", "seedz": [1]}}, r"unknown key study\.seedz \(did you mean 'seeds'\?\)"),
    ({"study": {"name": "x"}, "train": {"epochs": "2"}}, r"train\.epochs = '2': expected an integer"),
    ({"study": {"name": "x"}, "attacks": {"eps": [0.1, 1.5]}}, r"attacks\.eps\[1\] must be <= 1"),
    ({"study": {"name": "x"}, "attacks": {"eps": [-0.1]}}, r"attacks\.eps\[0\] must be >= 0"),
    ({"study": {"name": "x"}, "model": {"arch": "vgg"}}, r"model\.arch = 'vgg': allowed cnn"),
    ({"study": {"name": "x"}, "train": {"lr": -1.0}}, r"TrainConfig\.lr"),
    ({"study": {"name": "x"}, "probe": {"controls": ["uniform"]}}, r"probe\.controls"),
    ({"study": {"name": "x"}, "attacks": {"main": "apgd_ce"}}, r"attacks\.main = 'apgd_ce'"),
    ({"study": {"name": "x"}, "data": {"name": "imagefolder"}}, r"data\.path is required"),
    ({"study": {"name": "x"}, "model": {"reductions": [4, 4]}}, r"model\.reductions"),
    ({"study": {"name": "x"}, "stats": {"confidence": 1.5}}, r"stats\.confidence"),
    ({"study": {"name": "x"}, "detect": {"adaptive_weights": []}}, r"detect\.adaptive_weights"),
    ({"study": {"name": "x"}, "detect": {"adaptive_weights": [0, -1]}}, r"detect\.adaptive_weights"),
    ({"study": {"name": "x/y"}}, r"study\.name"),
    ({"study": {"name": "x"}, "plots": {}}, r"unknown section\(s\) plots"),
    ({"study": {}}, r"study\.name is required"),
    ({"study": {"name": "x"}, "study_extra": 1}, r"unknown section"),
])
def test_bad_configs_name_the_key(raw, match):
    with pytest.raises(ConfigError, match=match):
        study_config_from_dict(raw)


def test_fractions_and_relative_paths(tmp_path):
    (tmp_path / "trees").mkdir()
    f = tmp_path / "s.toml"
    f.write_text('[study]\nname = "s"\n[data]\nname = "imagefolder"\npath = "trees"\n'
                 '[attacks]\neps = [0, "8/255"]\n[train]\nadv_eps = "4/255"\nadversarial = "none"\n')
    cfg = load_study_config(f)
    assert cfg.attacks.eps == (0.0, 8 / 255) and cfg.train.adv_eps == pytest.approx(4 / 255)
    assert cfg.train.adversarial is None
    assert Path(cfg.data.path) == (tmp_path / "trees").resolve()


def test_invalid_toml_and_missing_file(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[study\nname=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_study_config(f)
    with pytest.raises(ConfigError, match="experiments/"):
        load_study_config(tmp_path / "missing.toml")
