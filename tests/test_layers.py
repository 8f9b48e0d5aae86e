"""The import structure of src/crystalgnn: every import runs down the layer order of README's
"How it is built" section, and no modules import each other in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "crystalgnn"

#: README's layer order: a module may import its own layer and the layers before it.
LAYERS: list[set[str]] = [
    {"registry", "errors", "parallel", "paths", "transforms", "datasets", "features", "zoo"},
    {"config"},
    {"structures"},
    {"graphs", "descriptors"},
    {"data"},
    {"io"},
    {"reports", "models"},
    {"training"},
    {"predict", "baselines", "cache_admin"},
    {"analysis", "benchmark"},
    {"cli", "__main__"},
]
LAYER_OF = {name: k for k, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """crystalgnn modules imported by ``path`` (at the top or inside functions; type-checking
    imports included: they are arrows too)."""
    found: set[str] = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("crystalgnn."))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base == "crystalgnn":
                found.update(f"crystalgnn.{a.name}" for a in node.names)
            elif base.startswith("crystalgnn."):
                found.add(base)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path):
            # "from crystalgnn.x import y" may name a submodule y or an attribute of x
            while imported not in modules and "." in imported:
                imported = imported.rsplit(".", 1)[0]
            if imported in modules and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def _top(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_every_top_level_part_has_a_layer():
    parts = {_top(m) for m in _graph()} - {""}
    assert parts <= set(LAYER_OF), f"give these a layer (README and LAYERS): {sorted(parts - set(LAYER_OF))}"


def test_no_import_runs_up_the_layers():
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in _graph().items() if _top(module)
        for target in targets if _top(target) and LAYER_OF[_top(target)] > LAYER_OF[_top(module)]
    )
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
