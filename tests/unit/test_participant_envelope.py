"""Checks on a command's body and headers, each with its dead-letter code (docs/protocol.md,
"Checking a message")."""

from __future__ import annotations

import dataclasses

import pytest

from saga.participant.envelope import BadMessage, Envelope, command_envelope, parse_payload
from saga.protocol import MAX_PAYLOAD_BYTES

GOOD = {
    "Saga-Id": "o-1",
    "Saga-Name": "order",
    "Saga-Step": "reserve",
    "Saga-Kind": "step",
    "Saga-Attempt": "2",
}


def without(name: str) -> dict[str, str]:
    return {k: v for k, v in GOOD.items() if k != name}


@pytest.mark.parametrize(
    ("headers", "kind", "code", "reason"),
    [
        (without("Saga-Id"), "step", "no-saga-id", "no Saga-Id"),
        ({**GOOD, "Saga-Id": " "}, "step", "no-saga-id", "no Saga-Id"),
        ({**GOOD, "Saga-Id": "x" * 257}, "step", "malformed", "257 characters"),
        (without("Saga-Name"), "step", "malformed", "no Saga-Name"),
        (without("Saga-Step"), "step", "malformed", "no Saga-Step"),
        ({**GOOD, "Saga-Kind": "undo"}, "step", "malformed", "Saga-Kind is 'undo'"),
        (GOOD, "compensation", "malformed", "handled as a compensation"),
        ({**GOOD, "Saga-Attempt": "two"}, "step", "malformed", "Saga-Attempt is 'two'"),
        ({**GOOD, "Saga-Attempt": "-1"}, "step", "malformed", "Saga-Attempt is '-1'"),
        ({**GOOD, "Saga-Attempt": "1.5"}, "step", "malformed", "whole number"),
    ],
)
def test_a_bad_header_is_a_bad_message_with_its_code(
    headers: dict[str, str], kind: str, code: str, reason: str
) -> None:
    with pytest.raises(BadMessage) as bad:
        command_envelope(headers, kind=kind, step=None, observed=False)
    assert bad.value.code.value == code
    assert reason in bad.value.reason


def test_good_headers_and_their_defaults() -> None:
    envelope = command_envelope(GOOD, kind="step", step=None, observed=False)
    assert (envelope.saga_id, envelope.step, envelope.kind, envelope.attempt) == (
        "o-1",
        "reserve",
        "step",
        2,
    )
    assert envelope.idempotency_key == "order:o-1:reserve:step"
    bare = command_envelope(
        without("Saga-Attempt") | {"Saga-Kind": ""}, kind="step", step=None, observed=False
    )
    assert (bare.kind, bare.attempt) == ("step", 1)
    fallback = command_envelope(without("Saga-Step"), kind="step", step="named", observed=False)
    assert fallback.step == "named"
    assert len(command_envelope({**GOOD, "Saga-Id": "x" * 256}, "step", None, False).saga_id) == 256


@pytest.mark.parametrize(
    ("data", "code", "reason"),
    [
        (b"{" + b" " * MAX_PAYLOAD_BYTES + b"}", "malformed", "larger than 1048576 bytes"),
        (b'{"a": "\xff"}', "malformed", "not JSON"),
        (b"[1]", "malformed", "a JSON list, not an object"),
        (b"{not json", "malformed", "not JSON"),
        (b'{"a": NaN}', "non-finite-number", "NaN"),
        (b'{"a": -Infinity}', "non-finite-number", "-Infinity"),
        (b'{"a": 1e400}', "non-finite-number", "1e400"),
    ],
    ids=["over-1-mib", "invalid-utf8", "list", "not-json", "nan", "infinity", "overflow"],
)
def test_a_body_that_is_not_a_json_object_is_dead_lettered(
    data: bytes, code: str, reason: str
) -> None:
    with pytest.raises(BadMessage) as bad:
        parse_payload(data)
    assert bad.value.code.value == code
    assert reason in bad.value.reason


def test_a_good_body() -> None:
    assert parse_payload(b"") == {}
    assert parse_payload(b'{"a": 1.5, "b": "\xc3\xa9"}') == {"a": 1.5, "b": "é"}
    assert parse_payload(b"{" + b" " * (MAX_PAYLOAD_BYTES - 2) + b"}") == {}


def test_a_redriven_run_is_a_new_idempotency_key() -> None:
    """``Saga-Run: N`` (a redrive): the participant handles the step afresh instead of
    replaying the answer it stored for the first run."""
    first = command_envelope(GOOD, kind="step", step=None, observed=False)
    again = command_envelope({**GOOD, "Saga-Run": "2"}, kind="step", step=None, observed=False)
    assert first.run == 0
    assert again.run == 2
    assert again.idempotency_key == first.idempotency_key + ":run2"
    with pytest.raises(BadMessage, match="Saga-Run is 'two'"):
        command_envelope({**GOOD, "Saga-Run": "two"}, kind="step", step=None, observed=False)


@pytest.mark.parametrize(
    ("attempt", "run", "expected"),
    [("1", None, (1, 0)), (" 1 ", " 3", (1, 3)), ("07", "0", (7, 0)), (None, "", None)],
)
def test_attempt_and_run_read_the_same_with_or_without_the_common_case(
    attempt: str | None, run: str | None, expected: tuple[int, int] | None
) -> None:
    """``Saga-Attempt: 1`` and no ``Saga-Run`` skip the checks; every other value is checked."""
    headers = without("Saga-Attempt")
    if attempt is not None:
        headers["Saga-Attempt"] = attempt
    if run is not None:
        headers["Saga-Run"] = run
    if expected is None:
        with pytest.raises(BadMessage, match="Saga-Run is ''"):
            command_envelope(headers, kind="step", step=None, observed=False)
        return
    envelope = command_envelope(headers, kind="step", step=None, observed=False)
    assert (envelope.attempt, envelope.run) == expected


def test_an_envelope_is_a_frozen_value_with_its_key() -> None:
    """Its fields are set at once by its own ``__init__``: still frozen, compared and
    printed by its fields as the dataclass would, the key computed with it."""
    envelope = Envelope("o-1", "order", "reserve", "step", 2)
    assert envelope == Envelope("o-1", "order", "reserve", "step", 2, run=0)
    assert envelope != Envelope("o-1", "order", "reserve", "step", 2, run=1)
    assert hash(envelope) == hash(Envelope("o-1", "order", "reserve", "step", 2))
    assert envelope.idempotency_key == "order:o-1:reserve:step"
    assert Envelope("o-1", "order", "reserve", "step", 1, 2).idempotency_key.endswith(":run2")
    assert repr(envelope) == (
        "Envelope(saga_id='o-1', saga_name='order', step='reserve', kind='step', attempt=2, run=0)"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        envelope.attempt = 3  # type: ignore[misc]
    assert {f.name for f in dataclasses.fields(Envelope)} == set(vars(envelope))
