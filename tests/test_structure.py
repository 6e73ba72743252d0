"""The architecture's rules, checked: layers, no import circles, small modules and functions.

`explorer/core` is pure computation: it never imports the app, widgets or presentation code.
Chart builders never display. No two modules of `explorer/` import each other, directly or
through others (function-level imports count too). Modules stay under 400 lines, functions
under 40.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "explorer"
PRESENTATION = ("explorer.app", "explorer.charts", "explorer.reports", "altair", "ipywidgets", "IPython",
                "tqdm", "anywidget", "traitlets")  # fmt: skip
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 40


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported_names(path: Path, name: str) -> set[str]:
    """Every module name an `import` statement in `path` names, at any depth of the file
    (relative imports resolved): `from a.b import c` names a.b and a.b.c."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: {n for n in imported_names(p, m) if n in mods and n not in (m, "explorer")} for m, p in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_planted_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_explorer():
    found = cycles(import_graph())
    assert found == [], f"import circles: {found}"


def test_core_source_imports_no_presentation_code():
    offenders = {
        name: sorted(n for n in imported_names(path, name) if n.startswith(PRESENTATION))
        for name, path in modules().items()
        if name.startswith("explorer.core")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_every_core_module_loads_no_app_or_widget_code():
    """At run time too (tqdm is left out: transformers itself imports it)."""
    code = (
        "import importlib, pkgutil, sys, explorer.core\n"
        "for m in pkgutil.walk_packages(explorer.core.__path__, 'explorer.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('explorer.app', 'explorer.charts', "
        "'altair', 'ipywidgets', 'IPython', 'anywidget')))\n"
        "print(len([m for m in sys.modules if m.startswith('explorer.core.')]), bad)\n"
        "sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert int(done.stdout.split()[0]) >= 30  # it did import the whole core


def test_chart_builders_import_no_widgets():
    names = imported_names(PACKAGE / "charts.py", "explorer.charts")
    assert not {n for n in names if n.startswith(("ipywidgets", "IPython", "explorer.app"))}


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path):
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES


def test_functions_stay_short():
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_the_app_starts_without_altair():
    """altair (about a second to import) loads with the first chart, not with the app: a
    module-level `alt.` anywhere on the app's import path would undo it."""
    code = "import sys\nfrom explorer.app import Explorer\nExplorer()\nprint('altair' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"
