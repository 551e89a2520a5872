"""The code's shape: every import (in-function ones included) goes down the layers, never up.

Layers, lowest first: the base (``compilot/`` settings, model location, data-dir paths,
languages, the adapter pointer and the round lock) ← ``feedback/`` ← ``server/`` ←
``training/`` ← the app (the command line, the demo, the report, the LSP client). A module may
import from its own layer or a lower one; within a layer the modules form no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"compilot": "compilot", "feedback": "compilot.feedback",
           "server": "compilot.server", "training": "compilot.training"}
BASE = {"compilot", "compilot.settings", "compilot.models", "compilot.paths",
        "compilot.languages", "compilot.pointer", "compilot.round_lock",
        "compilot.thread_budget"}
LAYERS = ("base", "feedback", "server", "training", "app")


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name (a package by its own name)."""
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def layer(module: str) -> str:
    """The layer of a dotted module name of the package."""
    for name in ("feedback", "server", "training"):
        if module == f"compilot.{name}" or module.startswith(f"compilot.{name}."):
            return name
    return "base" if module in BASE else "app"


def imports(module: str, path: Path, known: set[str]) -> list[tuple[int, str]]:
    """(line, module) of every package module that ``module`` imports, anywhere in the file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from compilot.training import rounds` imports the module compilot.training.rounds
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                     for a in node.names]
        else:
            continue
        found += [(node.lineno, name) for name in names if name in known]
    return found


MODULES = modules()
GRAPH = {name: imports(name, path, set(MODULES)) for name, path in MODULES.items()}


def test_the_layers_hold_every_module() -> None:
    assert {layer(m) for m in MODULES} == set(LAYERS)
    assert BASE <= set(MODULES), BASE - set(MODULES)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module: str) -> None:
    mine = LAYERS.index(layer(module))
    upward = [f"{MODULES[module].relative_to(ROOT)}:{line} imports {target} ({layer(target)})"
              for line, target in GRAPH[module]
              if LAYERS.index(layer(target)) > mine]
    assert not upward, f"{module} is in the {layer(module)} layer:\n" + "\n".join(upward)


def test_no_cycles_between_modules() -> None:
    """A cycle inside a layer is a shared piece living inside one of its users."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module], path[len(path):] = "open", [module]
        for _, target in GRAPH[module]:
            if target == module or target in ("compilot",):
                continue
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[module] = "done"
        path.pop()
        return None

    for module in sorted(GRAPH):
        if module not in state and (cycle := visit(module)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


@pytest.mark.parametrize(("source", "expected"), [
    pytest.param("from compilot.training.registry import Registry\n", "compilot.training.registry",
                 id="from-module"),
    pytest.param("def f():\n    from compilot.training import rounds\n",
                 "compilot.training.rounds", id="in-function-submodule"),
    pytest.param("import compilot.server.engine\n", "compilot.server.engine", id="plain-import"),
])
def test_the_reader_sees_every_kind_of_import(tmp_path: Path, source: str,
                                              expected: str) -> None:
    """The checker itself: an upward import of each form is found (so the test can fail)."""
    path = tmp_path / "probe.py"
    path.write_text(source)
    found = [target for _, target in imports("compilot.feedback.probe", path, set(MODULES))]
    assert found == [expected]
    assert LAYERS.index(layer(expected)) > LAYERS.index("feedback")
