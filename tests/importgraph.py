"""The static import graph of src/dnas, read with `ast` (nothing is imported): every `import` /
`from ... import` statement, at module level or inside a function, resolved to the dnas module
it names. Shared by tests/test_imports.py (no cycles) and tests/test_stage_deps.py (dvc.yaml deps).

`from dnas.pkg import name` is an edge to the submodule `dnas.pkg.name` when there is one, else
to the package `dnas.pkg` itself. A submodule's implicit import of its parent package (Python
runs `dnas/pkg/__init__.py` first) is not an edge: a package's `__init__` may re-export from its
submodules without that counting as a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def dnas_modules(src: Path = SRC) -> dict[str, Path]:
    return {module_name(p, src): p for p in sorted((src / "dnas").rglob("*.py"))}


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The module that defines dotted `name`: itself, or the nearest enclosing module."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(path: Path, modules: dict[str, Path], this: str | None = None) -> set[str]:
    """The dnas modules that the file `path` imports (any nesting level). `this` is the file's
    own module name (for relative imports); None for a script outside the package."""
    package = []
    if this is not None:
        package = this.split(".") if path.name == "__init__.py" else this.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + [node.module or ""])
                base = base.rstrip(".")
            else:
                base = node.module or ""
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
            ]
        else:
            continue
        for target in targets:
            if target == "dnas" or target.startswith("dnas."):
                owner = _owner(target, modules)
                if owner is not None:
                    found.add(owner)
    found.discard(this)
    return found


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """dnas module -> the dnas modules it imports."""
    modules = dnas_modules(src)
    return {name: imports_of(path, modules, name) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def closure(starts: set[str], graph: dict[str, set[str]]) -> set[str]:
    """`starts` and every dnas module reachable from them."""
    seen, todo = set(), list(starts)
    while todo:
        v = todo.pop()
        if v not in seen:
            seen.add(v)
            todo.extend(graph.get(v, ()))
    return seen
