"""The study's stages: one module each under serobust/study/stages, typed params, and the task keys the
planner gave before the stages were split into modules (existing study folders are reused by key)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from serobust.config import load_study_config, study_config_from_dict
from serobust.pipeline import plan
from serobust.study import executors
from serobust.study.stages import STAGES, ordered
from serobust.study.tasks import Task, canonical, task_key

ROOT = Path(__file__).resolve().parents[1]
ENV = {"device": "cpu", "threads": 1}
#: every task's "stage label key" as planned by the code before the restructure (issue 19)
KEYS = json.loads((ROOT / "tests" / "data" / "study_task_keys.json").read_text())


@pytest.mark.parametrize("name", sorted(KEYS))
def test_every_task_key_is_the_one_planned_before_the_restructure(name):
    tasks = plan(load_study_config(ROOT / "experiments" / f"{name}.toml"), ENV)
    assert [f"{t.stage} {t.label} {t.key}" for t in tasks] == KEYS[name]


def test_params_are_typed_and_the_key_hashes_their_asdict():
    tasks = plan(load_study_config(ROOT / "experiments" / "mnist_at.toml"), ENV)
    assert {t.stage for t in tasks} == {"train", "evaluate", "autoattack", "diagnostics", "transfer", "probe",
                                         "mechanism", "detect", "examples"}
    for t in tasks:
        stage = STAGES[t.stage]
        assert isinstance(t.params, stage.params) and dataclasses.is_dataclass(t.params)
        with pytest.raises(dataclasses.FrozenInstanceError):
            t.params.seed = 99  # noqa: B010 - frozen: a planned task cannot be edited after its key is hashed
        record = json.loads(json.dumps(dataclasses.asdict(t.params)))  # tuples -> lists, independently
        assert t.record == record
        assert t.key == task_key(t.stage, stage.version, record, {r: d.key for r, d in t.deps.items()})
        assert t.params.seed in (0, 1, 2)  # the seed is one attribute, for train tasks too (train.seed)
    train = next(t for t in tasks if t.stage == "train")
    assert train.params.seed == train.params.train.seed and "seed" not in train.record


def test_a_train_seed_in_the_config_is_refused_pointing_at_study_seeds():
    from serobust.config import ConfigError

    with pytest.raises(ConfigError, match="study.seeds"):
        study_config_from_dict({"study": {"name": "x"}, "train": {"seed": 3}})


def test_registry_orders_plans_and_feeds_the_executors_and_tables():
    per_seed = [s.name for s in ordered(per_seed=True)]
    assert per_seed == ["train", "load", "evaluate", "autoattack", "diagnostics", "transfer", "probe", "mechanism",
                        "detect"]
    assert [s.name for s in ordered(per_seed=False)] == ["examples"]
    tasks = plan(load_study_config(ROOT / "experiments" / "mnist.toml"), ENV)
    ranks = sorted(tasks, key=executors._priority)
    assert ranks[0].stage == "train" and ranks[-1].stage == "examples"
    assert dict(STAGES["probe"].tables)["shift"] == "shift"
    with pytest.raises(TypeError, match="takes EvaluateParams"):
        STAGES["evaluate"].task({"member": "baseline"})
    with pytest.raises(ValueError, match="Stage.task"):
        Task("evaluate", {"member": "baseline"})


def test_a_stage_section_cannot_shadow_a_built_in_one():
    from serobust.config import register_section

    @dataclasses.dataclass(frozen=True)
    class Shadow:
        epochs: int = 1

    with pytest.raises(ValueError, match=r"\[train\] is already declared"):
        register_section("train", Shadow)
    with pytest.raises(KeyError, match="no stage declares"):
        study_config_from_dict({"study": {"name": "x"}}).section("nothing")


def test_disabled_stages_plan_nothing_and_seeds_tag_each_stage():
    cfg = study_config_from_dict({"study": {"name": "t", "seeds": [4, 7]}, "data": {"name": "digits"},
                                  "probe": {"enabled": False}, "mechanism": {"enabled": False},
                                  "detect": {"enabled": False}, "diagnostics": {"seeds": 1}})
    tasks = plan(cfg, ENV)
    stages = [t.stage for t in tasks]
    assert not {"probe", "mechanism", "detect", "autoattack", "load"} & set(stages)
    assert {t.params.seed for t in tasks if t.stage == "diagnostics"} == {4}
    trains = [t.params.seed for t in tasks if t.stage == "train"]
    assert trains == sorted(trains) and set(trains) == {4, 7} and trains.count(4) == trains.count(7) >= 2
    examples = tasks[-1]
    assert examples.stage == "examples" and examples.params.seed == 4
    assert {d.params.seed for d in examples.deps.values()} == {4}
    assert canonical(examples.record) == examples.record
