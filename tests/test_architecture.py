"""The house rules a newcomer can rely on: imports flow one way between the packages, no
module imports itself back through another, light processes (the sweep driver, analysis)
never load JAX, and no module grows past 400 lines."""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("run_store", "griffin_core", "conf", "experiments", "analysis", "launch")

ALLOWED = {
    "run_store": set(),
    "griffin_core": set(),
    "conf": {"griffin_core"},
    "experiments": {"run_store", "griffin_core", "conf"},
    "analysis": {"run_store", "griffin_core"},
    "launch": {"run_store", "griffin_core", "conf", "experiments", "analysis"},
}
"""Which packages each may import (function-level imports included). The store and the core
stand alone; analysis reads runs only through the store (and the core's plain data code for
corpus entropies); launch is the top: it plans with experiments, and its demo draws figures."""


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}


def _imports(name: str, path: pathlib.Path) -> set[str]:
    """Every project module `path` names in an import statement, at any depth."""
    out = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[:len(name.split(".")) - node.level + is_package]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            out |= {module} | {f"{module}.{a.name}" for a in node.names}
    return {m for m in out if m and m.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports. `from pkg import sub` counts as importing
    pkg.sub; an import of one's own parent package is not an edge (Python initialises the
    parent before any submodule anyway)."""
    modules = _modules()

    def owner(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    graph = {}
    for name, path in modules.items():
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")))}
        graph[name] = {m for t in _imports(name, path) if (m := owner(t)) and m != name and m not in ancestors}
    return graph


def test_packages_import_only_downwards():
    crossings = {}
    for module, targets in _graph().items():
        for target in targets:
            a, b = module.split(".")[0], target.split(".")[0]
            if a != b and b not in ALLOWED[a]:
                crossings.setdefault(f"{a} -> {b}", []).append(f"{module} imports {target}")
    assert not crossings, crossings


def test_no_module_imports_itself_back():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, cycles


_LIGHT = """
import json, sys
import launch.cli, launch.plan, launch.grid, launch.display, launch.scheduler, launch.demo, launch.sweep_bench
from launch.cli import sweep_main
import analysis, analysis.cli, analysis.load, analysis.report
from analysis import figures
figures.discover()
heavy = sorted(m for m in ("jax", "jaxlib", "flax", "optax", "orbax") if m in sys.modules)
print(json.dumps(heavy))
"""


def test_the_sweep_driver_and_analysis_never_import_jax():
    """On a TPU host the driver would grab the chips; analysis runs on laptops without JAX."""
    out = subprocess.run([sys.executable, "-c", _LIGHT], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_no_module_over_400_lines():
    long = {str(p.relative_to(REPO)): n for p in _modules().values()
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long
