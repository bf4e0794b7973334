"""List the import cycles among the modules of a package (module-level imports, ``TYPE_CHECKING`` ones included).

An import inside a function (a lazy import) is not counted: it runs after both modules have loaded. A cycle through
``if TYPE_CHECKING:`` imports is: it still says that two modules each need the other (STYLE.md, practice 13).

Usage (from the repository root)::

    python scripts/import_cycles.py                         # empg_gym/agents/algorithms
    python scripts/import_cycles.py empg_gym/agents         # any package folder; exits 1 when a cycle is found
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def module_imports(path: Path, module: str, package: str, known: set[str]) -> set[str]:
    """Modules among ``known`` (of ``package``) that the module ``module`` (file ``path``) imports at module level.

    ``from pkg import mod`` counts ``pkg.mod`` when it is a known module, else ``pkg``.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> _ = (d / "a.py").write_text("from pkg.b import x\\nfrom . import c\\ndef f():\\n    import pkg.d\\n")
        >>> sorted(module_imports(d / "a.py", "pkg.a", "pkg", {"pkg", "pkg.b", "pkg.c", "pkg.d"}))
        ['pkg.b', 'pkg.c']
    """
    found: set[str] = set()
    parent = module.rsplit(".", 1)[0]

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = parent.split(".")[: len(parent.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
            elif isinstance(node, ast.If | ast.Try):  # TYPE_CHECKING blocks, optional imports
                visit(node.body)
                visit(node.orelse)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return {m for m in found if m in known}


def find_cycles(folder: Path, package: str) -> list[list[str]]:
    """Every strongly connected group of two or more modules of ``folder`` (the package ``package``), sorted.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> for name, text in {"a": "import pkg.b", "b": "import pkg.c", "c": "import pkg.a", "d": "import pkg.a"}.items():
        ...     _ = (d / f"{name}.py").write_text(text)
        >>> find_cycles(d, "pkg")
        [['pkg.a', 'pkg.b', 'pkg.c']]
    """
    modules = {f"{package}.{p.stem}" if p.stem != "__init__" else package: p for p in sorted(folder.glob("*.py"))}
    graph = {m: sorted(i for i in module_imports(p, m, package, set(modules)) if i != m) for m, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for m in graph:
        if m not in index:
            connect(m)
    return sorted(groups)


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else "empg_gym/agents/algorithms")
    package = ".".join(folder.with_suffix("").parts)
    cycles = find_cycles(folder, package)
    for group in cycles:
        sys.stdout.write("cycle: " + " <-> ".join(group) + "\n")
    sys.stdout.write(f"{len(cycles)} import cycle(s) among the modules of {package}\n")
    return 1 if cycles else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
