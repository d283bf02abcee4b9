"""Bad inputs die early with one line naming the key or path; a failed or killed run never damages a report."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_study

from serobust.cli import main
from serobust.config import study_config_from_dict

ROOT = Path(__file__).resolve().parents[1]


def _toml(raw: dict) -> str:
    """A minimal TOML writer for the test configs (tables of scalars, lists and inline tables)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    return "\n".join(f"[{name}]\n" + "\n".join(f"{k} = {value(v)}" for k, v in section.items())
                     for name, section in raw.items()) + "\n"


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------------------------------------- serobust check

@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "experiments").glob("*.toml")))
def test_every_shipped_config_checks(config, capsys):
    code, out, err = _cli(capsys, "check", str(ROOT / "experiments" / config))
    assert code == 0, err
    assert json.loads(out)["study"]["name"]


BAD = {  # section overrides -> the key the one-line error must name
    "unknown attack": ({"attacks": {"white_box": [{"name": "fgsm"}, {"name": "pgdd"}]}}, r"attacks\.white_box\[1\]"),
    "unknown attack option": ({"attacks": {"white_box": [{"name": "pgd", "stepz": 10}]}}, r"attacks\.white_box\[0\].*stepz"),
    "bad option value": ({"attacks": {"white_box": [{"name": "pgd", "steps": 0}]}}, r"attacks\.white_box\[0\].*steps"),
    "unknown black-box attack": ({"attacks": {"black_box": [{"name": "squar"}]}}, r"attacks\.black_box\[0\]"),
    "unknown probe attack": ({"probe": {"attack": "fgsmm"}}, r"probe\.attack"),
    "empty probe controls": ({"probe": {"controls": []}}, r"probe\.controls"),
    "unknown probe control": ({"probe": {"controls": ["uniform"]}}, r"probe\.controls"),
    "no examples": ({"report": {"examples": 0}}, r"report\.examples"),
    "empty black_box_eps": ({"attacks": {"black_box_eps": []}}, r"attacks\.black_box_eps is empty"),
    "empty diagnostics eps": ({"diagnostics": {"eps": []}}, r"diagnostics\.eps is empty"),
    "empty probe eps": ({"probe": {"eps": []}}, r"probe\.eps is empty"),
    "empty attack eps": ({"attacks": {"eps": []}}, r"attacks\.eps is empty"),
    "duplicate budgets": ({"attacks": {"eps": [0.1, "1/10"]}}, r"attacks\.eps\[1\] = 0\.1 repeats attacks\.eps\[0\] = 0\.1 \(both are 0\.1\)"),
    "duplicate probe budgets": ({"probe": {"eps": ["8/255", 0.031372549019607843]}}, r"probe\.eps\[1\].*repeats"),
    "NaN min_effect": ({"stats": {"min_effect": "nan"}}, r"stats\.min_effect = 'nan': expected a finite number"),
    "NaN weight": ({"mechanism": {"weight": "nan"}}, r"mechanism\.weight = 'nan': expected a finite number"),
    "infinite lr": ({"train": {"lr": "inf"}}, r"train\.lr = 'inf': expected a finite number"),
    "eps above 1": ({"diagnostics": {"large_eps": 8}}, r"diagnostics\.large_eps\[0\] must be <= 1"),
    "zero mechanism eps": ({"mechanism": {"eps": 0}}, r"mechanism\.eps must be > 0"),
    "bad reduction": ({"model": {"reductions": [0]}}, r"model\.reductions\[0\]"),
    "unknown architecture": ({"model": {"arch": "vgg16"}}, r"model\.arch = 'vgg16'"),
    "unknown dataset": ({"data": {"name": "imagenet"}}, r"data\.name = 'imagenet'"),
    "dots for a name": ({"study": {"name": ".."}}, r"study\.name = '\.\.'"),
    "dot for a name": ({"study": {"name": "."}}, r"study\.name = '\.'"),
    "hidden name": ({"study": {"name": ".hidden"}}, r"study\.name"),
    "negative jobs": ({"execution": {"jobs": -1}}, r"execution\.jobs = -1"),
    "unknown executor": ({"execution": {"executor": "slurm"}}, r"execution\.executor = 'slurm'"),
    "unknown key": ({"attacks": {"epz": [0.1]}}, r"unknown key attacks\.epz \(did you mean 'eps'\?\)"),
    "main not run": ({"attacks": {"main": "apgd_ce"}}, r"attacks\.main = 'apgd_ce'"),
}
BAD_ROUND2 = {
    "train seed": ({"train": {"epochs": 4, "seed": 3}}, r"train\.seed is not read.*study\.seeds"),
    "twin names collide": ({"model": {"reductions": [4, 4.0000000001]}},
                           r"model\.reductions\[1\] = 4\.0000000001 and model\.reductions\[0\] = 4\.0 both name "
                           r"the twin 'se_r4'"),
    "long description": ({"study": {"description": "x" * 20_000}}, r"study\.description is 20000 characters"),
    "huge seed": ({"study": {"seeds": [0, 2**40]}}, r"study\.seeds.*each in \[0, 2147483647\]"),
    "1000 budgets": ({"attacks": {"eps": [i / 1000 for i in range(1000)]}}, r"attacks\.eps has 1000 budgets"),
}



@pytest.mark.parametrize("case", sorted(BAD) + sorted(BAD_ROUND2))
def test_a_bad_config_fails_check_with_one_line_naming_the_key(case, tmp_path, capsys):
    sections, key = {**BAD, **BAD_ROUND2}[case]
    path = tmp_path / "bad.toml"
    path.write_text(_toml(tiny_study(**sections)))
    code, out, err = _cli(capsys, "check", str(path))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"serobust: error: {path}: "), err
    import re

    assert re.search(key, err), err


def test_check_and_run_agree_on_a_bad_config(tmp_path, capsys):
    """run validates the whole config before it writes anything: same message, no study folder."""
    path = tmp_path / "bad.toml"
    path.write_text(_toml(tiny_study(probe={"attack": "fgsmm"})))
    _, _, check_err = _cli(capsys, "check", str(path))
    code, _, run_err = _cli(capsys, "run", str(path), "--out", str(tmp_path / "out"))
    assert code == 2 and run_err == check_err
    assert not (tmp_path / "out").exists()


def test_cuda_without_a_gpu_is_a_config_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    path = tmp_path / "gpu.toml"
    path.write_text(_toml(tiny_study(study={"device": "cuda"})))
    code, _, err = _cli(capsys, "check", str(path))
    assert code == 2 and "study.device = 'cuda'" in err and "use device = 'cpu'" in err


def test_a_config_that_is_not_utf8_or_not_toml(tmp_path, capsys):
    path = tmp_path / "latin1.toml"
    path.write_bytes('[study]\nname = "caf\xe9"\n'.encode("latin-1"))
    code, _, err = _cli(capsys, "check", str(path))
    assert code == 2 and "not UTF-8" in err and err.count("\n") == 1
    path.write_text("[study\nname =")
    code, _, err = _cli(capsys, "check", str(path))
    assert code == 2 and "not valid TOML" in err


def test_missing_config_file(tmp_path, capsys):
    code, _, err = _cli(capsys, "check", str(tmp_path / "nope.toml"))
    assert code == 2 and "not found" in err and "Traceback" not in err


def test_the_real_command_prints_no_traceback(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(_toml(tiny_study(attacks={"white_box": [{"name": "pgd", "stepz": 10}]})))
    proc = subprocess.run([sys.executable, "-m", "serobust.cli", "run", str(path)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("serobust: error: ") and "stepz" in proc.stderr


def test_make_robustness_with_an_empty_config_falls_back_to_the_default():
    proc = subprocess.run(["make", "-n", "robustness", "CONFIG="], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and "serobust run experiments/mnist.toml" in proc.stdout


# ---------------------------------------------------------------------------------------------- run errors

def _run_config(tmp_path: Path, **sections) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(_toml(tiny_study(**sections)))
    return path


def test_a_report_folder_that_is_a_file(tmp_path, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    code, _, err = _cli(capsys, "run", str(_run_config(tmp_path)), "--out", str(blocker))
    assert code == 2 and str(blocker) in err and "a file is in the way" in err and err.count("\n") == 1


@pytest.mark.parametrize("code_,hint", [(errno.ENOSPC, "no space left"), (errno.EROFS, "read-only file system"),
                                         (errno.EACCES, "permission denied")])
def test_a_full_or_read_only_disk_is_one_line(tmp_path, capsys, monkeypatch, code_, hint):
    import serobust.io

    def refuse(path, text):
        raise OSError(code_, os.strerror(code_), str(path))

    monkeypatch.setattr(serobust.io, "atomic_write_text", refuse)
    monkeypatch.setattr("serobust.study.store.atomic_write_text", refuse)
    code, _, err = _cli(capsys, "run", str(_run_config(tmp_path, study={"seeds": [0]})), "--out",
                        str(tmp_path / "out"))
    assert code == 2 and hint in err and "--out" in err and "Traceback" not in err, err


def test_missing_data_is_one_line_and_writes_nothing(tmp_path, capsys):
    path = _run_config(tmp_path, data={"name": "cifar10", "root": str(tmp_path / "nodata"), "download": False})
    code, _, err = _cli(capsys, "run", str(path), "--out", str(tmp_path / "out"))
    assert code == 2 and "cifar-10-batches-py" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_malformed_image_in_an_image_folder_is_one_line(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    for split in ("train", "test"):
        for c in ("a", "b"):
            folder = tmp_path / "tree" / split / c
            folder.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / f"{i}.png")
    bad = tmp_path / "tree" / "train" / "b" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    path = _run_config(tmp_path, data={"name": "imagefolder", "path": str(tmp_path / "tree"),
                                       "root": str(tmp_path / "cache")})
    code, _, err = _cli(capsys, "run", str(path), "--out", str(tmp_path / "out"))
    assert code == 2 and "broken.png" in err and err.count("\n") == 1


# ---------------------------------------------------------------------------------------------- the report as one unit

def test_report_files_honour_the_umask(tmp_path):
    from serobust.pipeline import run_study

    old = os.umask(0o022)
    try:
        run_study(study_config_from_dict(tiny_study(study={"seeds": [0]}, diagnostics={"enabled": False})),
                  out_dir=tmp_path, progress=False)
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink() and p.name != ".lock"]
    assert files and all(p.stat().st_mode & 0o777 == 0o644 for p in files), \
        sorted({oct(p.stat().st_mode & 0o777) for p in files})


_KILLER = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import serobust.io
from conftest import tiny_study
from serobust.config import study_config_from_dict
from serobust.pipeline import run_study

calls = {{"n": 0}}
orig_replace = os.replace

def replace(src, dst, *a, **k):
    calls["n"] += 1
    if calls["n"] == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)
    return orig_replace(src, dst, *a, **k)

os.replace = replace
if __name__ == "__main__":
    raw = tiny_study(study={{"seeds": [0]}}, diagnostics={{"enabled": False}}, stats={{"n_resamples": {resamples}}})
    run_study(study_config_from_dict(raw), out_dir={out!r}, progress=False)
"""


def _consistent(out: Path) -> str:
    """Check that the folder holds one whole report; returns its run id."""
    results = json.loads((out / "results.json").read_text())
    run_id = results["meta"]["run_id"]
    assert os.readlink(out / "report").endswith(run_id)
    assert run_id in (out / "index.html").read_text()
    for rel in results["tables"].values():
        assert (out / rel).is_file(), rel
    config = json.loads((out / "config.json").read_text())
    assert config == results["config"]
    return run_id


def test_a_killed_run_leaves_one_consistent_report(tmp_path):
    out = tmp_path / "out"
    script = tmp_path / "run.py"

    def run(kill_at: int, resamples: int) -> int:
        script.write_text(_KILLER.format(tests=str(Path(__file__).parent), kill_at=kill_at, out=str(out),
                                         resamples=resamples))
        return subprocess.run([sys.executable, str(script)], capture_output=True, text=True).returncode

    assert run(10**9, 1000) == 0  # a finished report
    first = _consistent(out)
    renames = []
    for kill_at in (1, 3, 8, 15, 25, 40, 60, 80):  # os.replace calls: task parts, report files, the swap
        code = run(kill_at, 2000 + kill_at)
        run_id = _consistent(out)
        renames.append((kill_at, code, run_id == first))
        if code == 0:
            break
    assert any(code == -signal.SIGKILL for _, code, _ in renames)
    assert run(10**9, 5000) == 0
    assert _consistent(out) != first
    assert not list((out / "report").rglob("*.tmp"))  # no temporary file in the published report
    assert len(list((out / ".runs").iterdir())) == 1


def test_a_failing_run_keeps_the_previous_report(tmp_path, monkeypatch):
    from serobust.pipeline import run_study

    raw = tiny_study(study={"seeds": [0]}, diagnostics={"enabled": False})
    run_study(study_config_from_dict(raw), out_dir=tmp_path, progress=False)
    before = _consistent(tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("figure failed")

    monkeypatch.setattr("serobust.report.write_report", broken)
    raw["stats"]["n_resamples"] = 2000
    with pytest.raises(RuntimeError, match="figure failed"):
        run_study(study_config_from_dict(raw), out_dir=tmp_path, progress=False)
    assert _consistent(tmp_path) == before
    assert [p.name for p in (tmp_path / ".runs").iterdir()] == [before]
    shutil.rmtree(tmp_path / "tasks")


# ---------------------------------------------------------------------------------------------- round 2: configs



def test_a_50_mb_config_is_refused_at_check_without_reading_it(tmp_path, capsys):
    path = tmp_path / "big.toml"
    path.write_text(_toml(tiny_study(study={"description": "x" * 50_000_000})))
    code, _, err = _cli(capsys, "check", str(path))
    assert code == 2 and err.count("\n") == 1 and "is 50.0 MB" in err and "at most 1024 KB" in err


def test_a_utf8_bom_is_accepted(tmp_path, capsys):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + _toml(tiny_study()).encode())
    code, out, err = _cli(capsys, "check", str(path))
    assert code == 0, err
    assert json.loads(out)["study"]["name"] == "tiny"


def _expected_tasks(raw: dict) -> int:
    """Tasks of a tiny study counted from its config, independently of serobust's planner."""
    seeds, twins = len(raw["study"]["seeds"]), len(raw["model"]["reductions"])
    members = 1 + twins
    per_seed = 2 * members + members + 2 * twins + 3 * twins  # train + evaluate, diagnostics, transfer both
    return seeds * per_seed + 1  # ways, probe + mechanism + detect per twin; one examples task


def test_check_prints_the_number_of_tasks_and_a_rough_cost(tmp_path, capsys):
    raw = tiny_study(model={"reductions": [4, 8]})
    path = tmp_path / "study.toml"
    path.write_text(_toml(raw))
    code, out, err = _cli(capsys, "check", str(path))
    assert code == 0 and json.loads(out)
    assert err.startswith(f"{path}: ok, {_expected_tasks(raw)} tasks (") and "image passes" in err
    code, out, _ = _cli(capsys, "check", str(path), str(path))
    assert code == 0 and out.count(f"{_expected_tasks(raw)} tasks") == 2


def test_run_asks_for_yes_past_the_limit(tmp_path, capsys):
    path = tmp_path / "big.toml"
    path.write_text(_toml(tiny_study(study={"seeds": list(range(201))})))
    code, _, err = _cli(capsys, "check", str(path))
    assert code == 0 and "serobust run asks for --yes" in err
    code, out, err = _cli(capsys, "run", str(path), "--out", str(tmp_path / "out"))
    assert code == 2 and out == "" and err.count("\n") == 1 and "--yes" in err and "2212 tasks" in err
    assert not (tmp_path / "out").exists()
    path.write_text(_toml(tiny_study(attacks={"white_box": [{"name": "pgd", "steps": 10**11}]})))
    code, _, err = _cli(capsys, "check", str(path))
    assert code == 0 and "serobust run asks for --yes" in err


# ---------------------------------------------------------------------------------------------- round 2: images

def _image_tree(root: Path, counts: dict[tuple[str, str], int]) -> None:
    import numpy as np
    from PIL import Image

    for (split, c), n in counts.items():
        folder = root / split / c
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            value = (100 if c == "a" else 200) + i
            Image.fromarray(np.full((8, 8), value, np.uint8)).save(folder / f"{i}.png")


def test_image_folder_links_never_leave_their_class_or_loop(tmp_path):
    from serobust.data import load_dataset

    tree = tmp_path / "tree"
    _image_tree(tree, {("train", "a"): 10, ("train", "b"): 10, ("test", "a"): 3, ("test", "b"): 3})
    os.symlink("..", tree / "train" / "a" / "up")  # the whole train split, b included: leaves class a
    os.symlink(".", tree / "train" / "a" / "loop")  # itself: a loop
    os.symlink("../b", tree / "train" / "a" / "b_images")  # another class's folder
    (tree / "train" / "a" / "deeper").mkdir()
    os.symlink("..", tree / "train" / "a" / "deeper" / "parent")  # back to a: already read
    bundle = load_dataset("imagefolder", root=tmp_path / "cache", path=tree)
    x, y = bundle.train.tensors()
    assert len(y) == 20 and bundle.classes == ("a", "b")
    assert y.tolist() == [0] * 10 + [1] * 10
    pixels = (x[:, 0, 0, 0] * 255).round().long()  # class a's images are 100.., b's 200..
    assert ((pixels < 150) == (y == 0)).all()


def test_a_one_class_image_folder_is_one_line(tmp_path, capsys):
    _image_tree(tmp_path / "tree", {("train", "a"): 4, ("test", "a"): 2})
    path = _run_config(tmp_path, data={"name": "imagefolder", "path": str(tmp_path / "tree"),
                                       "root": str(tmp_path / "cache")})
    code, _, err = _cli(capsys, "run", str(path), "--out", str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1 and "a classifier needs at least two" in err
    assert not (tmp_path / "out").exists()


def test_a_test_only_class_is_one_line(tmp_path, capsys):
    _image_tree(tmp_path / "tree", {("train", "a"): 4, ("train", "b"): 4, ("test", "a"): 2, ("test", "b"): 2,
                                    ("test", "c"): 2})
    path = _run_config(tmp_path, data={"name": "imagefolder", "path": str(tmp_path / "tree"),
                                       "root": str(tmp_path / "cache")})
    code, _, err = _cli(capsys, "run", str(path), "--out", str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1 and "could never predict class 'c'" in err
