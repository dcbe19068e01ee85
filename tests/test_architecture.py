"""Structural rules from ARCHITECTURE.md that a test can enforce, read from the code.

The import rules parse every ``explorer/**/*.py`` with :mod:`ast` and see every
import: at module level, inside functions and classes, under ``if TYPE_CHECKING:``,
``import x`` and ``from x import y``, with relative imports resolved. Imports made
from strings (``importlib.import_module``) are not seen.

How an import becomes an edge of the module graph:

* ``import explorer.a.b`` -> ``explorer.a.b`` (not its parent packages: running
  their ``__init__`` is Python's business, not a dependency the author chose);
* ``from explorer.a import b`` -> ``explorer.a.b`` when that is a module file,
  otherwise ``explorer.a`` (the package ``__init__`` that defines ``b``);
* ``import explorer`` / ``from explorer import name`` -> ``explorer``, the facade.

The facade ``explorer/__init__.py`` re-exports the public API: it is the root and
may import any package. An edge *to* it therefore depends on everything the facade
imports, and a cycle through it is reported like any other (``explorer.presets ->
explorer -> explorer.presets``). Only the top layers, ``explorer/ui``,
``explorer/commands``, ``explorer/cli.py`` and ``explorer/__main__.py`` (which the
facade does not import), may write ``import explorer as ex``; library modules import
the submodule they use.

The graph is built once per session (:func:`explorer_graph`); the checks are plain
functions of a graph, and the tests at the end run them on tiny synthetic packages
to show that each check fails on a reintroduced leak.
"""

from __future__ import annotations

import ast
import functools
import itertools
import re
import textwrap
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "explorer"


# ---------------------------------------------------------------- the import graph
@dataclass(frozen=True)
class Edge:
    """One import statement's dependency.

    Attributes:
        source: The importing module (``explorer.presets.base``).
        target: The imported module: a module of the package (resolved as in the
            module docstring) or an external dotted name (``plotly.graph_objects``).
        path: The importing file, relative to the scanned root.
        line: Its line number.
        where: ``"module level"``, ``"in a function"`` or ``"under TYPE_CHECKING"``.
    """

    source: str
    target: str
    path: str
    line: int
    where: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.target} ({self.where})"


@dataclass(frozen=True)
class ImportGraph:
    """Every import of one package: its modules and the edges out of them."""

    package: str
    modules: dict[str, str]  # module name -> file relative to the root
    edges: tuple[Edge, ...]

    def internal(self) -> list[Edge]:
        """Edges between modules of the package (self-imports dropped)."""
        return [
            e for e in self.edges if e.target in self.modules and e.target != e.source
        ]


def _module_name(path: Path, root: Path) -> tuple[str, bool]:
    """(dotted module name, is a package ``__init__``) of a file under ``root``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _raw_imports(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, str]]:
    """(node, where) for every import statement, with the context it runs in."""
    found = []

    def visit(node: ast.AST, where: str) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append((node, where))
            return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            where = "in a function"
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.body:
                visit(statement, "under TYPE_CHECKING")
            for statement in node.orelse:
                visit(statement, where)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, where)

    visit(tree, "module level")
    return found


def _resolve_from(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module named by ``from <...> import`` in ``module``."""
    if not node.level:
        return node.module or ""
    package = module if is_package else module.rpartition(".")[0]
    parts = package.split(".")
    base = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
    return ".".join([*base, *([node.module] if node.module else [])])


def build_graph(root: Path, package: str) -> ImportGraph:
    """Parses every ``.py`` file of ``root/package`` into an :class:`ImportGraph`."""
    files = sorted((root / package).rglob("*.py"))
    modules: dict[str, str] = {}
    infos = []
    for path in files:
        name, is_package = _module_name(path, root)
        relative = path.relative_to(root).as_posix()
        modules[name] = relative
        infos.append((path, name, is_package, relative))
    edges = []
    for path, name, is_package, relative in infos:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
        for node, where in _raw_imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve_from(node, name, is_package)
                targets = [
                    f"{base}.{alias.name}"
                    if f"{base}.{alias.name}" in modules
                    else base
                    for alias in node.names
                ]
            for target in dict.fromkeys(targets):
                edges.append(Edge(name, target, relative, node.lineno, where))
    return ImportGraph(package, modules, tuple(edges))


@functools.cache
def explorer_graph() -> ImportGraph:
    """The import graph of ``explorer/``, parsed once per session."""
    return build_graph(ROOT, "explorer")


# ---------------------------------------------------------------------- checks
def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def forbidden_imports(
    graph: ImportGraph, target: str, allowed: tuple[str, ...]
) -> list[str]:
    """Imports of ``target`` (a dotted prefix) from modules outside ``allowed``."""
    return [
        str(edge)
        for edge in graph.edges
        if _within(edge.target, target)
        and not any(_within(edge.source, prefix) for prefix in allowed)
    ]


def ui_leaks(graph: ImportGraph) -> list[str]:
    """(a) Nothing outside ``<pkg>/ui`` imports ``<pkg>.ui``."""
    ui = f"{graph.package}.ui"
    return forbidden_imports(graph, ui, (ui,))


def streamlit_leaks(graph: ImportGraph) -> list[str]:
    """Only ``<pkg>/ui`` imports streamlit (``app.py`` and pages are outside)."""
    return forbidden_imports(graph, "streamlit", (f"{graph.package}.ui",))


def plotly_leaks(graph: ImportGraph) -> list[str]:
    """(b) Only ``<pkg>/plots`` and ``<pkg>/ui`` import plotly."""
    pkg = graph.package
    return forbidden_imports(graph, "plotly", (f"{pkg}.plots", f"{pkg}.ui"))


def facade_imports(graph: ImportGraph) -> list[str]:
    """Library modules that import the facade (``import <pkg>`` depends on all)."""
    pkg = graph.package
    top = tuple(f"{pkg}.{name}" for name in ("ui", "commands", "cli", "__main__"))
    return [
        f"{edge}: import the submodule you use instead of the whole public API"
        for edge in graph.edges
        if edge.target == pkg
        and edge.source != pkg
        and not any(_within(edge.source, prefix) for prefix in top)
    ]


def _cycles(nodes, edges: dict[tuple[str, str], Edge]):
    """(members, a shortest cycle) per strongly connected component (Tarjan)."""
    successors: dict[str, list[str]] = {n: [] for n in nodes}
    for source, target in edges:
        successors[source].append(target)
    for targets in successors.values():
        targets.sort()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(successors):
        if start in index:
            continue
        work = [(start, iter(successors[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(successors[child])))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or (node, node) in edges:
                    components.append(sorted(component))
    cycles = []
    for component in sorted(components):
        members, first = set(component), component[0]
        parents: dict[str, str] = {}
        queue = deque([first])
        while queue:  # breadth first from `first` back to itself, inside the SCC
            node = queue.popleft()
            if (node, first) in edges:
                path = [first]
                while node != first:
                    path.append(node)
                    node = parents[node]
                cycles.append((component, [first, *reversed(path[1:]), first]))
                break
            for child in successors[node]:
                if child in members and child not in parents and child != first:
                    parents[child] = node
                    queue.append(child)
    return cycles


def _describe(component: list[str], cycle: list[str], edges) -> str:
    steps = [f"  {a} -> {b}   [{edges[a, b]}]" for a, b in itertools.pairwise(cycle)]
    text = "import circle " + " -> ".join(cycle) + ":\n" + "\n".join(steps)
    if len(component) > len(cycle) - 1:
        text += "\n  (all mutually dependent: " + ", ".join(component) + ")"
    return text


def module_cycles(graph: ImportGraph) -> list[str]:
    """(c) Import circles between modules of the package, with the edges."""
    edges: dict[tuple[str, str], Edge] = {}
    for edge in graph.internal():
        edges.setdefault((edge.source, edge.target), edge)
    return [_describe(*found, edges) for found in _cycles(graph.modules, edges)]


def package_of(module: str, package: str) -> str:
    """The top-level unit of a module: ``<pkg>.<first part>`` (or the facade)."""
    parts = module.split(".")
    return package if len(parts) == 1 else ".".join(parts[:2])


def package_cycles(graph: ImportGraph) -> list[str]:
    """(d) Import circles between top-level packages and modules of the package.

    The facade is a node whose edges are its own imports (everything public), so a
    package importing the facade depends on every package the facade imports.
    """
    edges: dict[tuple[str, str], Edge] = {}
    for edge in graph.internal():
        source = package_of(edge.source, graph.package)
        target = package_of(edge.target, graph.package)
        if source != target:
            edges.setdefault((source, target), edge)
    nodes = {package_of(m, graph.package) for m in graph.modules}
    return [_describe(*found, edges) for found in _cycles(nodes, edges)]


def _report(violations: list[str]) -> str:
    return "\n".join(violations)


# ----------------------------------------------------------- rules on explorer/
def test_the_graph_sees_every_file_and_kind_of_import():
    graph = explorer_graph()
    assert graph.modules["explorer"] == "explorer/__init__.py"
    assert "explorer.problems.spec" in graph.modules
    wheres = {edge.where for edge in graph.edges}
    assert {"module level", "in a function"} <= wheres
    assert any(e.target == "explorer.problems.spec" for e in graph.edges)


def test_nothing_outside_the_ui_package_imports_it():
    violations = ui_leaks(explorer_graph())
    assert violations == [], _report(violations)


def test_only_the_ui_package_imports_streamlit():
    violations = streamlit_leaks(explorer_graph())
    assert violations == [], _report(violations)


def test_only_plots_and_ui_import_plotly():
    violations = plotly_leaks(explorer_graph())
    assert violations == [], _report(violations)


def test_no_import_circle_between_modules():
    violations = module_cycles(explorer_graph())
    assert violations == [], _report(violations)


def test_no_import_circle_between_packages():
    violations = package_cycles(explorer_graph())
    assert violations == [], _report(violations)


def test_library_modules_do_not_import_the_facade():
    violations = facade_imports(explorer_graph())
    assert violations == [], _report(violations)


def _library_files():
    return [
        path
        for path in LIBRARY.rglob("*.py")
        if "ui" not in path.relative_to(LIBRARY).parts
    ]


def test_no_hidden_global_state_in_the_library():
    pattern = re.compile(
        r"torch\.(manual_seed|set_default_dtype|set_default_device)\(|np\.random\.seed\("
    )
    offenders = [
        str(path.relative_to(ROOT))
        for path in _library_files()
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_public_api_names():
    import explorer as ex

    for name in (
        "problem",
        "curvature",
        "PROBLEMS",
        "CURVATURES",
        "register_curvature",
    ):
        assert hasattr(ex, name)
    p = ex.problem("moons_mlp")
    for attribute in ("model", "inputs", "targets", "theta0", "objective"):
        assert hasattr(p, attribute)
    assert p.loss.torch_loss() is not None


# ------------------------------------------- the checker on synthetic packages
#: A clean tiny package with the same layers: every check passes on it.
CLEAN = {
    "pkg/__init__.py": "from pkg.core import a\nfrom pkg import plots, runs\n",
    "pkg/core/__init__.py": "",
    "pkg/core/a.py": "import math\nfrom . import b\n",
    "pkg/core/b.py": "from typing import TYPE_CHECKING\n",
    "pkg/runs/__init__.py": "from pkg.runs.x import go\n",
    "pkg/runs/x.py": "from pkg.core.a import math\n\ndef go():\n    from ..core import b\n",
    "pkg/plots/__init__.py": "import plotly.graph_objects as go\n",
    "pkg/ui/__init__.py": "",
    "pkg/ui/widgets.py": "import streamlit as st\nfrom pkg.plots import go\n",
    "pkg/commands/run.py": "def main():\n    import pkg as p\n",
}

CHECKS = {
    "ui": ui_leaks,
    "streamlit": streamlit_leaks,
    "plotly": plotly_leaks,
    "module_cycles": module_cycles,
    "package_cycles": package_cycles,
    "facade": facade_imports,
}

#: (file, appended code, the checks that must fail, fragments of their messages)
LEAKS = {
    "ui_lazy": (
        "pkg/core/b.py",
        "def f():\n    from pkg.ui import widgets\n",
        {"ui"},
        ["pkg/core/b.py:", "imports pkg.ui.widgets (in a function)"],
    ),
    "ui_type_checking_relative": (
        "pkg/core/b.py",
        "if TYPE_CHECKING:\n    from ..ui import widgets\n",
        {"ui"},
        ["pkg/core/b.py:3 imports pkg.ui.widgets (under TYPE_CHECKING)"],
    ),
    "streamlit": (
        "pkg/runs/x.py",
        "import streamlit\n",
        {"streamlit"},
        ["pkg/runs/x.py:5 imports streamlit (module level)"],
    ),
    "plotly": (
        "pkg/core/a.py",
        "from plotly import graph_objects\n",
        {"plotly"},
        ["pkg/core/a.py:3 imports plotly (module level)"],
    ),
    "module_cycle": (
        "pkg/core/b.py",
        "class Lazy:\n    def f(self):\n        from pkg.core.a import math\n",
        {"module_cycles"},
        [
            "pkg.core.a -> pkg.core.b -> pkg.core.a",
            "pkg/core/b.py:4",
            "pkg/core/a.py:2",
        ],
    ),
    "package_cycle": (  # a new module nobody imports: no module circle
        "pkg/core/c.py",
        "from pkg.runs import go\n",
        {"package_cycles"},
        ["pkg.core -> pkg.runs -> pkg.core", "pkg/core/c.py:1", "pkg/runs/x.py:1"],
    ),
    "facade": (
        "pkg/core/b.py",
        "import pkg\n",
        {"facade", "module_cycles", "package_cycles"},
        [
            "pkg/core/b.py:2 imports pkg (module level): import the submodule",
            "pkg -> pkg.core.a -> pkg.core.b -> pkg",
            "pkg -> pkg.core -> pkg",
        ],
    ),
}


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def _failing(graph: ImportGraph) -> dict[str, list[str]]:
    results = {name: check(graph) for name, check in CHECKS.items()}
    return {name: found for name, found in results.items() if found}


def test_the_clean_synthetic_package_passes_every_check(tmp_path):
    _write(tmp_path, CLEAN)
    graph = build_graph(tmp_path, "pkg")
    assert _failing(graph) == {}
    # relative and lazy imports resolve to modules; `from pkg import plots` too
    targets = {(e.source, e.target, e.where) for e in graph.internal()}
    assert ("pkg.runs.x", "pkg.core.b", "in a function") in targets
    assert ("pkg.core.a", "pkg.core.b", "module level") in targets
    assert ("pkg", "pkg.plots", "module level") in targets
    assert ("pkg.runs", "pkg.runs.x", "module level") in targets


@pytest.mark.parametrize("leak", list(LEAKS))
def test_each_check_fails_on_a_reintroduced_leak(tmp_path, leak):
    path, code, expected, fragments = LEAKS[leak]
    files = dict(CLEAN)
    files[path] = files.get(path, "") + code
    _write(tmp_path, files)
    failing = _failing(build_graph(tmp_path, "pkg"))
    assert set(failing) == expected, failing
    text = _report([v for found in failing.values() for v in found])
    for fragment in fragments:
        assert fragment in text, text


def test_every_circle_is_reported_with_a_shortest_path():
    pairs = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "b"), ("d", "e"), ("e", "d")]
    pairs += [("c", "f"), ("f", "g")]  # f, g hang off a circle: not part of one
    edges = {pair: Edge(*pair, f"{pair[0]}.py", 1, "module level") for pair in pairs}
    found = _cycles("abcdefg", edges)
    assert found == [
        (["a", "b", "c"], ["a", "b", "c", "a"]),
        (["d", "e"], ["d", "e", "d"]),
    ]
    text = _describe(*found[0], edges)
    assert "a -> b -> c -> a" in text and "[c.py:1 imports a (module level)]" in text
