"""The layout's import rules (docs/explanation/architecture.md): layers import only layers below them,
and no module imports itself back through others."""
from __future__ import annotations

import ast
import os

import pytest

SIM = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sim")

# lowest first; a module belongs to the first entry its dotted name starts with
LAYERS = ["sim.spec", "sim.core", "sim.catalog", "sim.timing", "sim.demand", "sim.fabric", "sim.serving",
          "sim.ops", "sim.scenario", "sim.simulation", "sim.results", "sim.tools", "sim.cli", "sim.reference"]
# the package itself: its docstring, version and the numba cache check run before anything
INFRASTRUCTURE = {"sim", "sim.compiled_cache"}
MAX_LINES = 400


def modules() -> dict[str, str]:
    found = {}
    for folder, _, files in os.walk(SIM):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = "sim." + os.path.relpath(path, SIM)[:-3].replace(os.sep, ".")
                found[dotted.removesuffix(".__init__")] = path
    return found


def imports(module: str, path: str, known: dict[str, str]) -> set[str]:
    """The sim modules `module` imports, at its top or inside functions."""
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    out = set()
    with open(path) as fh:
        tree = ast.parse(fh.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if full in known else base)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m for m in out if m in known and m != module}


def layer(module: str) -> int | None:
    for i, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + "."):
            return i
    return None


GRAPH = {m: imports(m, p, modules()) for m, p in modules().items()}


def test_every_relative_import_names_a_module():
    """Imports inside functions run only when called: a wrong one would pass every other test."""
    known = modules()
    wrong = []
    for module, path in known.items():
        package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
        with open(path) as fh:
            tree = ast.parse(fh.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
                if base not in known:
                    wrong.append(f"{module}:{node.lineno}: {base}")
    assert wrong == []


def test_every_module_has_a_layer():
    assert [m for m in GRAPH if layer(m) is None and m not in INFRASTRUCTURE] == []


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_a_layer_imports_only_the_layers_below_it(module):
    if module in INFRASTRUCTURE:
        return
    upward = sorted(t for t in GRAPH[module] if t not in INFRASTRUCTURE and layer(t) > layer(module))
    assert upward == [], f"{module} ({LAYERS[layer(module)]}) imports from layers above it"


def test_no_import_circle():
    state: dict[str, int] = {}   # 1: on the current path, 2: done

    def visit(m, path):
        state[m] = 1
        for t in sorted(GRAPH[m] - INFRASTRUCTURE):
            if state.get(t) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(t):] + [t]))
            if t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])


# Functions over the limit, at their size: they may shrink, not grow, and one joins them only
# where a longer function reads better and its docstring says why.
LONG_MODULES: dict[str, int] = {}
LONG_FUNCTIONS = {
    # counters kept in registers: split through shared arrays it ran 35 % slower (its docstring)
    "sim.serving.scheduler.engine_run": 188,
}
MAX_FUNCTION_LINES = 60


def test_modules_stay_short():
    over = {}
    for module, path in modules().items():
        with open(path) as fh:
            lines = sum(1 for _ in fh)
        if lines > max(MAX_LINES, LONG_MODULES.get(module, 0)):
            over[module] = lines
    assert over == {}, f"modules over {MAX_LINES} lines (split them by concept)"


def test_functions_stay_short():
    over = {}
    for module, path in modules().items():
        with open(path) as fh:
            tree = ast.parse(fh.read())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name, lines = f"{module}.{node.name}", node.end_lineno - node.lineno + 1
                if lines > max(MAX_FUNCTION_LINES, LONG_FUNCTIONS.get(name, 0)):
                    over[name] = lines
    assert over == {}, f"functions over {MAX_FUNCTION_LINES} lines (give their stages names)"
