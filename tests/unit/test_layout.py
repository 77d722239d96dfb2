"""The house's walls: rooms of `recommender/` import each other one way, as their docstrings say;
the shared vocabulary at the top imports no room; no module or function grows past what a
newcomer can read at once."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "recommender"
#: What each room may import (besides the vocabulary at the top and `models`), as its
#: `__init__.py` says.
MAY_IMPORT = {
    "store": set(),
    "lifecycle": {"store"},
    "evaluation": set(),
    "cf": {"store", "lifecycle", "evaluation"},
    "serving": {"store", "lifecycle", "cf"},
    "privacy": {"store"},
    "content": {"store", "lifecycle", "cf", "privacy"},
    "monitoring": {"store", "serving"},
}
MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 60


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def _room(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "recommender" and len(parts) > 1 and parts[1] in MAY_IMPORT:
        return parts[1]
    return None


def test_every_room_says_what_lives_there_and_what_it_may_import():
    rooms = {p.parent.name for p in CORE.glob("*/__init__.py")} - {"settings"}
    assert rooms == set(MAY_IMPORT)
    for room in rooms:
        doc = ast.get_docstring(ast.parse((CORE / room / "__init__.py").read_text()))
        assert doc and "Imports" in doc, room


def test_rooms_import_only_what_they_may():
    wrong = []
    for path in CORE.glob("*/*.py"):
        room = path.parent.name
        if room not in MAY_IMPORT:
            continue
        for module in _imports(path):
            other = _room(module)
            if other is not None and other != room and other not in MAY_IMPORT[room]:
                wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert wrong == []


def test_the_vocabulary_and_the_models_import_no_room_and_the_core_no_edge():
    wrong = []
    vocabulary = [*CORE.glob("*.py"), *(CORE / "settings").glob("*.py")]
    for path in vocabulary:
        wrong += [f"{path.name}: {m}" for m in _imports(path) if _room(m) is not None]
    for path in (ROOT / "models").glob("*.py"):
        wrong += [f"{path.name}: {m}" for m in _imports(path) if m.startswith("recommender")]
    for path in CORE.rglob("*.py"):
        wrong += [
            f"{path.relative_to(ROOT)}: {m}"
            for m in _imports(path)
            if m.split(".")[0] in {"api", "streams", "streamrec"}
        ]
    assert wrong == []


def test_the_allowed_imports_have_no_cycle():
    done: set[str] = set()

    def visit(room: str, path: tuple[str, ...]) -> None:
        assert room not in path, " -> ".join((*path, room))
        if room in done:
            return
        for other in MAY_IMPORT[room]:
            visit(other, (*path, room))
        done.add(room)

    for room in MAY_IMPORT:
        visit(room, ())


def test_no_module_or_function_is_too_long_to_read_at_once():
    long = []
    for package in ("recommender", "streams", "api", "models"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            name = path.relative_to(ROOT)
            if len(text.splitlines()) > MAX_MODULE_LINES:
                long.append(f"{name}: {len(text.splitlines())} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long.append(f"{name}:{node.lineno} {node.name}: {lines} lines")
    assert long == []
