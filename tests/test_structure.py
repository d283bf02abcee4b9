"""The size rules a reader relies on (DESIGN.md): no module over about 500 lines, no function over 60 lines of
code unless its docstring says why (a paragraph starting ``Long:``)."""

from __future__ import annotations

import ast
from pathlib import Path

import serobust

ROOT = Path(serobust.__file__).parent
MAX_MODULE_LINES = 520  # "about 500": a docstring paragraph more is not a new idea
MAX_FUNCTION_LINES = 60


def code_lines(node: ast.AST, lines: list[str]) -> int:
    """Lines of code in a function's body: its docstring, comments and blank lines not counted."""
    body = node.body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
        if len(body) == 1:
            return 0
        body = body[1:]
    text = lines[body[0].lineno - 1:node.end_lineno]
    return sum(1 for line in text if line.strip() and not line.strip().startswith("#"))


def long_functions(path: Path, root: Path = ROOT) -> list[str]:
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = code_lines(node, lines)
            reason = any(p.strip().startswith("Long:") for p in (ast.get_docstring(node) or "").split("\n\n"))
            if n > MAX_FUNCTION_LINES and not reason:
                out.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name}: {n} lines of code")
    return out


def test_no_module_is_over_about_500_lines():
    big = [f"{p.relative_to(ROOT.parent)}: {n}" for p in sorted(ROOT.rglob("*.py"))
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES]
    assert not big, "split these modules by idea:\n" + "\n".join(big)


def test_no_function_is_over_60_lines_without_a_reason():
    long = [line for p in sorted(ROOT.rglob("*.py")) for line in long_functions(p)]
    assert not long, "split these functions into named steps, or say why in a 'Long:' paragraph:\n" + "\n".join(long)


def test_the_counter_counts_code_not_docstrings_or_comments(tmp_path):
    body = "\n".join(f"    x{i} = {i}  # step" for i in range(61))
    path = tmp_path / "m.py"
    path.write_text(f'def f():\n    """Doc.\n\n    More.\n    """\n    # a comment\n\n{body}\n')
    tree = ast.parse(path.read_text())
    assert code_lines(tree.body[0], path.read_text().splitlines()) == 61
    assert long_functions(path, root=tmp_path / "pkg") == ["m.py:1 f: 61 lines of code"]
    path.write_text(f'def f():\n    """Doc.\n\n    Long: one table of 61 rows.\n    """\n{body}\n')
    assert long_functions(path, root=tmp_path / "pkg") == []
