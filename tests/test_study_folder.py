"""A study folder is serobust's only where serobust wrote it; the task store reuses nothing it did not verify;
a replaced attack is never confused with the built-in it replaced."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import tiny_study

from serobust.cli import main
from serobust.config import study_config_from_dict
from serobust.pipeline import plan, run_study
from serobust.study.publish import MARKER, RUN_ID, StudyFolderError, new_run_id
from serobust.study.store import TaskStoreError

ENV = {"device": "cpu", "threads": 1}
#: One seed, no masking checks, no black-box attack (black_box = [] runs end to end): the smallest study.
RAW = tiny_study(study={"seeds": [0]}, diagnostics={"enabled": False}, attacks={"black_box": []})


def _cfg(**sections):
    raw = json.loads(json.dumps(RAW))
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return study_config_from_dict(raw)


def tree(path: Path) -> dict[str, str]:
    """Every entry under ``path`` (links not followed): file sha256, link target, or 'dir'."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(path))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "study"
    run_study(_cfg(), out_dir=out, progress=False)
    return out


@pytest.fixture
def study(finished, tmp_path):
    work = tmp_path / "study"
    shutil.copytree(finished, work, symlinks=True)
    return work


def _config_file(tmp_path: Path) -> Path:
    from test_hardening import _toml

    path = tmp_path / "study.toml"
    path.write_text(_toml(RAW))
    return path


# ---------------------------------------------------------------------------------------------- ownership

def test_black_box_empty_runs_end_to_end_and_the_report_says_so(finished):
    results = json.loads((finished / "results.json").read_text())
    assert results["config"]["attacks"]["black_box"] == []
    assert any(a["label"] == "no black-box check" for a in results["meta"]["attacks"])
    assert "no black-box check" in (finished / "index.html").read_text()
    assert (finished / MARKER).is_file()


def test_a_users_folder_is_refused_and_left_byte_identical(tmp_path, capsys):
    paper = tmp_path / "paper"
    for rel, text in {"figures/fig1.pdf": "%PDF-1.4 mine", "tables/t1.tex": "\\begin{tabular}",
                      "report/draft.md": "# draft", "index.html": "<p>my page</p>"}.items():
        (paper / rel).parent.mkdir(parents=True, exist_ok=True)
        (paper / rel).write_text(text)
    before = tree(paper)
    code, out, err = _cli(capsys, "run", str(_config_file(tmp_path)), "--out", str(paper))
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"serobust: error: {paper}: holds entries serobust did not create")
    for name in ("figures/", "tables/", "report/", "index.html"):
        assert name in err
    assert "--out" in err
    assert tree(paper) == before


def test_a_symlinked_runs_folder_is_refused_and_its_target_untouched(study, tmp_path):
    elsewhere = tmp_path / "big-disk"
    shutil.move(str(study / ".runs"), elsewhere)
    victim = elsewhere / new_run_id()  # named like a run: a cleanup through the link would delete it
    victim.mkdir()
    (victim / "precious.txt").write_text("mine")
    (elsewhere / "legacy-figures-123456").mkdir()
    os.symlink(elsewhere, study / ".runs")
    before = tree(elsewhere)
    with pytest.raises(StudyFolderError, match=r"\.runs@"):
        run_study(_cfg(stats={"n_resamples": 2000}), out_dir=study, progress=False)
    assert tree(elsewhere) == before


def test_a_real_folder_where_a_link_goes_is_refused_not_deleted(study):
    (study / "results.json").unlink()
    (study / "results.json").mkdir()
    (study / "results.json" / "notes.txt").write_text("mine")
    before = tree(study)
    with pytest.raises(StudyFolderError, match=r"results\.json/"):
        run_study(_cfg(stats={"n_resamples": 2000}), out_dir=study, progress=False)
    assert tree(study) == before


def test_cleanup_removes_only_its_own_runs_and_the_single_page_never_goes_stale(study, capsys):
    old = os.readlink(study / "report").split("/")[-1]
    keep = {".runs/legacy-figures-abc123/fig.pdf": "mine", ".runs/mine/notes.txt": "mine"}
    for rel, text in keep.items():
        (study / rel).parent.mkdir(parents=True)
        (study / rel).write_text(text)
    (study / "notes.txt").write_text("a marked folder keeps its owner's other files")
    code, out, _ = _cli(capsys, "report", str(study), "--single-file")
    assert code == 0 and str(study / "index.single.html") in out
    assert os.readlink(study / "index.single.html") == "report/index.single.html"
    assert (study / ".runs" / old / "index.single.html").is_file()
    run_study(_cfg(stats={"n_resamples": 2000}), out_dir=study, progress=False)  # every task cached
    new = os.readlink(study / "report").split("/")[-1]
    assert new != old and RUN_ID.fullmatch(new)
    assert sorted(p.name for p in (study / ".runs").iterdir()) == sorted(["legacy-figures-abc123", "mine", new])
    assert all((study / rel).read_text() == text for rel, text in keep.items())
    assert (study / "notes.txt").is_file()
    assert not (study / "index.single.html").exists() and not (study / "index.single.html").is_symlink()


def test_an_older_serobusts_folder_is_adopted(study):
    (study / MARKER).unlink()  # the layout the previous version wrote: .runs, report, tasks, .lock, links
    run_study(_cfg(stats={"n_resamples": 2000}), out_dir=study, progress=False)
    assert (study / MARKER).is_file()
    (study / MARKER).unlink()
    (study / "index.single.html").write_text("an older version wrote this page here")
    with pytest.raises(StudyFolderError, match=r"index\.single\.html.*older serobust's single-file page"):
        run_study(_cfg(stats={"n_resamples": 2000}), out_dir=study, progress=False)


# ---------------------------------------------------------------------------------------------- the task store

def _task_folder(study: Path, stage: str, label: str) -> Path:
    (folder,) = (study / "tasks" / stage).glob(f"{label}-*")
    return folder


def _manifests(study: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (study / "tasks").rglob("manifest.json")}


def test_an_emptied_part_is_refused_before_new_work(study, tmp_path, capsys):
    shift = _task_folder(study, "probe", "se_r4-s0") / "shift.csv"
    shift.write_text("")
    shutil.rmtree(_task_folder(study, "mechanism", "se_r4-s0"))  # new work the run would do first
    before = _manifests(study)
    code, _, err = _cli(capsys, "run", str(_config_file(tmp_path)), "--out", str(study))
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "shift.csv is 0 bytes, the manifest recorded" in err and f"delete the folder {shift.parent}" in err
    assert _manifests(study) == before  # nothing ran


@pytest.mark.parametrize("damage", ["truncated", "foreign", "not a dict"])
def test_a_damaged_manifest_is_one_line_naming_the_folder(study, tmp_path, capsys, damage):
    manifest = _task_folder(study, "evaluate", "baseline-s0") / "manifest.json"
    text = manifest.read_text()
    manifest.write_text({"truncated": text[: len(text) // 2], "foreign": json.dumps({"stage": "evaluate", "key": "x"}),
                         "not a dict": "[1, 2]"}[damage])
    code, _, err = _cli(capsys, "run", str(_config_file(tmp_path)), "--out", str(study))
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"serobust: error: {manifest.parent}: ") and "delete the folder" in err


def test_a_checkpoint_from_another_task_is_detected(study):
    base = _task_folder(study, "train", "baseline-s0") / "last.pt"
    twin = _task_folder(study, "train", "se_r4-s0") / "last.pt"
    shutil.copyfile(twin, base)
    with pytest.raises(TaskStoreError, match=r"last\.pt (is \d+ bytes|differs from the sha256)"):
        run_study(_cfg(), out_dir=study, progress=False)


def test_a_checkpoint_trained_with_another_config_is_detected_even_with_a_matching_digest(study):
    """The manifest's digest updated to match a swapped checkpoint: the config inside it still tells."""
    from serobust.study.executors import TaskFailed
    from serobust.study.store import file_digest

    folder = _task_folder(study, "train", "baseline-s0")
    ckpt = torch.load(folder / "last.pt", weights_only=True)
    ckpt["config"]["lr"] = 0.5
    torch.save(ckpt, folder / "last.pt")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["last.pt"] = file_digest(folder / "last.pt")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(_task_folder(study, "evaluate", "baseline-s0"))
    with pytest.raises(TaskFailed, match=r"trained with another config"):
        run_study(_cfg(), out_dir=study, progress=False)


def test_a_manifest_recording_another_training_config_is_refused(study):
    folder = _task_folder(study, "train", "baseline-s0")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["train_config"]["epochs"] = 99
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TaskStoreError, match=r"checkpoint trained with another config"):
        run_study(_cfg(), out_dir=study, progress=False)


def test_an_older_manifest_without_digests_is_recomputed_not_trusted(study):
    folder = _task_folder(study, "train", "baseline-s0")
    manifest = json.loads((folder / "manifest.json").read_text())
    for key in ("format", "files", "train_config"):
        manifest.pop(key)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    ckpt = (folder / "last.pt").read_bytes()
    run_study(_cfg(stats={"n_resamples": 2000}), out_dir=study, progress=False)
    again = json.loads((folder / "manifest.json").read_text())
    assert again["format"] == 2 and again["files"]["last.pt"]["sha256"] == hashlib.sha256(ckpt).hexdigest()
    assert (folder / "last.pt").read_bytes() == ckpt  # the finished checkpoint resumed, not retrained


# ---------------------------------------------------------------------------------------------- attack identity

@contextlib.contextmanager
def _user_pgd():
    """A user's pgd registered over the built-in (same options, its own code); the built-in restored after."""
    from serobust.attacks import register_attack
    from serobust.attacks.base import implementation

    builtin = type(implementation("pgd"))

    @register_attack(replace=True)
    class MyPGD(builtin):
        name = "pgd"

        def runner(self, model, config, *, eps, num_classes, seed):
            return super().runner(model, config, eps=eps, num_classes=num_classes, seed=seed)

    try:
        yield MyPGD
    finally:
        register_attack(builtin, replace=True)


@pytest.fixture
def replaced_pgd():
    with _user_pgd() as cls:
        yield cls


def test_replacing_an_attack_changes_the_keys_of_the_tasks_that_run_it():
    cfg = _cfg()
    before = {t.key: t.stage for t in plan(cfg, ENV)}
    with _user_pgd():
        after = {t.key: t.stage for t in plan(cfg, ENV)}
    kept = {stage for key, stage in before.items() if key in after}
    assert kept == {"train"}  # the models stay; every task that runs pgd is new
    assert {t.key for t in plan(cfg, ENV)} == set(before)  # the built-in back: the old keys again


def test_a_worker_that_resolves_another_implementation_refuses(replaced_pgd):
    from serobust.attacks import register_attack, unregister_attack
    from serobust.attacks.base import implementation
    from serobust.study.context import AttackImplementationError, check_implementations

    task = next(t for t in plan(_cfg(), ENV) if t.stage == "evaluate")
    check_implementations(task)  # the planning process: the same implementation
    builtin = replaced_pgd.__mro__[1]
    register_attack(builtin, replace=True)  # what a spawned worker sees: the built-in
    try:
        with pytest.raises(AttackImplementationError, match=r"attack 'pgd' was planned as .*MyPGD but is "
                                                            r"serobust\.attacks\.pgd\..* in worker process.*jobs = 1"):
            check_implementations(task)
    finally:
        register_attack(replaced_pgd, replace=True)
    assert type(implementation("pgd")) is replaced_pgd
    unregister_attack("pgd")  # a user's attack the worker never registered
    try:
        with pytest.raises(AttackImplementationError, match=r"is not registered in worker process"):
            check_implementations(task)
    finally:
        register_attack(replaced_pgd, replace=True)


def test_spawned_workers_refuse_a_replacement_registered_only_in_the_driver(study, replaced_pgd):
    from serobust.study.executors import TaskFailed

    with pytest.raises(TaskFailed, match=r"stage evaluate.*AttackImplementationError.*MyPGD.*jobs = 1"):
        run_study(_cfg(execution={"jobs": 2}), out_dir=study, progress=False)
