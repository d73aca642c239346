"""What a participant's ``process`` span says about the saga: step, attempt, delivery, outcome."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.trace import Span

from saga.protocol import HEADER_ATTEMPT, HEADER_KIND, HEADER_SAGA_ID, HEADER_STEP
from saga.telemetry.spans import mark_error

REJECTED = "saga.rejected"
"""``error.type`` of a business failure (the handler's ``Reject``); the reason is an attribute."""


def delivery_attributes(headers: Mapping[str, str], delivered: int) -> dict[str, Any]:
    """The saga, the command's step, kind and attempt, and how many times it has been
    delivered."""
    found: dict[str, Any] = {"saga.delivery": delivered}
    if headers.get(HEADER_SAGA_ID):
        found["saga.id"] = headers[HEADER_SAGA_ID]
    if headers.get(HEADER_STEP):
        found["saga.step"] = headers[HEADER_STEP]
    if headers.get(HEADER_KIND):
        found["saga.kind"] = headers[HEADER_KIND]
    attempt = headers.get(HEADER_ATTEMPT, "")
    if attempt.isdigit():
        found["saga.attempt"] = int(attempt)
    return found


def mark_business_failure(span: Span, reason: str) -> None:
    """The handler refused the step: an ERROR span with the reason, not a crash."""
    if span.is_recording():
        span.set_attribute("saga.failure.reason", reason)
        mark_error(span, REJECTED, reason)
