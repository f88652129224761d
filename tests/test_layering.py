"""The folders are the stages of the data flow (docs/explanation/design.md): a stage imports only stages below it."""

from __future__ import annotations

import ast
import pathlib

import aeqprop_circuits

PACKAGE = pathlib.Path(aeqprop_circuits.__file__).parent
# Lowest first. The root __init__ (the public API) and __main__ may import anything.
STAGES = ["errors", "circuit", "data", "netlist", "solvers", "systems", "learning", "experiments", "bench", "cli"]
RANK = {"errors": 0, "circuit": 1, "data": 1, "netlist": 2, "solvers": 3, "systems": 4, "learning": 5,
        "experiments": 6, "bench": 7, "cli": 8}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "aeqprop_circuits" and len(parts) > 1 else None


def _imports(path: pathlib.Path):
    """(line, imported module) of every import of the package in a file, at any depth."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                raise AssertionError(f"{path}:{node.lineno}: relative import; the package imports absolutely")
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        yield path, ".".join(relative.parts)


def test_every_module_belongs_to_a_stage():
    for path, module in _modules():
        stage = _stage(module)
        assert stage in RANK or stage in ("__init__", "__main__"), f"{path}: not in a stage folder {STAGES}"


def test_no_stage_imports_a_higher_one():
    upward = []
    for path, module in _modules():
        stage = _stage(module)
        if stage not in RANK:
            continue
        for line, imported in _imports(path):
            target = _stage(imported)
            if target in RANK and RANK[target] > RANK[stage]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {stage} imports {imported}")
    assert not upward, "\n".join(upward)


def test_module_imports_have_no_cycles():
    """Module-level imports only (imports inside functions are deferred and do not cycle at import time)."""
    graph = {}
    for path, module in _modules():
        tree = ast.parse(path.read_text())
        edges = set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aeqprop_circuits"):
                edges.add(node.module)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.startswith("aeqprop_circuits"))
        graph[module.removesuffix(".__init__")] = edges

    def resolve(name):
        return name if name in graph else name.rsplit(".", 1)[0]

    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(resolve(e) for e in graph.get(node, ())):
            if nxt == node:
                continue
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail, node, nxt]))
            if nxt in graph and not state.get(nxt):
                visit(nxt, [*trail, node])
        state[node] = 2

    for module in graph:
        if not state.get(module):
            visit(module, [])


def test_the_layering_check_sees_an_upward_import(tmp_path):
    """The check itself: a solver importing the learning stage is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from aeqprop_circuits.learning.algorithms import get_algorithm\n")
    assert [(1, "aeqprop_circuits.learning.algorithms")] == list(_imports(bad))
    assert RANK[_stage("aeqprop_circuits.learning.algorithms")] > RANK["solvers"]
