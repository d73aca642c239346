"""Fuzzing the event decoder: any subject, bytes and headers give Work or Term, never raise."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saga.definition import load_definitions
from saga.engine.intake import Intake, Work
from saga.nats.settle import Term
from tests.conftest import DEFINITIONS

INTAKE = Intake(load_definitions([DEFINITIONS]))
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SUBJECTS = sorted(INTAKE.by_subject)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["order_id", "trip_id", "reason"]) | st.text(max_size=8),
            inner,
            max_size=4,
        )
    ),
    max_leaves=15,
)
PAYLOADS = (
    st.binary(max_size=200)
    | JSON.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(st.sampled_from(["order_id", "trip_id", "reason"]), JSON).map(
        lambda v: json.dumps(v).encode()
    )
    | st.sampled_from(
        [b"NaN", b"-Infinity", b'{"a": NaN}', b"1e999", b"[" * 400, b"\xef\xbb\xbf{}"]
    )
)
HEADER_NAMES = st.sampled_from(["Saga-Id", "Saga-Name", "Saga-Timer", "Saga-Step"]) | st.text(
    max_size=10
)
HEADER_VALUES = st.text(max_size=300) | st.sampled_from(
    ["order-fulfilment", "travel-booking", "deadline._.1", "step-timeout.x.1", "bogus.a.b", "a.b"]
)
HEADERS = st.none() | st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4)
ANY_SUBJECT = st.sampled_from([*SUBJECTS, "saga.timer.fire.x.y"]) | st.text(max_size=30)


@FUZZ
@given(ANY_SUBJECT, PAYLOADS, HEADERS, st.text(max_size=10), st.integers(0, 2**64))
def test_any_message_is_work_or_a_reason(
    subject: str, data: bytes, headers: dict[str, str] | None, stream: str, sequence: int
) -> None:
    result = INTAKE.parse(subject, data, headers, stream, sequence)
    assert isinstance(result, Work | Term)
    if isinstance(result, Term):
        assert result.reason


@FUZZ
@given(st.sampled_from(SUBJECTS), JSON, st.text(min_size=1, max_size=300))
def test_a_known_subject_with_an_id_header_is_decided_by_payload_type(
    subject: str, payload: Any, saga_id: str
) -> None:
    result = INTAKE.parse(subject, json.dumps(payload).encode(), {"Saga-Id": saga_id}, "S", 1)
    if not isinstance(payload, dict):
        assert isinstance(result, Term)
        assert result.code.value == "malformed"
    elif len(saga_id) > 256:
        assert isinstance(result, Term)
    else:
        assert isinstance(result, Work)
        assert result.saga_id == saga_id


@pytest.mark.parametrize("data", [b"[" * 5000, b'{"a":' * 5000])
def test_deeply_nested_json_is_a_reason_not_a_crash(data: bytes) -> None:
    result = INTAKE.parse(SUBJECTS[0], data, {"Saga-Id": "x"}, "S", 1)
    assert isinstance(result, Term)
