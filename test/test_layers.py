"""No import cycles between the parts of gausstr_core (its subpackages and top-level modules).

Parsed with ast, so nothing is imported. A part is a subpackage (gausstr_core/data, ...) or a
top-level module (gausstr_core/predict.py, ...); imports under `if TYPE_CHECKING:` are left out,
since they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import gausstr_core

CORE = Path(gausstr_core.__file__).resolve().parent


def _part(module: str) -> str:
    """'gausstr_core.data.synthetic.scene' -> 'data'; 'gausstr_core.predict' -> 'predict'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _runtime_imports(tree: ast.Module) -> Iterator[str]:
    """Absolute gausstr_core modules imported by `tree`, skipping `if TYPE_CHECKING:` blocks."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            names = []
        yield from (name for name in names if name.startswith("gausstr_core."))
        stack.extend(ast.iter_child_nodes(node))


def part_graph() -> dict[str, dict[str, str]]:
    """part -> {imported part: one importing file} over gausstr_core's .py files."""
    graph: dict[str, dict[str, str]] = {}
    for path in sorted(CORE.rglob("*.py")):
        relative = path.relative_to(CORE)
        part = relative.parts[0].removesuffix(".py")
        if part == "__init__":
            continue
        for module in _runtime_imports(ast.parse(path.read_text(), str(path))):
            target = _part(module)
            if target and target != part:
                graph.setdefault(part, {}).setdefault(target, str(relative))
    return graph


def find_cycle(graph: dict[str, dict[str, str]]) -> list[str]:
    """One cycle [a, b, ..., a] of the graph, or [] when it is acyclic (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_find_cycle_reports_a_cycle_and_accepts_a_dag() -> None:
    assert find_cycle({"a": {"b": ""}, "b": {"c": ""}, "c": {"a": ""}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": "", "c": ""}, "b": {"c": ""}}) == []


def test_the_graph_sees_the_known_layers() -> None:
    graph = part_graph()
    assert "foundation" in graph["data"] and "grid" in graph["config"]  # data -> foundation, config -> grid


def test_no_import_cycle_between_core_parts() -> None:
    graph = part_graph()
    cycle = find_cycle(graph)
    edges = ", ".join(f"{a} -> {b} ({graph[a][b]})" for a, b in zip(cycle, cycle[1:]))
    assert not cycle, f"import cycle between gausstr_core parts: {edges}"
