"""The import rules of docs/architecture.md, enforced: the table in that file is the rule.

Every module of the installed packages belongs to one row of the table; an import of another hfrisk
package must be named in its row; the rows themselves form no cycle; no two modules import each other at
import time (the kind of cycle that breaks depending on which is imported first); no import is relative.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
ROOT_PACKAGE = "hfrisk"


def rules() -> dict[str, set[str]]:
    """``{package: packages it may import}`` from the doc's table (rows whose first cell is a package)."""
    table: dict[str, set[str]] = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not re.fullmatch(r"`hfrisk(\.\w+)*`", cells[0]):
            continue
        table[cells[0].strip("`")] = set(re.findall(r"`(hfrisk(?:\.\w+)*)`", cells[2]))
    return table


def package_dirs() -> dict[str, Path]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {prefix: ROOT / folder for prefix, folder in cfg["package-dir"].items()}


def modules() -> dict[str, Path]:
    """Every module of the installed packages, by dotted name (``model/`` is ``hfrisk.model`` …)."""
    found: dict[str, Path] = {}
    dirs = package_dirs()
    for prefix, folder in dirs.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            # hfrisk/'s walk must not claim the mapped folders under another name
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([prefix, *parts])
            if any(other != prefix and other.startswith(prefix + ".") and name.startswith(other) for other in dirs):
                continue
            found[name] = path
    return found


MODULES = modules()
RULES = rules()


def row_of(name: str) -> str | None:
    """The table row a dotted name falls under: the longest row that is the name or a parent of it."""
    best = None
    for row in RULES:
        if (name == row or name.startswith(row + ".")) and (best is None or len(row) > len(best)):
            best = row
    return best


def group_of(name: str) -> bool:
    """Whether ``name`` only groups rows (``hfrisk.model`` holds contract, readers, …): its front door
    may import its own sub-packages and the core, nothing else."""
    return row_of(name) is None and any(row.startswith(name + ".") for row in RULES)


def allowed(source_row: str, target: str) -> bool:
    if group_of(source_row):
        return target.startswith((source_row + ".", "hfrisk.core"))
    if target == ROOT_PACKAGE or row_of(target) == source_row:
        return True
    return any(target == ok or target.startswith(ok + ".") or row_of(target) == ok for ok in RULES[source_row])


def imports(path: Path, *, import_time_only: bool) -> Iterator[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of each hfrisk import; with ``import_time_only``, only those run on import."""
    tree = ast.parse(path.read_text(), filename=str(path))

    def walk(nodes, top: bool):
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                if not import_time_only:
                    yield from walk(ast.iter_child_nodes(node), False)
                continue
            if isinstance(node, ast.If) and import_time_only and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.ImportFrom):
                yield node.lineno, node.level, node.module or "", [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    yield node.lineno, 0, alias.name, []
            else:
                yield from walk(ast.iter_child_nodes(node), top)

    for line, level, module, names in walk(tree.body, True):
        if level:
            yield line, "." * level + module, names
        elif module == ROOT_PACKAGE or module.startswith(ROOT_PACKAGE + "."):
            yield line, module, names


def targets(module: str, names: list[str]) -> list[str]:
    """The modules an import statement needs: ``from pkg import mod`` needs ``pkg.mod``, not what ``pkg``
    re-exports (a submodule may import a sibling through its package while that package is loading)."""
    submodules = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
    return submodules if names and len(submodules) == len(names) else [module, *submodules]


def test_the_table_is_read_and_covers_every_module():
    assert {"hfrisk.core", "hfrisk.model.contract", "hfrisk.stream.worker", "hfrisk.cli"} <= set(RULES)
    for row, deps in RULES.items():
        unknown = {d for d in deps if not any(m == d or m.startswith(d + ".") for m in MODULES)}
        assert not unknown, f"{row} names packages that do not exist: {unknown}"
    orphans = sorted(m for m in MODULES if m != ROOT_PACKAGE and row_of(m) is None and not group_of(m))
    assert not orphans, f"modules in no row of docs/architecture.md: {orphans}"


def test_the_rows_form_no_cycle():
    graph = {row: {row_of(d) or d for d in deps} - {row} for row, deps in RULES.items()}
    done: set[str] = set()

    def visit(row: str, path: tuple[str, ...]) -> None:
        if row in path:
            pytest.fail("docs/architecture.md allows a cycle: " + " -> ".join(path[path.index(row):] + (row,)))
        if row in done:
            return
        for dep in graph.get(row, ()):
            visit(dep, path + (row,))
        done.add(row)

    for row in graph:
        visit(row, ())


def test_no_relative_imports():
    files = list(MODULES.values()) + sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "bench").rglob("*.py"))
    relative = []
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        relative += [f"{path.relative_to(ROOT)}:{n.lineno}" for n in ast.walk(tree)
                     if isinstance(n, ast.ImportFrom) and n.level]
    assert not relative, f"relative imports (write them absolute): {relative}"


def test_every_import_follows_the_table():
    broken = []
    for name, path in MODULES.items():
        row = row_of(name) or (name if group_of(name) else None)
        if row is None:
            continue
        for line, module, _ in imports(path, import_time_only=False):
            if not allowed(row, module):
                broken.append(f"{path.relative_to(ROOT)}:{line} ({row}) imports {module}")
    assert not broken, "imports that break docs/architecture.md:\n" + "\n".join(broken)


def test_no_import_cycle_between_modules_at_import_time():
    graph = {
        name: {t for line, module, names in imports(path, import_time_only=True)
               for t in targets(module, names) if t in MODULES and t != name}
        for name, path in MODULES.items()
    }
    # Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
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
    for v in graph:
        if v not in index:
            connect(v)
    assert not cycles, f"modules that import each other at import time: {cycles}"


def test_bench_never_imports_tests():
    offenders = []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            names = [a.name for a in node.names] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
            if (module or "").split(".")[0] == "tests" or any(n.split(".")[0] == "tests" for n in names
                                                                if isinstance(node, ast.Import)):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"bench/ imports tests/ (move the helper into hfrisk.testing): {offenders}"


def test_the_checker_catches_a_violation(tmp_path):
    """The rule check can fail: an import of a higher package from core is refused."""
    assert not allowed("hfrisk.core", "hfrisk.stream.worker")
    assert not allowed("hfrisk.model.contract", "hfrisk.model.network")
    assert allowed("hfrisk.stream.worker", "hfrisk.stream.sinks.keys")
    assert allowed("hfrisk.model.network", "hfrisk.model.contract.card")
    assert group_of("hfrisk.model") and not allowed("hfrisk.model", "hfrisk.stream.worker")


def test_every_package_has_a_front_door():
    """Each package's ``__init__`` says what it holds (a docstring) and what it offers (``__all__``)."""
    missing = []
    for name, path in MODULES.items():
        if path.name != "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        has_all = any(isinstance(node, (ast.Assign, ast.AnnAssign)) and "__all__" in ast.unparse(node).split("=")[0]
                      for node in tree.body)
        if not ast.get_docstring(tree) or (not has_all and not group_of(name) and name != ROOT_PACKAGE):
            missing.append(name)
    assert not missing, f"packages without a docstring or __all__ in __init__.py: {missing}"
