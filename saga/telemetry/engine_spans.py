"""The engine's message spans, placed in the saga's tree (see :mod:`saga.telemetry.saga_spans`).

A reply or a timer is processed under the attempt it concerns, anything else (the
trigger, an operator's request) under the saga's root; the message's creator is a link.
A command sent for an attempt hangs under that attempt and carries the attempt's
context, so the participant's ``process`` span is the attempt's child, not the send's.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from contextlib import AbstractContextManager

from opentelemetry.trace import Span

from saga.core.events import Event
from saga.core.state import InstanceState
from saga.protocol import HEADER_ATTEMPT, HEADER_KIND, HEADER_MSG_ID, HEADER_STEP, KIND_COMPENSATION
from saga.store.base import InstanceRecord
from saga.telemetry.saga_spans import (
    COMPENSATION,
    STEP,
    attempt_context,
    message_role,
    root_context,
)
from saga.telemetry.setup import Telemetry
from saga.telemetry.spans import consuming, sending


def processing(
    telemetry: Telemetry,
    record: InstanceRecord,
    event: Event | None,
    subject: str,
    headers: Mapping[str, str],
    *,
    start_ns: int,
    message_id: str,
) -> AbstractContextManager[Span | None]:
    """The CONSUMER span of a transition of ``record``'s saga."""
    if not telemetry.enabled:
        return consuming(telemetry, subject, headers, saga_id=None)
    role = message_role(record.trace, record.state, event, subject)
    return consuming(
        telemetry,
        subject,
        headers,
        saga_id=record.state.saga_id,
        parent=role.parent,
        start_ns=start_ns,
        message_id=message_id,
        name=role.name,
        attributes=role.attributes,
    )


def publishing(
    telemetry: Telemetry,
    subject: str,
    headers: MutableMapping[str, str],
    state: InstanceState,
    saga_trace: Mapping[str, str] | None,
) -> AbstractContextManager[None]:
    """The PRODUCER span of one engine publish: under its attempt, or under the root."""
    if not telemetry.enabled or not saga_trace:
        return sending(
            telemetry,
            subject,
            headers,
            saga_id=state.saga_id,
            message_id=headers.get(HEADER_MSG_ID),
        )
    step, attempt = headers.get(HEADER_STEP), headers.get(HEADER_ATTEMPT, "")
    carried = None
    if step and attempt.isdigit():
        kind = COMPENSATION if headers.get(HEADER_KIND) == KIND_COMPENSATION else STEP
        parent = carried = attempt_context(saga_trace, state, kind, step, int(attempt))
    else:
        parent = root_context(saga_trace)
    return sending(
        telemetry,
        subject,
        headers,
        saga_id=state.saga_id,
        message_id=headers.get(HEADER_MSG_ID),
        parent=parent,
        carried=carried,
    )


def refused_action(telemetry: Telemetry, record: InstanceRecord, event: Event, why: str) -> None:
    """An operator action the engine refused: on the saga's trace too (an applied one is
    written from the history, see :mod:`saga.telemetry.saga_spans`)."""
    if not telemetry.enabled or not record.trace:
        return
    action = type(event).__name__.removeprefix("Operator").lower()
    span = telemetry.tracer.start_span(
        f"saga.operator {action}", context=root_context(record.trace)
    )
    if span.is_recording():
        attributes = {
            "saga.id": record.state.saga_id,
            "saga.name": record.state.saga_name,
            "saga.operator.action": action,
            "saga.operator.result": "refused",
            "saga.operator.refusal": why,
        }
        for field in ("actor", "reason"):  # when the request carries them
            value = getattr(event, field, None)
            if value:
                attributes[f"saga.operator.{field}"] = str(value)
        span.set_attributes(attributes)
    span.end()


def ignored(
    telemetry: Telemetry,
    record: InstanceRecord,
    event: Event | None,
    subject: str,
    headers: Mapping[str, str],
    *,
    start_ns: int,
    message_id: str,
    note: str,
) -> None:
    """A message that changed nothing (a duplicate or late reply, a stale timer): its
    ``process`` span says so, under the attempt it was meant for."""
    if not telemetry.enabled:
        return
    with processing(
        telemetry, record, event, subject, headers, start_ns=start_ns, message_id=message_id
    ) as span:
        if span is not None and span.is_recording():
            span.set_attribute("saga.message.ignored", note)
            if "duplicate" in note:
                span.set_attribute("saga.reply.duplicate", True)
            elif "late reply" in note or "instance is " in note:
                span.set_attribute("saga.reply.late", True)  # the saga is past it
