"""The walls between rooms (docs/architecture.md), read from every import in the package.

Type-only imports (under ``TYPE_CHECKING``) and imports inside functions count: a wall that
only holds at run time still tangles the code.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import dcmexport

PACKAGE = Path(dcmexport.__file__).parent
ROOMS = ("dicom", "render", "sources", "store", "exporters", "engine", "index", "report")
SHARED = ("errors", "options", "manifest", "naming", "_version")
#: Top-level modules that belong to the command line (nothing may import them).
CLI = ("cli", "progress", "__main__", "_startup")

#: What each room may import (besides itself and third-party code). Shared modules are nodes
#: of their own, so `naming -> dicom -> naming` would still show up as a cycle.
ALLOWED: dict[str, set[str]] = {
    "dicom": {"errors", "_version"},
    "render": {"dicom", "errors", "options"},
    "sources": {"dicom", "store", *SHARED},
    "store": {"errors", "_version"},
    "exporters": {"dicom", "render", "store", *SHARED},
    "engine": {"dicom", "render", "sources", "store", "exporters", *SHARED},
    "index": {"dicom", "sources", "store", "engine", *SHARED},
    "report": {"dicom", "render", "store", *SHARED},
    "sample": {"errors", "_version"},
    "errors": set(),
    "_version": set(),
    "manifest": set(),
    "naming": {"dicom", "errors"},
    "options": {"errors", "naming"},
    "api": {*ROOMS, *SHARED, "sample", "api"},
    "cli": {*ROOMS, *SHARED, "sample", "cli", "api"},
}


def room_of(module: str) -> str:
    """The room of a dotted module name inside the package (``dcmexport.render.frame``)."""
    parts = module.split(".")[1:]
    if not parts:
        return "api"
    head = parts[0]
    if head in CLI:
        return "cli"
    return head


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> Iterator[str]:
    """Every module of ours that `path` imports, absolute, wherever the import statement is."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # `from . import decoding` imports a submodule; `from . import __version__` does not
            names = [_submodule_or_package(target, a.name) for a in node.names]
        else:
            continue
        for name in names:
            if name == "dcmexport" or name.startswith("dcmexport."):
                yield name


def _submodule_or_package(package: str, name: str) -> str:
    folder = PACKAGE.parent.joinpath(*package.split("."))
    if (folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file():
        return f"{package}.{name}"
    return package


def import_graph() -> dict[str, set[str]]:
    """Room -> the rooms it imports, over every module of the package."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = room_of(_module_name(path))
        targets = graph.setdefault(source, set())
        for target in _imports(path):
            room = room_of(target)
            if room != source:
                targets.add(room)
    return graph


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Walls crossed, imports of the CLI, and cycles between rooms."""
    found = []
    for room, targets in sorted(graph.items()):
        allowed = ALLOWED.get(room)
        if allowed is None:
            found.append(f"{room}: not a known room (add it to docs/architecture.md)")
            continue
        for target in sorted(targets - allowed - {room}):
            found.append(f"{room} imports {target}")
    found += [f"cycle: {' -> '.join(c)}" for c in _cycles(graph)]
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_every_room_exists() -> None:
    for room in ROOMS:
        assert (PACKAGE / room / "__init__.py").is_file(), room


def test_the_walls_hold() -> None:
    assert violations(import_graph()) == []


def test_nothing_imports_the_cli() -> None:
    graph = import_graph()
    assert [room for room, targets in graph.items() if "cli" in targets and room != "cli"] == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"dicom": {"render"}, "render": {"dicom"}}, "dicom imports render"),
        ({"store": {"naming"}}, "store imports naming"),
        ({"exporters": {"engine"}, "engine": set()}, "exporters imports engine"),
        ({"index": {"render"}}, "index imports render"),
        ({"report": {"exporters"}}, "report imports exporters"),
        ({"engine": {"cli"}}, "engine imports cli"),
        ({"naming": {"dicom"}, "dicom": {"naming"}}, "cycle: dicom -> naming -> dicom"),
    ],
)
def test_the_checker_catches_a_crossed_wall(graph: dict[str, set[str]], expected: str) -> None:
    assert expected in violations(graph)


def test_relative_imports_are_resolved(tmp_path: Path) -> None:
    """`from ..render import frame` in exporters/ and `from . import decoding` in dicom/."""
    exporters = set(_imports(PACKAGE / "exporters" / "stills.py"))
    assert "dcmexport.render.frame" in exporters
    assert "dcmexport.dicom.decoding" in set(_imports(PACKAGE / "dicom" / "series.py"))
