"""Imports among linvae's modules run one way: no module depends, even lazily, on itself.

The layers, lowest first: the equations (params, schedules, _validate, observables, ode,
...), the solvers (simulation, stability, finite_n, ...), the analyses (comparison,
findings, sweeps), then the figures (plot, reproduce) and the command line. A cycle
means some concept has no single home, so the test below fails on any.

The graph is read from the sources with :mod:`ast`, nothing is imported. It counts

* every ``import`` statement, at module level or inside a function (a lazy import is
  still a dependency: it is how a cycle hides from the import machinery);
* relative imports, resolved against the importing module;
* ``from P import name``: an edge to ``P.name`` when that is a submodule, else to ``P``;
* names reached through a facade: a module with a module-level ``__getattr__`` (PEP
  562) that imports each name, when it is first used, from the module its ``_HOME`` or
  ``_MOVED`` table names (the lazy top level, and the old homes of names that moved).
  A facade does not depend on what it forwards, so ``from linvae import fluctuations``
  (or ``linvae.fluctuations`` after ``import linvae``) is an edge to the real home,
  :mod:`linvae.finite_n`, not to the facade.

Imports under ``if TYPE_CHECKING:`` are not counted: they never run, and they are how a
type annotation names a higher layer without depending on it. Importing ``P.m`` runs
``P/__init__`` first, but the parent package is not counted as a dependency of its own
submodules (every module would otherwise depend on the facade).
"""

from __future__ import annotations

import ast
import importlib.util
from collections import deque
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path

#: An edge's source: "path:line" of the import statement.
Where = str
Graph = Mapping[str, Mapping[str, Where]]


def package_dir(name: str = "linvae") -> Path:
    """The folder of the package's sources (its ``__init__.py``), found without importing it."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None, f"{name} is not installed"
    return Path(spec.origin).parent


def module_files(root: Path, package: str) -> dict[str, Path | None]:
    """Every module of the package -> its source (None for a compiled one)."""
    found: dict[str, Path | None] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(not (root / p / "__init__.py").is_file() for p in rel.parents if p != Path(".")):
            continue  # not inside a package
        stem = path.name.split(".")[0]
        if path.suffix == ".py":
            parts = rel.parent.parts if stem == "__init__" else (*rel.parent.parts, stem)
            found[".".join((package, *parts))] = path
        elif path.suffix in (".so", ".pyd", ".pyi") and stem.isidentifier():
            found.setdefault(".".join((package, *rel.parent.parts, stem)), None)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def run_time_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of the tree, except the bodies of ``if TYPE_CHECKING:``."""
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


#: The tables of a module-level ``__getattr__``: name -> the package's module that has it.
FACADE_TABLES = ("_HOME", "_MOVED")


def module_level(tree: ast.Module) -> Iterator[ast.stmt]:
    """The module's run-time top-level statements, those under an ``if`` included."""
    todo = list(tree.body)
    while todo:
        node = todo.pop(0)
        yield node
        if isinstance(node, ast.If):
            todo += node.orelse if _is_type_checking(node.test) else [*node.body, *node.orelse]


def facade_of(tree: ast.Module, package: str) -> dict[str, str] | None:
    """Name -> module, if ``tree`` forwards names with a module-level ``__getattr__``."""
    if not any((isinstance(n, ast.FunctionDef) and n.name == "__getattr__")
               or (isinstance(n, ast.Assign)
                   and any(isinstance(t, ast.Name) and t.id == "__getattr__" for t in n.targets))
               for n in module_level(tree)):
        return None
    home: dict[str, str] = {}
    for node in module_level(tree):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id in FACADE_TABLES):
            home |= {name: f"{package}.{mod}"
                     for name, mod in ast.literal_eval(node.value).items()}
    return home


def import_graph(root: Path, package: str = "linvae") -> dict[str, dict[str, Where]]:
    """Module -> {imported module of the package: where the first such import is}."""
    files = module_files(root, package)
    trees = {m: ast.parse(p.read_text(encoding="utf-8"), str(p))
             for m, p in files.items() if p is not None}
    facades = {m: f for m, t in trees.items() if (f := facade_of(t, package)) is not None}

    def resolve(target: str, name: str | None = None) -> str | None:
        """The module that ``from target import name`` (or ``import target``) depends on."""
        if name is not None:
            if f"{target}.{name}" in files:
                return f"{target}.{name}"
            if name in facades.get(target, {}):
                return facades[target][name]
        while target and target not in files:  # `import linvae.ode.x`: the deepest module
            target = target.rpartition(".")[0]
        return target or None

    def ours(name: str) -> bool:
        return name == package or name.startswith(package + ".")

    def dependencies(module: str, tree: ast.Module) -> Iterator[tuple[str | None, int]]:
        """(module depended on, line) for each run-time import in ``tree``."""
        is_package = files[module] is not None and files[module].name == "__init__.py"
        here = module if is_package else module.rpartition(".")[0]
        aliases: dict[str, str] = {}  # local name -> the facade it is bound to
        for node in run_time_nodes(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if ours(alias.name):
                        yield resolve(alias.name), node.lineno
                        # `import a.b` binds a, `import a.b as c` binds a.b
                        bound = alias.name if alias.asname else alias.name.partition(".")[0]
                        if bound in facades:
                            aliases[alias.asname or bound] = bound
            elif isinstance(node, ast.ImportFrom):
                target = node.module or ""
                if node.level:  # relative: from the importing module's package upwards
                    base = here
                    for _ in range(node.level - 1):
                        base = base.rpartition(".")[0]
                    target = f"{base}.{target}" if target else base
                if ours(target):
                    for alias in node.names:
                        yield resolve(target, alias.name), node.lineno
        for node in run_time_nodes(tree) if aliases else ():
            # `import linvae; linvae.fluctuations(...)`: an edge to the name's real home
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases):
                yield resolve(aliases[node.value.id], node.attr), node.lineno

    graph: dict[str, dict[str, Where]] = {m: {} for m in files}
    for module, tree in trees.items():
        where = files[module]
        assert where is not None
        rel = where.relative_to(root.parent).as_posix()
        for dep, line in dependencies(module, tree):
            if dep is not None and dep != module:
                graph[module].setdefault(dep, f"{rel}:{line}")
    return graph


def strongly_connected(graph: Graph) -> list[set[str]]:
    """The graph's strongly connected components (Tarjan), each a set of nodes."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:  # recursion depth <= number of modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
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
            components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def _shortest_path(graph: Graph, start: str, goal: str, within: AbstractSet[str]) -> list[str]:
    parent: dict[str, str | None] = {start: None}
    todo = deque([start])
    while todo:
        v = todo.popleft()
        if v == goal:
            path = [v]
            while (p := parent[path[-1]]) is not None:
                path.append(p)
            return path[::-1]
        for w in sorted(graph.get(v, {})):
            if w in within and w not in parent:
                parent[w] = v
                todo.append(w)
    raise AssertionError(f"no path {start} -> {goal} inside its component")


def cycles(graph: Graph) -> list[list[str]]:
    """Import cycles, each as [a, b, ..., a]: for every edge on a cycle, a shortest cycle
    through it, so fixing every cycle listed leaves none."""
    found: dict[tuple[str, ...], list[str]] = {}
    for component in strongly_connected(graph):
        for u in sorted(component):
            for v in sorted(graph.get(u, {})):
                if v not in component:
                    continue
                loop = [u, *_shortest_path(graph, v, u, component)] if v != u else [u, u]
                body = loop[:-1]
                first = body.index(min(body))  # one spelling per cycle: from its least node
                key = tuple(body[first:] + body[:first])
                found.setdefault(key, [*key, key[0]])
    return sorted(found.values(), key=lambda c: (len(c), c))


def describe(cycle: list[str], graph: Graph, package: str = "linvae") -> str:
    short = [m.removeprefix(package + ".") for m in cycle]
    steps = "\n".join(f"    {a} -> {b}  ({graph[x][y]})"
                      for a, b, x, y in zip(short, short[1:], cycle, cycle[1:], strict=False))
    return " → ".join(short) + "\n" + steps


def test_no_import_cycle_among_linvae_modules() -> None:
    graph = import_graph(package_dir())
    assert "linvae.ode" in graph and "linvae.stability.search" in graph  # the walk saw them
    found = cycles(graph)
    assert not found, (f"{len(found)} import cycle(s) among linvae's modules (imports must "
                       f"run one way, lower layers never importing higher ones):\n"
                       + "\n".join(describe(c, graph) for c in found))


def test_cycle_finder_finds_a_planted_cycle() -> None:
    graph = {"a": {"b": "a.py:1"}, "b": {"c": "b.py:1", "d": "b.py:2"},
             "c": {"a": "c.py:9"}, "d": {}, "e": {"e": "e.py:1"}}
    assert cycles(graph) == [["e", "e"], ["a", "b", "c", "a"]]
    assert "a → b → c → a" in describe(["a", "b", "c", "a"], graph)
    del graph["c"]["a"]
    assert cycles(graph) == [["e", "e"]]


def test_graph_sees_lazy_relative_and_facade_imports(tmp_path: Path) -> None:
    """A planted package: each way an import can hide is an edge, TYPE_CHECKING is not."""
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .low import thing\n"
        "_HOME = {'thing': 'low'}\n"
        "def __getattr__(name):\n    ...\n")
    (root / "low.py").write_text(
        "def f():\n    from .high import g  # lazy: still a dependency\n")
    (root / "high.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import sub\n"
        "if TYPE_CHECKING:\n    from .top import T  # never runs: no edge\n")
    (root / "sub" / "__init__.py").write_text("from .leaf import x\n")
    (root / "sub" / "leaf.py").write_text("from .. import thing  # through the facade\n")
    (root / "top.py").write_text("import pkg\nimport pkg.high\npkg.thing\n")
    (root / "old.py").write_text("from typing import TYPE_CHECKING\n_MOVED = {'g': 'high'}\n"
                                 "if TYPE_CHECKING:\n    from .high import g\n"
                                 "else:\n    __getattr__ = forward(__name__, _MOVED)\n")
    (root / "user.py").write_text("from .old import g  # moved: the edge is to its home\n")
    (root / "_ext.pyi").write_text("")
    graph = import_graph(root, "pkg")
    assert {m: set(d) for m, d in graph.items()} == {
        "pkg": set(),
        "pkg._ext": set(),
        "pkg.low": {"pkg.high"},
        "pkg.high": {"pkg.sub"},
        "pkg.sub": {"pkg.sub.leaf"},
        "pkg.sub.leaf": {"pkg.low"},
        "pkg.top": {"pkg", "pkg.high", "pkg.low"},
        "pkg.old": set(),
        "pkg.user": {"pkg.high"},
    }
    assert cycles(graph) == [["pkg.high", "pkg.sub", "pkg.sub.leaf", "pkg.low", "pkg.high"]]


def test_figures_draw_theory_they_do_not_compute_it() -> None:
    graph = import_graph(package_dir())
    assert "linvae.finite_n" not in graph["linvae.plot"], graph["linvae.plot"]["linvae.finite_n"]


def test_command_line_reaches_reproduce_only_to_reproduce() -> None:
    """``linvae compare`` runs the comparison's own code, not the figure script's."""
    path = package_dir() / "cli.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    users = {fn.name for fn in tree.body if isinstance(fn, ast.FunctionDef)
             for node in run_time_nodes(fn) if isinstance(node, ast.ImportFrom)
             and (node.module, node.level) in (("reproduce", 1), ("linvae.reproduce", 0))}
    assert users <= {"cmd_reproduce", "build_parser"}, users
