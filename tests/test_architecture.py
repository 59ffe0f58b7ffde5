"""The package graph and the size limits, checked on every run so they stay true.

Direction (DESIGN.md, "What each app owns"): the kernel (`supportbot/` minus its wiring modules)
imports no app; `ops` may import `chat` and `tools`, `chat` may import `tools`, `tools` imports
neither; the wiring modules may import anything. Imports inside function bodies count too, so a
cycle cannot hide in a function. Sizes: no module over 600 lines and no function over 60, except
the modules named in DATA_MODULES, which are declarative data (rule tables, word lists).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("supportbot", "chat", "tools", "ops")
# The wiring modules of DESIGN.md, and the package's __init__, which only loads the Celery app
# (Celery's documented Django layout: ``from .celery import app``).
WIRING = frozenset(
    ["supportbot"]
    + [
        f"supportbot.{name}"
        for name in ("settings", "urls", "asgi", "routing", "api", "celery", "server")
    ]
)
# Who may import whom: an app's modules may import the kernel and the apps listed here.
ALLOWED = {
    "kernel": {"kernel"},
    "tools": {"kernel", "tools"},
    "chat": {"kernel", "tools", "chat"},
    "ops": {"kernel", "tools", "chat", "ops"},
    "wiring": {"kernel", "tools", "chat", "ops", "wiring"},
}
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60
# Plainly declarative data: rule tables and word lists, exempt from the size limits.
DATA_MODULES = frozenset({"chat.guards.content.rule_data"})


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            if "migrations" in rel.parts:
                continue
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            found[".".join(parts)] = path
    return found


def layer(module: str) -> str:
    top = module.split(".", 1)[0]
    if top == "supportbot":
        return "wiring" if module in WIRING else "kernel"
    return top


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(known: dict[str, Path]) -> Iterator[Import]:
    """Every import of a project module, at the top or inside a function, named to the module."""
    for module, path in known.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                base = _resolve(module, path, node)
                # `from pkg import mod` names a module when pkg.mod is one; else the package.
                names = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                    for alias in node.names
                ]
            for name in names:
                target = _owner(name, known)
                if target and target != module:
                    yield Import(module, target, node.lineno)


def _owner(name: str, known: dict[str, Path]) -> str | None:
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(edges.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_imports_follow_the_layers() -> None:
    known = modules()
    wrong = [
        f"{imp.source}:{imp.line} imports {imp.target} ({layer(imp.source)} -> {layer(imp.target)})"
        for imp in imports(known)
        if layer(imp.target) not in ALLOWED[layer(imp.source)]
    ]
    assert wrong == []


def test_no_import_cycles_between_modules() -> None:
    known = modules()
    edges: dict[str, set[str]] = {}
    for imp in imports(known):
        edges.setdefault(imp.source, set()).add(imp.target)
        # Importing a.b.c runs a/__init__ and a/b/__init__ first: a package that imports its
        # own modules closes a cycle through them. The kernel's root package is left out: it
        # only loads the Celery app (Celery's Django layout), whose app imports run later.
        parts = imp.target.split(".")
        for depth in range(2, len(parts)):
            package = ".".join(parts[:depth])
            if package in known and not imp.source.startswith(package + "."):
                edges[imp.source].add(package)
    assert cycles(edges) == []


def test_no_private_names_imported_from_another_module() -> None:
    known = modules()
    wrong = []
    for module, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(module, path, node)
                if _owner(target, known) is None:
                    continue
                wrong += [
                    f"{module}:{node.lineno} imports {alias.name} from {target}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    assert wrong == []


def test_modules_and_functions_stay_small() -> None:
    wrong = []
    for module, path in modules().items():
        if module in DATA_MODULES:
            continue
        source = path.read_text()
        lines = len(source.splitlines())
        if lines > MAX_MODULE_LINES:
            wrong.append(f"{module}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                length = (node.end_lineno or node.lineno) - start + 1
                if length > MAX_FUNCTION_LINES:
                    wrong.append(f"{module}.{node.name}: {length} lines")
    assert wrong == []


def test_data_modules_are_data() -> None:
    """An exempt module holds no function or class longer than a few lines."""
    known = modules()
    for module in DATA_MODULES:
        tree = ast.parse(known[module].read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert (node.end_lineno or 0) - node.lineno < 15, f"{module}.{node.name}"
