"""No import cycles between the modules of the serving side, db and dashboard (function-level imports count:
a lazy import is still a dependency). The training code and the synthetic-data generator are left to their owners."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import PROJECT_ROOT

PACKAGES = ("inference", "db", "dashboard")


def _module(path: Path) -> str:
    parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the project modules it imports (anywhere in the file)."""
    files = [p for pkg in PACKAGES for p in (PROJECT_ROOT / pkg).rglob("*.py")]
    skip = {"training", "synth", "migrations"}  # training and synthetic data: checked by their owners
    files = [p for p in files if not skip & set(p.relative_to(PROJECT_ROOT).parts)]
    modules = {_module(p): p for p in files}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles() -> None:
    """Test that no module of inference (serving side), db or dashboard imports itself through others."""
    graph = import_graph()
    assert "inference.worker" not in graph["inference.queue"]  # the worker imports the queue, never the reverse
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])
