"""What the engine adds to a saga's trace beside the spans derived from the record.

Every span the engine writes about a stored transition is derived from the instance
record (:mod:`saga.telemetry.saga_spans`), so an engine killed before its exporter
flushed loses none of them. The engine writes no span of its own for a message that
changed the record; it only makes the saga's context current (:func:`in_saga`, for the
log lines and timers of the transition) and puts the right ``traceparent`` on what it
publishes (:func:`carry`): a command carries its attempt's context, so the participant's
``process`` span is the attempt's child; a status event carries the root's.

Messages that changed nothing (a duplicate or late reply, a stale timer) and refused
operator actions have nothing in the record to derive a span from: they get a span
written as it happens (:func:`ignored`, :func:`refused_action`).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from contextlib import AbstractContextManager, nullcontext

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, Span

from saga.core.events import Event
from saga.core.state import InstanceState
from saga.protocol import HEADER_ATTEMPT, HEADER_KIND, HEADER_STEP, KIND_COMPENSATION
from saga.store.base import InstanceRecord
from saga.telemetry.propagation import inject
from saga.telemetry.saga_spans import (
    COMPENSATION,
    STEP,
    attempt_context,
    message_role,
    root_context,
    saga_span_context,
)
from saga.telemetry.setup import Telemetry
from saga.telemetry.spans import consuming

_NOTHING: AbstractContextManager[object] = nullcontext()


def _processing(
    telemetry: Telemetry,
    record: InstanceRecord,
    event: Event | None,
    subject: str,
    headers: Mapping[str, str],
    *,
    start_ns: int,
    message_id: str,
) -> AbstractContextManager[Span | None]:
    """The CONSUMER span of a message of ``record``'s saga that changed nothing."""
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


def in_saga(saga_trace: Mapping[str, str]) -> AbstractContextManager[object]:
    """The saga's root as the current context (no span is written): log lines name its
    trace, and a timer scheduled inside carries it."""
    root = saga_span_context(saga_trace)
    if root is None:
        return _NOTHING
    return trace.use_span(NonRecordingSpan(root), end_on_exit=False)


def carry(
    headers: MutableMapping[str, str], state: InstanceState, saga_trace: Mapping[str, str]
) -> None:
    """Put in ``headers`` the context the message belongs to: its attempt's for a command
    (``Saga-Step`` and ``Saga-Attempt`` headers), else the saga's root."""
    step, attempt = headers.get(HEADER_STEP), headers.get(HEADER_ATTEMPT, "")
    if step and attempt.isdigit():
        kind = COMPENSATION if headers.get(HEADER_KIND) == KIND_COMPENSATION else STEP
        inject(headers, attempt_context(saga_trace, state, kind, step, int(attempt)))
    else:
        inject(headers, root_context(saga_trace))


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
    with _processing(
        telemetry, record, event, subject, headers, start_ns=start_ns, message_id=message_id
    ) as span:
        if span is not None and span.is_recording():
            span.set_attribute("saga.message.ignored", note)
            if "duplicate" in note:
                span.set_attribute("saga.reply.duplicate", True)
            elif "late reply" in note or "instance is " in note:
                span.set_attribute("saga.reply.late", True)  # the saga is past it
