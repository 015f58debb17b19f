"""The package's import graph: dependencies point one way (ARCHITECTURE.md), no import circles.

Every ``import``/``from ... import`` of a ``dask_enrich`` module counts, also inside functions (a
deferred import is still a dependency); imports under ``if TYPE_CHECKING:`` do not.
"""
from __future__ import annotations

import ast
from pathlib import Path

import dask_enrich

PACKAGE = Path(dask_enrich.__file__).parent

def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports (submodules named in ``from pkg import sub`` too)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name in modules)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    target = f"{base}.{child.module}" if child.module else base
                else:
                    target = child.module or ""
                submodules = {f"{target}.{a.name}" for a in child.names} & modules
                found.update(submodules)
                if target in modules and len(submodules) < len(child.names):
                    found.add(target)  # names defined by the module itself, not only submodules
            visit(child)

    visit(ast.parse(path.read_text()))
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in files}
    return {_module_name(p): _imports(p, modules) for p in files}


def circles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for v in graph:
        if v not in index:
            connect(v)
    return found


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {frozenset("abc")}
    assert circles({"a": {"b"}, "b": set()}) == set()


def test_no_import_circles():
    assert circles(import_graph()) == set()


def test_argparse_only_in_the_cli_package():
    """The command line lives in ``dask_enrich/cli/`` (one module per command); no domain module
    declares options."""
    def declares_options(node: ast.AST) -> bool:
        return (isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names)) or (
            isinstance(node, ast.Attribute) and node.attr in ("add_argument", "add_parser"))

    users = {_module_name(p) for p in PACKAGE.rglob("*.py")
             if any(declares_options(n) for n in ast.walk(ast.parse(p.read_text())))}
    assert users and all(m.startswith("dask_enrich.cli") for m in users), sorted(users)


def test_features_core_and_genome_never_import_the_engine_or_the_cli():
    graph = import_graph()
    low = [m for m in graph if m.startswith(("dask_enrich.features", "dask_enrich.genome"))
           or m == "dask_enrich.core"]
    wrong = {m: sorted(t for t in graph[m] if t.startswith(("dask_enrich.engine", "dask_enrich.cli")))
             for m in low}
    assert {m: t for m, t in wrong.items() if t} == {}
