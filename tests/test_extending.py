"""Extending serobust: a new attack, a new architecture, a new shift metric and a new study stage, each added in
one place of a scratch copy of the package, are usable by evaluate, a study config, the masking checks, the
study's tables and its report.

This is the README's "Extending serobust" recipe, run for real: the copy is imported in a subprocess with
PYTHONPATH pointing at it, and a tiny study that names the new attack and architecture runs end to end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import serobust

NEW_ATTACK = '''
"""Two signed-gradient steps of eps / 2 from the clean input (a scratch attack)."""
import torchattacks

from .base import Attack, int_rule, register_attack


@register_attack
class TwoStepFGSM(Attack):
    name = "fgsm2"
    title = "iFGSM"  # the report's name: fgsm2(steps=3) reads "iFGSM-3"
    defaults = {"steps": 2}
    rules = {"steps": int_rule(1)}
    cheap = {"steps": 1}  # what unit tests run

    def budget(self, config, *, eps, num_classes):
        return f"{config['steps']} steps of eps/{config['steps']}, no random start"

    def runner(self, model, config, *, eps, num_classes, seed):
        return torchattacks.PGD(model, eps=eps, alpha=eps / config["steps"], steps=config["steps"],
                                random_start=False), []
'''

NEW_ARCH = '''
"""TinyNet: two conv blocks, each gated by SE in the twin (a scratch architecture)."""
import torch
from torch import nn

from .common import Normalize, make_se
from .registry import register_model


class Block(nn.Module):
    def __init__(self, cin, cout, se, reduction, min_hidden):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.relu = nn.ReLU()
        self.se = make_se(se, cout, reduction, min_hidden)

    def forward(self, x):
        x = self.relu(self.conv(x))
        return self.se(x) if self.se is not None else x


class TinyNet(nn.Module):
    def __init__(self, num_classes=10, in_channels=1, *, se=False, reduction=16, min_hidden=8, mean=(0.5,),
                 std=(0.5,)):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.blocks = nn.Sequential(Block(in_channels, 16, se, reduction, min_hidden),
                                    Block(16, 32, se, reduction, min_hidden))
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        return self.fc(self.blocks(self.normalize(x)).mean(dim=(2, 3)))


@register_model("tinynet")
def tinynet(**kw) -> nn.Module:
    return TinyNet(**kw)
'''

#: one entry added to the SHIFT_METRICS table
NEW_METRIC = '    "s_l1_change": lambda p: p.ds.abs().mean(1),  # mean absolute change of the excitation\n'

NEW_STAGE = '''
"""Margin: each member's clean logit margin (true class minus the best other) per image (a scratch stage)."""
from dataclasses import dataclass

import pandas as pd
import torch

from ..plan import common
from .base import MemberParams, Stage, head, register_stage


@dataclass(frozen=True)
class MarginSection:
    """[margin]: whether it runs, on how many evaluation images."""

    enabled: bool = False
    size: int = 16


@dataclass(frozen=True)
class MarginParams(MemberParams):
    size: int


def plan(study, seed):
    section = study.cfg.section("margin")
    if not section.enabled:
        return {}
    models = study.models(seed)
    return {m: STAGE.task(MarginParams(**common(study.cfg, m, seed, study.env), size=section.size),
                          {"model": models[m]}, label=f"{m} s{seed}") for m in study.members}


def cost(cfg, sizes):
    """One forward pass per image (rough image passes of one task)."""
    return float(min(cfg.section("margin").size, sizes.eval))


def run(ctx, p, inputs, folder):
    x, y = head(ctx, p, p.size)
    with torch.no_grad():
        logits = inputs["model"](x.to(ctx.device)).cpu()
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).max(1).values
    return {"margins": pd.DataFrame({"index": range(len(y)), "margin": (true - other).numpy()})}


STAGE = register_stage(Stage("margin", MarginParams, plan, run, order=90, priority=9,
                             tables=(("margin", "margins"),), section=MarginSection, cost=cost))
'''

#: the new stage's config section (appended to CONFIG)
MARGIN_SECTION = '''
[margin]
enabled = true
size = 60
'''

CONFIG = '''
[study]
name = "extended"
seeds = [0, 1]
device = "cpu"
[data]
name = "digits"
eval_size = 60
[model]
arch = "tinynet"
reductions = [4]
[train]
epochs = 3
batch_size = 64
lr = 0.05
[attacks]
eps = [0.0, 0.1, 0.2]
main = "pgd"
white_box = [ { name = "fgsm2" }, { name = "pgd", steps = 3 } ]
black_box = [ { name = "square", n_queries = 10 } ]
black_box_eps = [0.2]
black_box_size = 30
[diagnostics]
size = 30
eps = [0.1, 0.2]
steps = [2, 4]
restarts = [1, 2]
square_queries = 10
extra_attacks = [ { name = "fgsm2", steps = 3 } ]
[probe]
size = 30
eps = [0.1]
[mechanism]
size = 30
eps = 0.2
steps = 3
[detect]
enabled = false
[stats]
n_resamples = 1000
[report]
examples = 2
'''


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    """A scratch copy of serobust with one new file each for an attack and an architecture, one new metric entry."""
    root = tmp_path_factory.mktemp("scratch")
    pkg = root / "serobust"
    shutil.copytree(Path(serobust.__file__).parent, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "attacks" / "fgsm2.py").write_text(textwrap.dedent(NEW_ATTACK))
    (pkg / "models" / "tinynet.py").write_text(textwrap.dedent(NEW_ARCH))
    (pkg / "study" / "stages" / "margin.py").write_text(textwrap.dedent(NEW_STAGE))
    table = pkg / "excitation" / "shift_metrics.py"
    text = table.read_text()
    anchor = "SHIFT_METRICS: dict[str, ShiftMetric] = {\n"
    assert text.count(anchor) == 1, "the SHIFT_METRICS table moved: update this test's anchor"
    table.write_text(text.replace(anchor, anchor + NEW_METRIC))
    (root / "extended.toml").write_text(CONFIG + MARGIN_SECTION)
    (root / "unstaged.toml").write_text(CONFIG)  # without the new stage's section, for the original package
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    return root, env


def _run(root: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "serobust.cli", *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)


def test_the_copy_is_what_runs(extended):
    root, env = extended
    done = subprocess.run([sys.executable, "-c", "import serobust; print(serobust.__file__)"], cwd=root, env=env,
                          capture_output=True, text=True)
    assert done.stdout.strip().startswith(str(root))


def test_a_config_naming_the_new_attack_and_architecture_checks(extended):
    root, env = extended
    done = _run(root, env, "check", "extended.toml")
    assert done.returncode == 0, done.stderr
    # the original package knows neither: the same config fails there, naming the key
    original = subprocess.run([sys.executable, "-m", "serobust.cli", "check", str(root / "unstaged.toml")],
                              capture_output=True, text=True, cwd=root.parent)
    assert original.returncode == 2 and "model.arch = 'tinynet'" in original.stderr
    original = subprocess.run([sys.executable, "-m", "serobust.cli", "check", str(root / "extended.toml")],
                              capture_output=True, text=True, cwd=root.parent)
    assert original.returncode == 2 and "unknown section(s) margin" in original.stderr


def test_the_study_uses_all_three(extended):
    root, env = extended
    done = _run(root, env, "run", "extended.toml", "--out", "out", "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    tables = root / "out" / "tables"
    robust = pd.read_csv(tables / "robust.csv")
    assert {"fgsm2", "pgd(steps=3)"} <= set(robust["attack"])  # evaluate ran the new attack
    checks = pd.read_csv(tables / "diagnostics.csv")
    assert "fgsm2_not_stronger" in set(checks["check"])  # the masking checks compared it with PGD
    shift = pd.read_csv(tables / "shift.csv")
    assert "s_l1_change" in shift.columns and shift["s_l1_change"].notna().all()  # the new metric's column
    assert (shift["s_l1_change"] >= 0).all()
    assert set(shift["block"]) == {"blocks.0.se", "blocks.1.se"}  # the new architecture's SE blocks
    page = (root / "out" / "index.html").read_text()
    assert "iFGSM-2" in page and "PGD-3" in page  # the report names the new attack by its own display


def test_the_new_stage_runs_and_its_table_reaches_the_report(extended):
    root, env = extended
    if not (root / "out" / "tables").exists():  # the study of test_the_study_uses_all_three
        assert _run(root, env, "run", "extended.toml", "--out", "out", "--quiet").returncode == 0
    margin = pd.read_csv(root / "out" / "tables" / "margin.csv")
    assert len(margin) == 2 * 2 * 60  # seeds x members x [margin] size, each row tagged
    assert set(margin["seed"]) == {0, 1} and set(margin["model"]) == {"baseline", "se_r4"}
    # independently: a positive margin is a correct clean prediction, so per member and seed the share of
    # positive margins is the clean accuracy the evaluate stage measured on the same 60 images
    robust = pd.read_csv(root / "out" / "tables" / "robust.csv")
    clean = robust[robust["eps"] == 0].groupby(["seed", "model"])["clean_acc"].first()
    share = margin.assign(ok=margin["margin"] > 0).groupby(["seed", "model"])["ok"].mean()
    assert (share - clean.loc[share.index]).abs().max() < 1e-9
    page = (root / "out" / "index.html").read_text()
    assert "tables/margin.csv" in page  # the report lists the new table with its file
    config = (root / "out" / "config.json").read_text()
    assert '"margin"' in config  # the section is recorded with the study's config



#: run in the scratch copy: the estimates of the config with and without the new stage's section, and with
#: the stage's cost removed
COST_SCRIPT = """
import dataclasses, json
from serobust.config import load_study_config
from serobust.study.cost import estimate
from serobust.study.stages import STAGES
ext, base = estimate(load_study_config("extended.toml")), estimate(load_study_config("unstaged.toml"))
STAGES["margin"] = dataclasses.replace(STAGES["margin"], cost=None)
free = estimate(load_study_config("extended.toml"))
print(json.dumps({k: [c.tasks, c.by_stage, c.passes] for k, c in (("ext", ext), ("base", base), ("free", free))}))
"""


def test_the_new_stage_costs_what_it_declares_and_nothing_without_a_cost(extended):
    import json

    root, env = extended
    done = _run(root, env, "check", "extended.toml")
    assert done.returncode == 0 and "4 margin" in done.stderr  # serobust check counts its tasks
    done = subprocess.run([sys.executable, "-c", COST_SCRIPT], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    (tasks, by_stage, passes), (base_tasks, base_by_stage, base_passes) = out["ext"], out["base"]
    assert by_stage["margin"] == 2 * 2 and "margin" not in base_by_stage and tasks == base_tasks + 4
    assert passes == pytest.approx(base_passes + 4 * 60)  # 4 tasks x 60 images, one pass each (its cost)
    assert out["free"][1] == by_stage and out["free"][2] == pytest.approx(base_passes)  # no cost: 0
