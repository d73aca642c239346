"""Human durations (``200ms``, ``10s``, ``2m``, ``1h30m``) as a pydantic type."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$")
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
_SHORTEST = timedelta(milliseconds=1)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DURATION_PATTERN = r"^ *([0-9]+(\.[0-9]+)? *(ms|s|m|h|d) *)+$"
"""The same language as :func:`parse_duration`, for the JSON Schema."""


def parse_duration(value: Any) -> timedelta:
    """Parse ``1h30m``-style text; bare numbers are refused because their unit is a guess."""
    if isinstance(value, timedelta):
        return _positive(value, value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"{value!r} has no unit: write '{value}s' or '{value}ms'")
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as '10s' or '200ms', got {value!r}")
    text = value.strip().replace(" ", "")
    if _NUMBER.match(text):
        raise ValueError(f"{value!r} has no unit: write '{text}s' or '{text}ms'")
    if not _WHOLE.match(text):
        raise ValueError(f"invalid duration {value!r}: use a number and a unit (ms, s, m, h, d)")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))
    try:
        return _positive(timedelta(seconds=seconds), value)
    except OverflowError:
        raise ValueError(f"duration {value!r} is too long") from None


def _positive(duration: timedelta, written: Any) -> timedelta:
    if duration < _SHORTEST:
        raise ValueError(f"duration {str(written)!r} must be at least 1ms")
    return duration


def format_duration(value: timedelta) -> str:
    """The shortest text that parses back to ``value``."""
    us = value // timedelta(microseconds=1)
    for unit, size in (("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000), ("ms", 1000)):
        if us % size == 0:
            return f"{us // size}{unit}"
    return f"{us / 1000}ms"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["10s", "200ms"]}),
]
