"""The README's notebook example runs as written, and the README shows the two commands first."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_starts_with_the_two_commands():
    text = README.read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    assert "make robustness" in first_block and "make test" in first_block
    assert text.index("make robustness") < text.index("## What it is for")


def test_notebook_example_runs_as_written(capsys):
    code = re.search(r"## Use it from a notebook\n.*?```python\n(.*?)```", README.read_text(), re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    frame, shift = namespace["frame"], namespace["shift"]
    assert set(frame["attack"]) >= {"fgsm", "pgd(steps=10)", "worst_case"}
    clean = frame[frame["eps"] == 0]["robust_acc"]
    assert (clean > 0.8).all()
    assert set(shift["perturbation"]) >= {"sign_noise", "gaussian"}
    assert "robust_acc" in capsys.readouterr().out
