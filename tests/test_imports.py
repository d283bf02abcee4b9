"""The import graph of serobust, read from the source (every import, top-level or inside a function):
internal code imports the module that defines a name, never the package face (``serobust/__init__.py``),
and the study engine's modules import each other without a cycle (see DESIGN.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import serobust

ROOT = Path(serobust.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(name: str, path: Path) -> list[tuple[str, tuple[str, ...], int]]:
    """``(module, imported names, line)`` for every import in ``path``, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, (), node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            out.append((base, tuple(a.name for a in node.names), node.lineno))
    return out


def _edges(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the serobust modules it imports (``from pkg import submodule`` counts as the submodule)."""
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for module, names, _ in _imports(name, path):
            if module not in modules:
                continue
            subs = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules]
            targets |= set(subs) if subs and len(subs) == len(names) else {module}
        if path.name == "__init__.py" and "pkgutil.iter_modules" in path.read_text(encoding="utf-8"):
            targets |= {m for m in modules if m.rpartition(".")[0] == name}  # it imports each of its modules
        edges[name] = targets - {name}
    return edges


def _cycle(edges: dict[str, set[str]], within: str) -> list[str] | None:
    """A cycle among the modules under ``within``, or None."""
    nodes = {m for m in edges if m == within or m.startswith(within + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges[m] & nodes):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (found := visit(t)):
                return found
        state[m] = 2
        stack.pop()
        return None

    for m in sorted(nodes):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_internal_import_of_the_package_face():
    modules = _modules()
    bad = []
    for name, path in modules.items():
        if name == "serobust":
            continue
        for module, names, line in _imports(name, path):
            face = [n for n in names if f"serobust.{n}" not in modules]
            if module == "serobust" and (not names or face):
                bad.append(f"{path.relative_to(ROOT.parent)}:{line} imports {', '.join(face) or 'serobust'}")
    assert not bad, "import the defining module instead of the package face:\n" + "\n".join(bad)


def test_the_study_engine_has_no_import_cycle():
    edges = _edges(_modules())
    assert _cycle(edges, "serobust.study") is None, " -> ".join(_cycle(edges, "serobust.study"))


def test_serobust_has_no_import_cycle_at_all():
    """Every import counts, also the lazy ones inside functions: a cycle a lazy import hides is still a cycle
    for a reader (and for the next refactor that makes the import eager)."""
    edges = _edges(_modules())
    assert _cycle(edges, "serobust") is None, " -> ".join(_cycle(edges, "serobust"))
    assert "serobust.study.stages.train" in edges["serobust.study.stages"]  # the walker sees the stage modules


def test_the_walker_finds_a_planted_cycle_and_face_import(tmp_path):
    edges = {"serobust.study.a": {"serobust.study.b"}, "serobust.study.b": {"serobust.study.a"},
             "serobust.study.c": set()}
    assert _cycle(edges, "serobust.study") == ["serobust.study.a", "serobust.study.b", "serobust.study.a"]
    assert _cycle({"serobust.study.a": {"serobust.study.b"}, "serobust.study.b": set()}, "serobust.study") is None
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from .. import verdict\n")
    assert _imports("serobust.study.m", path) == [("serobust", ("verdict",), 2)]


def _private_imports(modules: dict[str, Path], within: str) -> list[str]:
    """``module:line imports other._name`` for every underscore name a module under ``within`` takes from
    another serobust module (dunders aside)."""
    bad = []
    for name, path in modules.items():
        if not (name == within or name.startswith(within + ".")):
            continue
        for module, names, line in _imports(name, path):
            if not module.startswith("serobust") or module == name:
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            bad += [f"{name}:{line} imports {module}.{n}" for n in private]
    return bad


def test_no_module_imports_a_private_name_of_another_and_statistics_has_no_cycle():
    modules = _modules()
    bad = _private_imports(modules, "serobust")
    assert not bad, ("make the name public in its defining module (serobust/stats/checks.py holds the checks "
                     "the statistics share):\n" + "\n".join(bad))
    edges = _edges(modules)
    assert _cycle(edges, "serobust.stats") is None, " -> ".join(_cycle(edges, "serobust.stats"))
    assert "serobust.stats.checks" in edges["serobust.stats.verdict"]  # the walker sees the stats modules


def test_the_private_import_walker_finds_a_planted_one(tmp_path):
    (tmp_path / "a.py").write_text("from __future__ import annotations\nfrom .b import _helper, public\n"
                                   "from numpy import _private_but_not_ours\n")
    (tmp_path / "c.py").write_text("from .b import _helper\n")  # outside serobust.stats: not checked here
    modules = {"serobust.stats.a": tmp_path / "a.py", "serobust.c": tmp_path / "c.py"}
    assert _private_imports(modules, "serobust.stats") == ["serobust.stats.a:2 imports serobust.stats.b._helper"]


def test_the_face_is_short_and_points_at_each_names_defining_module():
    """``import serobust as sr`` is the notebook's short list, each name listed once, mapped to the module that
    defines it (registries: their package), so the face never routes through another face."""
    exports = serobust._EXPORTS
    assert len(exports) <= 45, f"the face grew to {len(exports)} names: import the rest from their modules"
    assert sorted(serobust.__all__) == sorted([*exports, "__version__"])
    for name, module in exports.items():
        value = getattr(serobust, name)
        defined = getattr(value, "__module__", None)
        if defined is not None and not isinstance(value, dict):
            assert defined == f"serobust.{module}", f"{name}: maps to {module}, defined in {defined}"
    with pytest.raises(AttributeError, match="no attribute 'MahalanobisDetector'"):
        serobust.MahalanobisDetector  # noqa: B018 - in serobust.detect, not on the face
