"""The layering of the package: every module imports on its own, and the import graph of
recbole_fair (module-level and function-level imports, read with ``ast``) has no cycle.

Layers, lowest first: ``errors``, ``paths``, ``parallel``, ``compat`` (nothing of the project
below them) < ``tokenizer`` < ``data`` < ``model``, ``trainer`` < ``utils`` (the plugin look-ups)
< ``config`` < ``quick_start`` < ``checkpoint``, ``leaderboard`` < ``analysis`` < ``cli``. A lower
layer never imports a higher one: the graph of the package's top-level parts has no cycle either.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "recbole_fair"

# what the data layer must never import (it is below all of them)
DATA_MUST_NOT_IMPORT = (
    "recbole_fair.model",
    "recbole_fair.cli",
    "recbole_fair.leaderboard",
    "recbole_fair.quick_start",
    "recbole_fair.analysis",
    "recbole_fair.checkpoint",
    "recbole_fair.config",
    "recbole_fair.utils",
)


# ------------------------------------------------------------------------------- the graph
def package_modules(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    r"""Dotted name -> file of every module of ``package`` under ``root`` (a package is its
    ``__init__.py``)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imported_names(module: str, path: Path) -> list[str]:
    r"""Absolute dotted names ``module`` imports anywhere in its file (relative imports
    resolved); ``from x import y`` gives ``x.y`` (a submodule or a name of ``x``)."""
    is_package = path.name == "__init__.py"
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: len(module.split(".")) - (not is_package)]
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def import_graph(root: Path, package: str = PACKAGE) -> dict[str, set[str]]:
    r"""Module -> the modules of ``package`` it imports (the most specific module a dotted
    name resolves to), from the source files under ``root``."""
    modules = package_modules(root, package)
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in _imported_names(module, path):
            if not (name == package or name.startswith(package + ".")):
                continue
            while name not in modules:
                name = name.rpartition(".")[0]
            if name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    r"""One cycle of ``graph`` as ``[a, b, ..., a]``, or ``None`` when it has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def part_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    r"""The graph between the package's top-level parts (``recbole_fair.data`` for every
    module under it); the package's own ``__init__`` is the part ``recbole_fair``."""

    def part(module: str) -> str:
        return ".".join(module.split(".")[:2])

    parts: dict[str, set[str]] = {}
    for module, targets in graph.items():
        edges = parts.setdefault(part(module), set())
        edges |= {part(t) for t in targets if part(t) != part(module)}
    return parts


@pytest.fixture(scope="module")
def graph():
    return import_graph(REPO)


# ------------------------------------------------------------------------------- the checks
def test_every_module_imports_alone_in_a_fresh_interpreter(tmp_path):
    modules = [m for m in package_modules(REPO) if not m.endswith(".__main__")]
    assert len(modules) > 40 and "recbole_fair.data.dataset" in modules
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

    def import_alone(module: str) -> tuple[str, int, str]:
        done = subprocess.run(
            [sys.executable, "-c", f"import {module}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        return module, done.returncode, done.stderr.strip().splitlines()[-1:]

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        failed = [(m, err) for m, rc, err in pool.map(import_alone, modules) if rc != 0]
    assert not failed, f"modules that do not import on their own: {failed}"


def test_the_import_graph_has_no_cycle(graph):
    assert "recbole_fair.cli.run" in graph and graph["recbole_fair.cli.run"]  # read at all
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_lower_layers_never_import_higher_ones(graph):
    parts = part_graph(graph)
    assert {"recbole_fair.config", "recbole_fair.data"} <= parts["recbole_fair.quick_start"]
    cycle = find_cycle(parts)
    assert cycle is None, "parts of the package import each other: " + " -> ".join(cycle)


def test_parallel_imports_nothing_of_the_project(graph):
    assert graph["recbole_fair.parallel"] == set()
    assert graph["recbole_fair.paths"] == set()


def test_the_data_layer_imports_no_higher_layer(graph):
    data = {
        m: t
        for m, t in graph.items()
        if m == "recbole_fair.data" or m.startswith("recbole_fair.data.")
    }
    assert (
        "recbole_fair.data.dataset" in data
        and "recbole_fair.parallel" in data["recbole_fair.data.dataset"]
    )
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in data.items()
        for target in targets
        if any(target == p or target.startswith(p + ".") for p in DATA_MUST_NOT_IMPORT)
    )
    assert not wrong, f"the data layer imports a higher layer: {wrong}"


def test_benchmark_scripts_use_public_names_only():
    """Scripts of benchmarks/ import the package's public names, without editing sys.path
    (benchmarks/gpu/ keeps its own: its faiss stand-in must not shadow the real one)."""
    problems = []
    for path in sorted((REPO / "benchmarks").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        if "sys.path.insert" in source or "sys.path[:0]" in source:
            problems.append(f"{path.name}: edits sys.path")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private:
                    problems.append(f"{path.name}: imports {private} from {node.module}")
    assert not problems, problems


# ---------------------------------------------------------------- the checker checks itself
def test_the_checker_finds_and_names_a_cycle(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    # a relative import inside a function is an edge too
    (package / "sub" / "b.py").write_text("def f():\n    from . import c\n")
    (package / "sub" / "c.py").write_text("import os\n\ndef g():\n    import pkg.a\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.sub.c"} and graph["pkg.sub.c"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg.a"]
    (package / "sub" / "c.py").write_text("from ..a import x\n")  # a name of pkg.a
    assert find_cycle(import_graph(tmp_path, "pkg")) == ["pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg.a"]
    (package / "sub" / "c.py").write_text("X = 1\n")
    assert find_cycle(import_graph(tmp_path, "pkg")) is None
    assert part_graph(import_graph(tmp_path, "pkg")) == {
        "pkg": set(),
        "pkg.a": {"pkg.sub"},
        "pkg.sub": set(),
    }
