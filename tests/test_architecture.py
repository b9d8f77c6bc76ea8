"""The layout's import rules (docs/architecture.md): layers import only layers below them,
and no module imports itself back through others."""
from __future__ import annotations

import ast
import os

import pytest

SIM = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sim")

# lowest first; a module belongs to the first entry its dotted name starts with
LAYERS = ["sim.spec", "sim.core", "sim.catalog", "sim.timing", "sim.demand", "sim.fabric", "sim.serving",
          "sim.ops", "sim.scenario", "sim.simulation", "sim.results", "sim.tools", "sim.cli"]
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
    for node in ast.walk(ast.parse(open(path).read())):
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
        for node in ast.walk(ast.parse(open(path).read())):
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


# Modules and functions still over the limits, at their size when the limit came in: they
# may shrink, not grow, and a new one may not join them.
LONG_MODULES = {
    "sim.demand.arrivals": 568, "sim.demand.sessions": 450, "sim.fabric.network": 472,
    "sim.fabric.topology": 701, "sim.results.analysis": 526, "sim.results.html_report": 448,
    "sim.results.report": 473, "sim.results.trace": 550, "sim.serving.replica": 659,
    "sim.timing.kernels": 500, "sim.tools.fidelity": 463, "sim.tools.plan": 479, "sim.tools.sweep": 467,
}
LONG_FUNCTIONS = {
    "sim.cli.checking._validate_model": 63, "sim.cli.running._compare": 67, "sim.cli.sizing._plan": 108,
    "sim.demand.workload.generate": 85, "sim.results.intervals.section": 62,
    "sim.results.report.print_summary": 138, "sim.results.trace.build_trace": 85,
    "sim.scenario.checks.check_modalities": 73, "sim.scenario.scenario_from_source": 85,
    "sim.serving.scheduler.engine_run": 188, "sim.serving.sharing.check": 70,
    "sim.timing.deployment._pack": 67, "sim.timing.deployment.deploy": 108,
    "sim.tools.fidelity.markdown_report": 66,
}
MAX_FUNCTION_LINES = 60


def test_modules_stay_short():
    over = {}
    for module, path in modules().items():
        lines = sum(1 for _ in open(path))
        if lines > max(MAX_LINES, LONG_MODULES.get(module, 0)):
            over[module] = lines
    assert over == {}, f"modules over {MAX_LINES} lines (split them by concept)"


def test_functions_stay_short():
    over = {}
    for module, path in modules().items():
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name, lines = f"{module}.{node.name}", node.end_lineno - node.lineno + 1
                if lines > max(MAX_FUNCTION_LINES, LONG_FUNCTIONS.get(name, 0)):
                    over[name] = lines
    assert over == {}, f"functions over {MAX_FUNCTION_LINES} lines (give their stages names)"
