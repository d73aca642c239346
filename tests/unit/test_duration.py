"""Durations: ``200ms``, ``10s``, ``1h30m``; bare numbers refused, text round-trips."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from saga.definition import RetryPolicy
from saga.definition.duration import DURATION_PATTERN, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("200ms", timedelta(milliseconds=200)),
        ("10s", timedelta(seconds=10)),
        ("2m", timedelta(minutes=2)),
        ("1h", timedelta(hours=1)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("  5s ", timedelta(seconds=5)),
        ("1.5s", timedelta(milliseconds=1500)),
        ("0.5ms1ms", timedelta(microseconds=1500)),
        ("1m1ms", timedelta(minutes=1, milliseconds=1)),
        ("1ms", timedelta(milliseconds=1)),
    ],
)
def test_parse_accepts_numbers_with_units(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert re.match(DURATION_PATTERN, text), "the JSON Schema must accept what the parser does"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (10, "10 has no unit: write '10s' or '10ms'"),
        (1.5, "1.5 has no unit"),
        ("10", "'10' has no unit: write '10s' or '10ms'"),
        ("ten seconds", "invalid duration 'ten seconds': use a number and a unit"),
        ("10 seconds", "invalid duration"),
        ("10sec", "invalid duration"),
        ("-5s", "invalid duration"),
        ("1h30", "invalid duration"),
        ("", "invalid duration"),
        ("0s", "must be at least 1ms"),
        ("0.0001ms", "must be at least 1ms"),
        (timedelta(0), "must be at least 1ms"),
        (timedelta(seconds=-1), "must be at least 1ms"),
        ("99999999999d", "is too long"),
        (None, "expected a duration such as '10s' or '200ms', got None"),
        (True, "got True"),
    ],
)
def test_parse_refuses_with_a_reason(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_duration(value)


def test_a_timedelta_passes_through() -> None:
    assert parse_duration(timedelta(seconds=3)) == timedelta(seconds=3)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(hours=2), "2h"),
        (timedelta(days=1), "24h"),
        (timedelta(minutes=90), "90m"),
        (timedelta(seconds=10), "10s"),
        (timedelta(milliseconds=1500), "1500ms"),
        (timedelta(microseconds=1500), "1.5ms"),
    ],
)
def test_format_is_the_shortest_exact_text(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@given(st.integers(min_value=1, max_value=10**12))
def test_format_round_trips(microseconds: int) -> None:
    value = timedelta(microseconds=microseconds)
    if value >= timedelta(milliseconds=1):
        assert parse_duration(format_duration(value)) == value


def test_durations_serialise_as_text() -> None:
    policy = RetryPolicy.model_validate({"backoff": "200ms", "max_backoff": "1m"})
    assert policy.model_dump(mode="json")["backoff"] == "200ms"
    assert policy.model_dump(mode="json")["max_backoff"] == "1m"


def test_backoff_grows_by_the_multiplier_up_to_the_cap() -> None:
    policy = RetryPolicy.model_validate({"backoff": "200ms", "max_backoff": "2s"})
    waits = [policy.delay(n).total_seconds() for n in range(1, 7)]
    assert waits == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]


def test_backoff_never_overflows() -> None:
    policy = RetryPolicy.model_validate({"attempts": 100, "multiplier": 10, "max_backoff": "1h"})
    assert policy.delay(99) == timedelta(hours=1)
    huge = RetryPolicy.model_validate({"multiplier": 10, "max_backoff": "99999999d"})
    assert huge.delay(100) == timedelta(days=99999999)
