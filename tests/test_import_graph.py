"""The import graph of `node`, `storage` and `incentives` has no circles (issue 18).

Every import counts: module level, inside functions (lazy) and under ``TYPE_CHECKING``, because
each is a dependency a reader must follow and a circle among them is a room that cannot be
understood, or moved, alone.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("node", "storage", "incentives")


def _module_name(path: Path) -> str:
    """The dotted name of a source file under the repository root."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(["swarmchain", *(parts[:-1] if parts[-1] == "__init__" else parts)])


def _modules() -> dict[str, Path]:
    """Every module of the three packages, by dotted name."""
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        if "node_modules" not in path.parts
    }


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that `name` imports anywhere in its source."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                # `from pkg import mod` imports the module pkg.mod; `from mod import x`, mod.
                full = f"{base}.{alias.name}"
                targets.add(full if full in modules else base)
    found = set()
    for target in targets:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def _circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_circle_finder_sees_a_circle_through_three_modules() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

    assert _circles(graph) == [frozenset({"a", "b", "c"})]


def test_imports_form_no_circle() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}

    circles = [sorted(circle) for circle in _circles(graph)]

    assert not circles, f"import circles: {circles}"


def test_storage_has_no_import_circle_at_all() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}

    circles = [sorted(c) for c in _circles(graph) if any(m.startswith("storage") for m in c)]

    assert not circles


@pytest.mark.parametrize(
    "module", sorted(name for name in _modules() if name.split(".")[1] == "storage")
)
def test_each_storage_module_imports_alone(module: str) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }

    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr


def test_no_source_imports_a_package_by_its_folder_name() -> None:
    # `node` would import a second copy of every module beside `swarmchain.node`.
    sources = [
        path
        for folder in (*PACKAGES, "scripts", "tests")
        for path in sorted((REPO / folder).rglob("*.py"))
        if "node_modules" not in path.parts
    ]
    bare = []
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            bare += [f"{path.name}: {n}" for n in names if n.split(".")[0] in PACKAGES]

    assert not bare, bare


def test_the_distribution_lists_every_package() -> None:
    # setuptools maps swarmchain.* onto the folders, package by package: one left out of
    # pyproject.toml would be missing from an installed wheel.
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        _module_name(init)
        for package in PACKAGES
        for init in (REPO / package).rglob("__init__.py")
        if "node_modules" not in init.parts
    }

    assert listed == found
