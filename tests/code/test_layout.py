"""The layout holds: no import cycle in the library, small modules, thin flows."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]


def test_no_import_cycle_between_library_modules() -> None:
    graph = grimp.build_graph("ranking")
    modules = sorted(graph.modules)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if state.get(imported) == 1:
                cycles.append(path[path.index(imported) :] + [imported])
            elif imported not in state:
                visit(imported, [*path, imported])
        state[module] = 2

    for module in modules:
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles[:3]


def test_no_library_module_is_much_over_400_lines() -> None:
    sizes = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines())
        for p in (ROOT / "ranking").rglob("*.py")
    }
    assert {k: v for k, v in sizes.items() if v > 420} == {}


def test_every_flow_task_body_is_a_short_call_into_the_library() -> None:
    """Logic lives in ``ranking``: a task's body is a few statements, not an algorithm."""
    long_tasks = []
    for path in (ROOT / "flows").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            decorators = [ast.unparse(d) for d in node.decorator_list]
            if any(d.startswith("task") for d in decorators):
                body = [s for s in node.body if not isinstance(s, ast.Expr)]  # docstrings
                if len(body) > 3:
                    long_tasks.append(f"{path.name}:{node.name} ({len(body)} statements)")
    assert not long_tasks
