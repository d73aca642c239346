"""Fuzzing the definition loader: whatever the text, it is a definition or a DefinitionError.

Three generators: arbitrary text, valid definitions with random parts replaced, removed
or added (so the schema and graph checks see near-misses, not only garbage), and valid
files with odd YAML spliced into a line.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saga.definition import parse_definition
from saga.definition.expressions import compile_expression
from saga.errors import DefinitionError
from tests.conftest import DEFINITIONS

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TEXTS = [p.read_text() for p in sorted(Path(DEFINITIONS).glob("*.yaml"))]
DOCS = [yaml.safe_load(t) for t in TEXTS]
KEYS = [
    "name", "version", "trigger", "event", "id", "field", "header", "steps", "publish",
    "data", "success", "failure", "keep", "timeout", "retry", "attempts", "backoff",
    "max_backoff", "on_failure", "compensate", "deadline", "after", "when", "branch_failure",
]  # fmt: skip
ODD_TEXT = [
    "", " ", "1s", "-1s", "0s", "1e309", "999999999999d", "10000000000000000000000s", "PT1S",
    "trigger.x", "steps.x.y", "`1`", "a..b", "*", ">", "foo(", "abs(`-1`)", "to_string(@)",
    "saga.status.x", "a.b.>", "\u00e9t\u00e9", "\U0001f600", "\x00", "\ufeff", "x" * 300,
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(ODD_TEXT),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def near_misses(draw: st.DrawFn) -> dict[str, Any]:
    """A valid definition with 1-4 random parts replaced, removed or added."""
    doc: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(DOCS)))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from([p for p in _paths(doc) if p]))
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        operation = draw(st.sampled_from(["replace", "remove", "add"]))
        if operation == "replace":
            parent[path[-1]] = draw(VALUES)
        elif operation == "remove":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = draw(VALUES)
        else:
            parent.append(draw(VALUES))
    return doc


def parses_or_explains(text: str) -> None:
    problems = []
    try:
        parse_definition(text)
    except DefinitionError as exc:
        problems = exc.problems
        assert problems, "a DefinitionError names at least one problem"
    assert all(p.message for p in problems)


@FUZZ
@given(st.text(max_size=400))
def test_arbitrary_text(text: str) -> None:
    parses_or_explains(text)


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_read_as_text(data: bytes) -> None:
    parses_or_explains(data.decode("utf-8", "replace"))


@FUZZ
@given(near_misses())
def test_valid_definitions_with_random_parts_changed(doc: dict[str, Any]) -> None:
    parses_or_explains(yaml.safe_dump(doc, allow_unicode=True))


SPLICES = [
    "&a [*a]", "*nowhere", "<<: {a: 1}", "? [complex]\n: key", "0x1F", "0o17", "1_000", ".inf",
    ".nan", "~", "2001-12-14", "!!str", "!!binary aGVsbG8=", "!!set {a, b}", "!!omap [a: 1]",
    "!custom x", "!!python/object:os.system ls", "!!python/name:os.system", "%YAML 1.1",
    "'unterminated", '"\\x41"', "[", "{", "- - -", "\t", "|\n  block", ">-\n  folded",
]  # fmt: skip


@FUZZ
@given(st.data())
def test_valid_files_with_odd_yaml_spliced_in(data: st.DataObject) -> None:
    lines = data.draw(st.sampled_from(TEXTS)).splitlines()
    index = data.draw(st.integers(0, len(lines) - 1))
    key = lines[index].split(":")[0] if ":" in lines[index] else lines[index]
    value = data.draw(st.sampled_from(SPLICES) | st.text(max_size=20))
    lines[index] = f"{key}: {value}"
    parses_or_explains("\n".join(lines))


@pytest.mark.parametrize(
    "tagged",
    [
        "!!python/object/apply:os.system ['touch {marker}']",
        "!!python/object/apply:subprocess.call [[touch, '{marker}']]",
        "!!python/name:os.system",
        "!!python/object:os.system {{}}",
    ],
)
def test_tags_naming_python_code_never_run_it(tagged: str, tmp_path: Path) -> None:
    """The safe loader: a tag naming Python code is a problem (or ignored), never a call."""
    marker = tmp_path / "ran"
    text = TEXTS[0].replace("version: 1", "version: " + tagged.format(marker=marker))
    with pytest.raises(DefinitionError):
        parse_definition(text)
    assert not marker.exists()


@pytest.mark.parametrize("expression", ["__import__('os')", "eval(`1`)", "os.system(`ls`)"])
def test_expressions_cannot_call_python(expression: str) -> None:
    """Payload templates are JMESPath: an unknown function is a problem, never a call."""
    text = TEXTS[0].replace("trigger.order_id", expression, 1)
    with pytest.raises(DefinitionError, match=r"invalid expression|unknown function"):
        parse_definition(text)


def test_dunder_names_are_plain_keys_not_attributes() -> None:
    found = compile_expression("trigger.__class__.__name__").search({"trigger": {"id": 1}})
    assert found is None


# -- odd scalars (found by fuzzing, fixed) ----------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "!!int 12x",
        "!!float 1e4x",
        "!!timestamp 2020-13-45",
        "!!bool maybe",
        '"\\ud800"',
    ],
)
def test_odd_scalars_are_problems_not_crashes(value: str) -> None:
    text = TEXTS[0].replace("order_id: trigger.order_id", f"order_id: {value}", 1)
    assert text != TEXTS[0]
    with pytest.raises(DefinitionError):
        parse_definition(text)
