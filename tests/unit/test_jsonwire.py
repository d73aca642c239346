"""Nothing the project publishes is invalid JSON (RFC 8259): no NaN, no Infinity."""

from __future__ import annotations

import ast
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from saga import jsonwire
from saga.definition import load_definitions
from saga.engine.effects import encode
from saga.engine.intake import Intake
from saga.jsonwire import NonFiniteNumberError
from saga.nats.settle import Term
from saga.participant import Reject as Declined
from services.payment import check_amount
from tests.conftest import DEFINITIONS, ROOT

INTAKE = Intake(load_definitions([DEFINITIONS]))
NON_FINITE = [b'{"total": 1e400}', b'{"total": -1E+999}', b'{"a": NaN}', b'{"a": [Infinity]}']
PRINTED_ONLY = {
    "saga/cli/definitions.py": "prints reports and the JSON Schema for a person or a tool",
    "saga/cli/instances.py": "prints JSON read back from JetStream for a person or a tool",
    "saga/cli/dlq.py": "prints JSON read back from JetStream",
    "saga/logs.py": "a log line must never raise",
    "saga/admin/server.py": "HTTP answers built from stored (already finite) records",
    "saga/testing/wire.py": "text for a test report",
    "bench/sagas.py": "prints results",
    "bench/measure.py": "writes results",
    "bench/participant_alone.py": "prints results",
    "bench/console_scale.py": "prints results",
    "bench/index_scale.py": "prints results",
    "saga/cli/index.py": "prints index summaries read back from JetStream",
    "saga/console/dead_letters.py": "shows a stored body on a page",
    "saga/console/instances.py": "shows stored kept data on a page",
}


@pytest.mark.parametrize("data", NON_FINITE)
def test_loads_refuses_non_finite_numbers(data: bytes) -> None:
    with pytest.raises(NonFiniteNumberError):
        jsonwire.loads(data)


def test_loads_keeps_big_integers_and_ordinary_floats() -> None:
    assert jsonwire.loads(b'{"a": 1e300, "b": 100000000000000000000000}') == {
        "a": 1e300,
        "b": 10**23,
    }


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_every_publishing_encoder_refuses_non_finite_numbers(value: float) -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        jsonwire.dumps({"amount": value})
    with pytest.raises(ValueError, match="not JSON compliant"):
        encode({"amount": value})  # the engine's commands and lifecycle events


@pytest.mark.parametrize("data", NON_FINITE)
def test_a_trigger_with_a_non_finite_number_is_dead_lettered(data: bytes) -> None:
    result = INTAKE.parse("orders.placed", data, {}, "SAGA_EVENTS", 1)
    assert isinstance(result, Term)
    assert result.code.value == "non-finite-number"
    assert "not valid JSON" in result.reason


@pytest.mark.parametrize("amount", [math.inf, -math.inf, math.nan])
def test_the_payment_service_never_answers_infinity(amount: float) -> None:
    with pytest.raises(Declined) as declined:
        check_amount(amount)
    assert declined.value.reason == "invalid-amount"
    jsonwire.dumps(declined.value.payload())  # publishable


def _json_dumps_without_allow_nan(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "dumps"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "json"
            and not any(
                k.arg == "allow_nan"
                and isinstance(k.value, ast.Constant)
                and k.value.value is False
                for k in node.keywords
            )
        ):
            lines.append(node.lineno)
    return lines


def test_no_module_that_publishes_encodes_json_that_allows_nan() -> None:
    files = [
        p
        for folder in ("saga", "services", "bench", "docs/examples")
        for p in sorted((ROOT / folder).rglob("*.py"))
    ]
    found = {
        f"{p.relative_to(ROOT)}:{line}"
        for p in files
        if str(p.relative_to(ROOT)) not in PRINTED_ONLY
        for line in _json_dumps_without_allow_nan(p)
    }
    assert not found, "use saga.jsonwire.dumps (or allow_nan=False) for what goes on the wire"


FAST_PATH_CASES = [
    {"order_id": "o-1", "items": [{"sku": "A", "qty": 2}], "total": 42.5, "ok": True},
    {"note": "null is a word", "none": None, "nested": [None, {"x": None}]},
    {"big": 10**30, "small": -(10**25), "e": 1e16, "tiny": 5e-324},
    {"text": "café ☕ \u2028", "empty": {}, "list": []},
]
"""Values orjson and msgspec handle, and ones they hand back to ``json``."""


@pytest.mark.parametrize("value", FAST_PATH_CASES)
def test_the_fast_codecs_give_what_json_gives(value: dict[str, object]) -> None:
    assert jsonwire.loads(jsonwire.dumps(value)) == value
    assert json.loads(jsonwire.dumps(value)) == value
    assert jsonwire.loads(json.dumps(value)) == json.loads(json.dumps(value))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_number_deep_inside_is_refused_not_written_as_null(value: float) -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        jsonwire.dumps({"a": [1, {"b": value}]})
    with pytest.raises(ValueError, match="Out of range float"):
        jsonwire.dumps({"a": value}, default=str)


def test_a_lone_surrogate_is_read_as_json_reads_it() -> None:
    assert jsonwire.loads(b'{"s": "\\ud800"}') == {"s": "\ud800"}


def test_default_is_used_for_what_json_cannot_write() -> None:
    when = datetime(2026, 12, 3, tzinfo=UTC)
    assert jsonwire.loads(jsonwire.dumps({"at": when}, default=str)) == {"at": str(when)}
    with pytest.raises(TypeError):
        jsonwire.dumps({"at": when})
    with pytest.raises(TypeError):
        jsonwire.dumps({"s": {1, 2}})


class _Float(float):
    pass


@pytest.mark.parametrize("value", [math.nan, math.inf, _Float("nan"), (1, math.nan)])
def test_a_null_beside_a_non_finite_number_does_not_let_it_through(value: object) -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        jsonwire.dumps({"none": None, "deep": [{"x": None, "v": value}]})


def test_a_null_is_written_by_orjson_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``null`` is a None when nothing else could have become one: orjson's bytes kept
    (a status event's ``"reason": null`` was encoded twice, the second time by ``json``)."""
    value = {"saga_id": "o-1", "status": "completed", "reason": None, "list": [None, 1.5, True]}
    expected = json.dumps(value, separators=(",", ":")).encode()  # before the patch

    def refused(*_: object, **__: object) -> str:
        raise AssertionError("encoded a second time")

    monkeypatch.setattr(json, "dumps", refused)  # the module jsonwire falls back to
    assert jsonwire.dumps(value) == orjson.dumps(value) == expected
    assert encode(value) == expected
