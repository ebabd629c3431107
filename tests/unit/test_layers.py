"""The arrows between the package's wings: the library never depends on the simulator, and the official
schema (shared by both) depends on nothing else of pvectl and costs the CLI's start-up nothing."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pvectl

PACKAGE = Path(pvectl.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every pvectl module `path` imports, at module level, under TYPE_CHECKING or inside a function."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = parts if parts[-1] == "__init__" else parts[:-1]
    if package[-1] == "__init__":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)
    return {m for m in found if m == "pvectl" or m.startswith("pvectl.")}


def wing(path: Path) -> str:
    rel = path.relative_to(PACKAGE).parts
    return rel[0] if len(rel) > 1 else "library"


def test_the_library_never_imports_the_simulator() -> None:
    # only the CLI's `sim serve` and `demo` start a simulator; nothing else may reach into pvectl.sim
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(m for m in imported_modules(path) if m.startswith("pvectl.sim"))
        for path in PACKAGE.rglob("*.py") if wing(path) not in ("sim", "cli")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_schema_imports_nothing_else_of_pvectl() -> None:
    outside = {
        str(path.relative_to(PACKAGE)): sorted(m for m in imported_modules(path) if not m.startswith("pvectl.schema"))
        for path in (PACKAGE / "schema").rglob("*.py")
    }
    assert {k: v for k, v in outside.items() if v} == {}


def test_the_cli_start_up_does_not_load_the_schema() -> None:
    code = ("import sys, pvectl, pvectl.cli.main, pvectl.config, pvectl.errors; "
            "print(sorted(m for m in sys.modules if m.startswith(('pvectl.schema', 'pvectl.sim'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_schema_data_is_read_once_on_first_use() -> None:
    code = ("import sys; from pvectl.schema import Schema; before = 'gzip' in sys.modules; "
            "a = Schema.load(); b = Schema.load(); "
            "print(before, a is b, len(a.endpoints) > 500)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "True"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the pvectl modules it imports (a package's import of its own submodules left out: it
    runs them, it does not depend on them)."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        found = set()
        for target in imported_modules(path):
            while target and target not in paths:
                target = target.rpartition(".")[0]
            if target and target != name and not (path.name == "__init__.py" and target.startswith(name + ".")):
                found.add(target)
        graph[name] = found
    return graph


def reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            if nxt == goal:
                return True
            seen.add(nxt)
            todo.append(nxt)
    return False


def test_no_module_of_the_library_or_the_cli_is_in_an_import_circle() -> None:
    graph = import_graph()
    outside_sim = [m for m in graph if m != "pvectl.sim" and not m.startswith("pvectl.sim.")]
    assert {"pvectl.config", "pvectl.configcheck", "pvectl.provision.names", "pvectl.schema.check"} <= set(outside_sim)
    assert [m for m in outside_sim if reaches(graph, m, m)] == []
