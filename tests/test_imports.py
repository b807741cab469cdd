"""The import graph of nnbench, read from its source with `ast`: no cycle between its modules
or between its parts (subpackages and top-level modules), and the layering rules of
docs/design.md ("Parts and layers").

Every import counts, wherever it is in the module: at the top, inside a function, under
``if TYPE_CHECKING``. A function-level import only delays a cycle, it does not remove it.
An import of ``a.b.c`` is an edge to ``a.b.c`` (not to the packages ``a`` and ``a.b``,
whose ``__init__`` runs first: every package that imports its own modules would otherwise
be a cycle); ``from a.b import c`` is an edge to the module ``a.b.c`` when there is one,
else to ``a.b``.
"""

from __future__ import annotations

import ast
import sys
from itertools import pairwise
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "nnbench"
PACKAGE = "nnbench"

# The entry layer: Hydra's side of a run. Nothing else imports it.
ENTRY = (
    "nnbench.__main__",
    "nnbench.cli",
    "nnbench.config",
    "nnbench.flow",
    "nnbench.hydra_job",
    "nnbench.parts",
    "nnbench.stack_flow",
    "nnbench.stack_plan",
    "nnbench.sweep_callback",
    "nnbench.user_errors",
)

# Below the entry layer, the one module that sees a Hydra config: the sweep's parent-run
# callback, which Hydra calls in the launching process.
HYDRA_CALLBACK = "nnbench.tracking.sweep"

# Part -> the only other parts it may import (docs/design.md, "Parts and layers").
ONLY = {
    "nnbench.errors": set(),
    "nnbench.epoch": set(),
    "nnbench.machine": set(),
    "nnbench.manifest": {"nnbench.backend", "nnbench.machine"},
    "nnbench.backend": {"nnbench.errors"},
    "nnbench.nn": {"nnbench.backend", "nnbench.errors"},
    "nnbench.optim": {"nnbench.errors"},
    "nnbench.data": {"nnbench.errors"},
    "nnbench.graphed": {"nnbench.backend", "nnbench.epoch", "nnbench.errors", "nnbench.nn"},
    "nnbench.train": {
        "nnbench.backend",
        "nnbench.epoch",
        "nnbench.errors",
        "nnbench.graphed",
        "nnbench.nn",
    },
    "nnbench.stack": {
        "nnbench.backend",
        "nnbench.epoch",
        "nnbench.errors",
        "nnbench.nn",
        "nnbench.optim",
        "nnbench.train",
    },
    "nnbench": {"nnbench.backend", "nnbench.nn", "nnbench.optim", "nnbench.train"},
    "nnbench.tracking": {
        "nnbench.errors",
        "nnbench.interrupt",
        "nnbench.manifest",
        "nnbench.weights",
    },
    "nnbench.report": {"nnbench.errors", "nnbench.tracking"},
}

# Third-party package -> the only modules (and packages) of nnbench that import it.
THIRD_PARTY = {
    "cupy": ("nnbench.backend",),
    "torch": ("nnbench.bench", "nnbench.reference"),
    "hydra": (
        "nnbench.cli",
        "nnbench.config",
        "nnbench.hydra_job",
        "nnbench.user_errors",
        HYDRA_CALLBACK,
    ),
    "omegaconf": (
        "nnbench.cli",
        "nnbench.flow",
        "nnbench.hydra_job",
        "nnbench.parts",
        "nnbench.stack_flow",
        "nnbench.stack_plan",
        "nnbench.user_errors",
        HYDRA_CALLBACK,
    ),
    "mlflow": ("nnbench.tracking", "nnbench.report"),
    "matplotlib": (
        "nnbench.tracking.curves",
        "nnbench.tracking.boundary",
        "nnbench.report.colors",
        "nnbench.report.plots",
    ),
}

# What a module may import as it is imported (outside its functions), besides the standard
# library: NumPy, and Hydra where the config is composed. Everything else loads in the
# function that uses it, so that `import nnbench` and a training run stay light.
AT_IMPORT = {
    "numpy": (PACKAGE,),
    "hydra": ("nnbench.cli", "nnbench.config", HYDRA_CALLBACK),
    "omegaconf": (
        "nnbench.cli",
        "nnbench.flow",
        "nnbench.hydra_job",
        "nnbench.parts",
        "nnbench.stack_flow",
        "nnbench.stack_plan",
        HYDRA_CALLBACK,
    ),
}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = SOURCE) -> dict[str, Path]:
    """{dotted name: file} of every module of the package at ``root``."""
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def imported(tree: ast.AST, name: str, is_package: bool, known) -> list[tuple[str, int]]:
    """``(module, line)`` for every import anywhere in ``tree``, the module ``name``'s
    source; relative imports resolved, ``from a import b`` read as ``a.b`` when ``known``
    has that module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append((full if full in known else base, node.lineno))
    return found


def run_at_import(tree: ast.Module) -> list[ast.stmt]:
    """The import statements of ``tree`` that run when the module is imported: everywhere
    but inside functions."""
    found, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return found


def nearest_module(target: str, known) -> str | None:
    """``target`` or the innermost package above it that is a module of ``known``."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def import_graph(root: Path = SOURCE):
    """(edges, third-party imports, those at import time): ``edges[a][b]`` is the first
    line of ``a`` importing ``b`` (both modules of the package); ``third[a]`` the top-level
    names of the other packages ``a`` imports, ``eager[a]`` those it imports outside its
    functions (the standard library left out)."""
    files = modules(root)
    edges: dict[str, dict[str, int]] = {name: {} for name in files}
    third: dict[str, set[str]] = {name: set() for name in files}
    eager: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in run_at_import(tree):
            for target, _ in imported(node, name, is_package, files):
                top = target.split(".")[0]
                if top not in (root.name, "__future__") and top not in sys.stdlib_module_names:
                    eager[name].add(top)
        for target, line in imported(tree, name, is_package, files):
            if target.split(".")[0] != root.name:
                third[name].add(target.split(".")[0])
                continue
            module = nearest_module(target, files)
            if module is not None and module != name:
                edges[name].setdefault(module, line)
    return edges, third, eager


def part(module: str) -> str:
    """The part a module belongs to: its subpackage of nnbench, or the top-level module
    itself (``nnbench`` alone is the package's own ``__init__``, the public API)."""
    return ".".join(module.split(".")[:2])


def part_graph(edges) -> dict[str, dict[str, str]]:
    """``graph[a][b]``: one import (``module:line``) by which part ``a`` imports part ``b``."""
    graph: dict[str, dict[str, str]] = {}
    for source, targets in edges.items():
        graph.setdefault(part(source), {})
        for target, line in targets.items():
            if part(source) != part(target):
                where = f"{source} (line {line}) imports {target}"
                graph[part(source)].setdefault(part(target), where)
    return graph


def find_cycle(graph) -> list[str] | None:
    """One cycle of ``graph`` (``{node: iterable of nodes}``) as ``[a, b, ..., a]``, or None."""
    state: dict[str, str] = {}  # "open" on the current path, "done" once fully explored
    path: list[str] = []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def describe(cycle: list[str], graph) -> str:
    """The cycle, then where each of its imports is (a line of a module graph, an import of
    a part graph)."""
    steps = []
    for a, b in pairwise(cycle):
        where = graph[a][b]
        steps.append(f"{a} line {where} imports {b}" if isinstance(where, int) else where)
    return "import cycle: " + " -> ".join(cycle) + "\n  " + "\n  ".join(steps)


def is_in(module: str, names) -> bool:
    return any(module == n or module.startswith(n + ".") for n in names)


EDGES, THIRD, EAGER = import_graph()
PARTS = part_graph(EDGES)


def test_the_graph_sees_every_kind_of_import(tmp_path):
    """Imports at the top, in functions, relative ones, and ``from package import module``."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg import top\n")
    top = "import os, yaml\ndef f():\n    from .sub import leaf\n    import numpy\n"
    (pkg / "top.py").write_text(top)
    (pkg / "sub" / "__init__.py").write_text("from . import leaf\n")
    (pkg / "sub" / "leaf.py").write_text("if True:\n    from ..top import f\n")
    edges, third, eager = import_graph(pkg)
    assert edges == {
        "pkg": {"pkg.top": 1},
        "pkg.top": {"pkg.sub.leaf": 3},
        "pkg.sub": {"pkg.sub.leaf": 1},
        "pkg.sub.leaf": {"pkg.top": 2},
    }
    assert third["pkg.top"] == {"os", "yaml", "numpy"}
    assert eager["pkg.top"] == {"yaml"}  # numpy only inside f; os is the standard library
    cycle = find_cycle(edges)
    assert cycle == ["pkg.top", "pkg.sub.leaf", "pkg.top"]
    assert describe(cycle, edges).splitlines()[1:] == [
        "  pkg.top line 3 imports pkg.sub.leaf",
        "  pkg.sub.leaf line 2 imports pkg.top",
    ]
    parts = part_graph(edges)  # the part pkg.sub and the module pkg.top import each other
    assert find_cycle(parts) == ["pkg.top", "pkg.sub", "pkg.top"]
    assert "pkg.sub.leaf (line 2) imports pkg.top" in describe(find_cycle(parts), parts)


def test_the_graph_is_nnbench_as_it_is():
    """Known imports are found, including function-level ones."""
    assert "nnbench.tracking.sweep" in EDGES["nnbench.flow"]  # inside prepare_tracking
    assert "nnbench.train" in EDGES["nnbench"]
    assert "nnbench.errors" in EDGES["nnbench.backend.base"]
    assert "hydra" in THIRD["nnbench.cli"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_modules():
    cycle = find_cycle(EDGES)
    assert cycle is None, describe(cycle, EDGES)


def test_no_import_cycle_between_parts():
    cycle = find_cycle(PARTS)
    assert cycle is None, describe(cycle, PARTS)


@pytest.mark.parametrize("source", sorted(ONLY))
def test_a_lower_part_imports_only_what_is_below_it(source):
    extra = {t: how for t, how in PARTS.get(source, {}).items() if t not in ONLY[source]}
    allowed = ", ".join(sorted(ONLY[source])) or "nothing of nnbench"
    assert not extra, f"{source} may import only {allowed}, but: " + "; ".join(extra.values())


def test_nothing_outside_the_entry_layer_imports_it():
    wrong = [
        f"{source} (line {line}) imports {target}"
        for source, targets in EDGES.items()
        if not is_in(source, ENTRY)
        for target, line in targets.items()
        if is_in(target, ENTRY)
    ]
    assert not wrong, "the entry layer is imported from below: " + "; ".join(wrong)


@pytest.mark.parametrize("package", sorted(THIRD_PARTY))
def test_a_third_party_package_is_imported_only_where_it_belongs(package):
    wrong = sorted(m for m, names in THIRD.items() if package in names)
    wrong = [m for m in wrong if not is_in(m, THIRD_PARTY[package])]
    assert not wrong, f"{package} is imported by {wrong}; only {THIRD_PARTY[package]} may"


@pytest.mark.parametrize("module", sorted(EDGES))
def test_a_module_imports_little_as_it_is_imported(module):
    wrong = sorted(p for p in EAGER[module] if not is_in(module, AT_IMPORT.get(p, ())))
    assert not wrong, f"{module} imports {wrong} outside its functions (docs/design.md)"
