"""Operator, reload, admin and console take callables, never the Engine (issue 17, item 5):
so none of them imports ``saga.engine.service``, and there is no import cycle with it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SAGA = Path(__file__).resolve().parents[2] / "saga"
TAKE_CALLABLES = [
    "engine/operator.py",
    "engine/reload.py",
    "engine/view.py",
    "engine/apply.py",
    "admin/server.py",
    *(str(p.relative_to(SAGA)) for p in sorted((SAGA / "console").glob("*.py"))),
]


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, ``TYPE_CHECKING`` blocks included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("module", TAKE_CALLABLES)
def test_it_does_not_import_the_engine(module: str) -> None:
    modules = imported(SAGA / module)
    assert "saga.engine.service" not in modules
    assert "saga.engine.Engine" not in modules
