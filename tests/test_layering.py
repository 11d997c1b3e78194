"""The package's import graph: no cycles, and no library layer imports a layer above it.

Layers, bottom to top (a module may import its own layer and those below):
common < datasets < model < training < report < sweep < benchmarks < commands (the top-level modules).
Function-level imports count too: a deferred import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mentor_ray

PACKAGE = Path(mentor_ray.__file__).parent
LAYERS = ["common", "datasets", "model", "training", "report", "sweep", "benchmarks"]
COMMANDS = len(LAYERS)  # the top-level modules: cli and one module per subcommand


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module ``name`` refers to: itself, or its package when ``name`` is a symbol in it."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if name.split(".")[0] == "mentor_ray":
                    target = _resolve(name, modules)
                    if target and target != mod:
                        graph[mod].add(target)
    return graph


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return 0  # mentor_ray/__init__.py: version and warning filters only
    if parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return COMMANDS


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycles():
    assert _cycles(import_graph()) == []


def test_no_module_imports_a_layer_above_its_own():
    upward = [f"{a} -> {b}" for a, targets in import_graph().items() for b in targets if layer(b) > layer(a)]
    assert upward == []


def test_library_modules_have_no_command_line():
    """argparse lives in the command modules only."""
    offenders = [m for m, path in _modules().items()
                 if layer(m) < COMMANDS and "argparse" in path.read_text()]
    assert offenders == []


def test_the_checks_can_fail():
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert layer("mentor_ray.sweep.tune") > layer("mentor_ray.training.trainer") > layer("mentor_ray.common.io")
    assert layer("mentor_ray.tune") == COMMANDS


if __name__ == "__main__":  # print the graph, layer by layer (for docs and the closing note)
    g = import_graph()
    for m in sorted(g, key=lambda m: (layer(m), m)):
        print(f"[{(LAYERS + ['commands'])[layer(m)] if '.' in m else 'package'}] {m} -> "
              f"{', '.join(sorted(g[m])) or '-'}")


def test_the_architecture_docs_table_lists_the_layers_in_order():
    """docs/architecture.md's package table is the layering: each package imports only those above it."""
    import re

    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| `(\w+)/` \|", text, flags=re.M)
    assert rows == LAYERS
