"""Wire names live in ``saga/protocol.py`` only, and nothing reaches into nats-py's privates.

The source is read as text (AST), so a header or subject prefix written again as a literal,
or a ``js._nc`` that comes back, fails here instead of drifting apart on the wire.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "saga" / "protocol.py"


def protocol_names() -> dict[str, str]:
    """Every module-level text constant of saga/protocol.py, by name."""
    return {
        target.id: node.value.value
        for node in ast.parse(PROTOCOL.read_text()).body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name) and isinstance(node.value.value, str)
    }


def is_wire_name(text: str) -> bool:
    """A header, stream or bucket name of the protocol, or a subject under one of its
    prefixes (the bare prefixes also name loggers and history events, and ``saga-engine``
    is a service name as well as a consumer's)."""
    names = protocol_names()
    exact = {
        value
        for name, value in names.items()
        if name.startswith("HEADER_") or name.endswith(("_STREAM", "_BUCKET"))
    } | {"tracestate"}
    prefixes = [v + "." for n, v in names.items() if n.endswith("_PREFIX") and "." in v]
    prefixes += [names["JS_API_PREFIX"], "$KV.", "KV_", names["DLQ_HEADER_PREFIX"]]
    return text in exact or text.startswith(tuple(prefixes))


def sources() -> Iterator[Path]:
    for folder in ("saga", "services"):
        yield from sorted((ROOT / folder).rglob("*.py"))


def string_literals(tree: ast.AST) -> Iterator[tuple[int, str]]:
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            yield node.lineno, node.value


def test_protocol_imports_nothing_of_saga() -> None:
    """Pure names: any layer (the participant SDK included) may read them."""
    modules = []
    for node in ast.walk(ast.parse(PROTOCOL.read_text())):
        if isinstance(node, ast.ImportFrom):
            modules.append(node.module or "")
        elif isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
    assert [m for m in modules if m.split(".")[0] == "saga"] == []


def test_no_wire_name_is_written_outside_protocol() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {text!r}"
        for path in sources()
        if path != PROTOCOL
        for line, text in string_literals(ast.parse(path.read_text()))
        if is_wire_name(text)
    ]
    assert found == [], "use the name in saga/protocol.py"


NATS_PY_ADAPTERS = {ROOT / "saga" / "nats" / "wire.py"}
"""The one place allowed nats-py's private writer (tests/unit/test_wire.py guards it)."""


def test_nothing_reaches_into_another_objects_private_attributes() -> None:
    """``self._x`` and ``cls._x`` are a module's own business; ``js._nc`` is nats-py's."""
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}"
        for path in sources()
        if path not in NATS_PY_ADAPTERS
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]
    assert found == []
