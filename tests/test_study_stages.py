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
#: every task's "stage label key" as planned by the code before the restructure (issue 19), re-recorded once
#: when attacks gained their display names and the adaptive attacks were registered: an attack's identity
#: hashes its class code, and the mechanism and detect stages now record the adaptive attacks' identities
#: (and once more when the identity stopped hashing docstrings and comments).
#: Every task record was checked equal to the old planner's apart from those ``implementations`` entries.
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


#: params fields that stay mappings: open option sets (an attack's table, a member's config table, the hub's
#: image geometry) and the attack implementations; tuples of attack tables may hold mappings too
OPEN = {"attack", "pgd", "source", "preprocess", "implementations"}
TABLES = {"white_box", "black_box", "extra_attacks"}


def _dicts(obj, path: str) -> list[str]:
    """The paths of the plain dicts in ``obj`` (a params dataclass) outside :data:`OPEN` and :data:`TABLES`."""
    out = []
    for f in dataclasses.fields(obj):
        value, where = getattr(obj, f.name), f"{path}.{f.name}"
        if dataclasses.is_dataclass(value) and f.name != "train":  # TrainConfig: the trainer's own type
            out += _dicts(value, where)
        elif isinstance(value, dict) and f.name not in OPEN:
            out.append(where)
        elif isinstance(value, (tuple, list)) and f.name not in TABLES and any(isinstance(v, dict) for v in value):
            out.append(where)
    return out


@pytest.mark.parametrize("name", sorted(KEYS))
def test_params_are_typed_all_the_way_and_travel_to_workers(name):
    """Every entry of every task's params is a frozen dataclass (no string-keyed dicts beyond option tables);
    a pickled task (what the executors ship to worker processes and Ray) keeps its typed params and key, and
    a task rebuilt from the unpickled params hashes to the same key."""
    import pickle

    from serobust.study.plan import DataParams, Numerics

    tasks = plan(load_study_config(ROOT / "experiments" / f"{name}.toml"), ENV)
    for t in tasks:
        assert not _dicts(t.params, t.stage), f"{t}: plain dicts at {_dicts(t.params, t.stage)}"
        assert isinstance(t.params.numerics, Numerics) and isinstance(t.params.data, DataParams)
        back = pickle.loads(pickle.dumps(t))
        assert type(back.params) is type(t.params) and back.params == t.params and back.key == t.key
        rebuilt = Task(t.stage, back.params, back.deps, label=t.label, version=t.version)
        assert rebuilt.key == t.key and rebuilt.record == t.record


def test_a_section_field_a_stage_does_not_take_is_an_error_not_a_silent_key_miss():
    from serobust.config import ProbeSection
    from serobust.study.plan import options
    from serobust.study.stages.probe import ProbeOptions

    probe = options(ProbeOptions, ProbeSection(size=7), without=("enabled",))
    assert probe == ProbeOptions(size=7, eps=(0.1, 0.2, 0.3), attack="pgd", controls=("sign_noise", "gaussian"),
                                 per_channel=True)
    with pytest.raises(TypeError, match=r"ProbeOptions lacks \['enabled'\].*without="):
        options(ProbeOptions, ProbeSection())


def test_each_stage_declares_its_cost_and_the_estimate_sums_them():
    """The estimate is the sum over planned tasks of their stage's declared passes; a stage without a cost
    counts 0; the shipped configs' estimates are the ones ``serobust check`` printed before the costs moved
    into the stages; the train stage's cost is epochs x training images x (1 + attack steps)."""
    from serobust.study.cost import estimate
    from serobust.study.passes import Sizes, sizes

    printed = {
        "mnist": "34 tasks (6 train, 6 evaluate, 6 diagnostics, 6 transfer, 3 probe, 3 mechanism, 3 detect, "
                 "1 examples), rough cost 3.4e+05 image passes",
        "mnist_at": "40 tasks (6 train, 6 evaluate, 6 autoattack, 6 diagnostics, 6 transfer, 3 probe, 3 mechanism, "
                    "3 detect, 1 examples), rough cost 1.9e+06 image passes",
        "cifar10_resnet20_at": "156 tasks (20 train, 20 evaluate, 20 autoattack, 20 diagnostics, 30 transfer, "
                               "15 probe, 15 mechanism, 15 detect, 1 examples), rough cost 4.3e+08 image passes",
        "cifar10_pytorchcv_se": "30 tasks (6 load, 6 evaluate, 2 diagnostics, 6 transfer, 3 probe, 3 mechanism, "
                                "3 detect, 1 examples), rough cost 4.2e+05 image passes",
    }
    for name, text in printed.items():
        cfg = load_study_config(ROOT / "experiments" / f"{name}.toml")
        cost = estimate(cfg)
        assert cost.describe() == text
        summed = sum(STAGES[s].passes(cfg, sizes(cfg)) * n for s, n in cost.by_stage.items())
        assert cost.passes == pytest.approx(summed)
    cfg = load_study_config(ROOT / "experiments" / "mnist_at.toml")
    t = cfg.train
    assert t.adversarial == "pgd" and sizes(cfg) == Sizes(train=4_000, eval=200)
    assert STAGES["train"].passes(cfg, sizes(cfg)) == t.epochs * 4_000 * (1 + t.adv_steps)
    assert STAGES["load"].cost is None and STAGES["load"].passes(cfg, sizes(cfg)) == 0.0
    assert dataclasses.replace(STAGES["detect"], cost=None).passes(cfg, sizes(cfg)) == 0.0
