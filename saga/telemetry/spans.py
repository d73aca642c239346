"""The span model (OpenTelemetry messaging conventions, ``messaging.system = nats``).

- ``saga {name}``, ``saga.step {step}``, ``saga.compensate {step}``: written from the
  instance record, see :mod:`saga.telemetry.saga_spans`;
- ``process {subject}`` (CONSUMER): handling one message, parent = the context that
  created the message, or, when told otherwise, the given parent and a link to the
  creator (a link to the parent itself would only repeat it);
- ``send {subject}`` (PRODUCER): each publish of a participant or a front end, its
  context injected into the headers (the engine's publishes carry the saga's context
  and write no span, see :mod:`saga.telemetry.engine_spans`).

Cheap when it can be: with tracing off, ``consuming`` and ``sending`` hand out one shared
no-op context manager; a span that is not recording (sampled out, e.g. with
``OTEL_TRACES_SAMPLER=parentbased_traceidratio``) gets no attributes built.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanKind, Status, StatusCode

from saga.protocol import HEADER_MSG_ID
from saga.telemetry.finished import NewIds, new_ids, write_finished
from saga.telemetry.ids import forced_ids
from saga.telemetry.propagation import extract, has_span, inject
from saga.telemetry.setup import Telemetry

SYSTEM = {"messaging.system": "nats"}
_NOTHING: AbstractContextManager[None] = nullcontext()
"""What ``consuming`` and ``sending`` return with tracing off (reusable, no span)."""


def mark_error(span: Span | None, error_type: str, description: str) -> None:
    if span is None:
        return
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, description))


def consuming(
    telemetry: Telemetry,
    subject: str,
    headers: Mapping[str, str] | None,
    *,
    saga_id: str | None,
    parent: Context | None = None,
    start_ns: int | None = None,
    message_id: str | None = None,
    name: str | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> AbstractContextManager[Span | None]:
    """A CONSUMER span around handling one message; the current span inside the block.

    ``message_id``: the message's ``Nats-Msg-Id`` when it has one (what its ``send`` span
    carries), else this fallback. ``name``: instead of ``process {subject}`` when the
    subject is unbounded (a timer's names its saga)."""
    if not telemetry.enabled:
        return _NOTHING
    if headers and headers.get(HEADER_MSG_ID):
        message_id = headers[HEADER_MSG_ID]
    return _consuming(
        telemetry, subject, headers, saga_id, parent, start_ns, message_id, name, attributes
    )


@contextmanager
def _consuming(
    telemetry: Telemetry,
    subject: str,
    headers: Mapping[str, str] | None,
    saga_id: str | None,
    parent: Context | None,
    start_ns: int | None,
    message_id: str | None,
    name: str | None,
    attributes: Mapping[str, Any] | None,
) -> Iterator[Span | None]:
    creator = extract(headers)
    links = []
    if parent is not None and has_span(creator):
        links.append(Link(trace.get_current_span(creator).get_span_context()))
    span = telemetry.tracer.start_span(
        name or f"process {subject}",
        context=parent if parent is not None else creator,
        kind=SpanKind.CONSUMER,
        links=links,
        start_time=start_ns,
    )
    if span.is_recording():
        span.set_attributes(_messaging(subject, "process", saga_id, message_id))
        if attributes:
            span.set_attributes(attributes)
    with trace.use_span(
        span, end_on_exit=True, record_exception=True, set_status_on_exception=True
    ):
        yield span


def sending(
    telemetry: Telemetry,
    subject: str,
    headers: MutableMapping[str, str],
    *,
    saga_id: str | None,
    message_id: str | None,
) -> AbstractContextManager[None]:
    """A PRODUCER span around one publish (a child of the current span); injects its
    context into ``headers``."""
    if not telemetry.enabled:
        return _NOTHING
    return _sending_whole(telemetry, subject, headers, saga_id, message_id)


@contextmanager
def _sending_whole(
    telemetry: Telemetry,
    subject: str,
    headers: MutableMapping[str, str],
    saga_id: str | None,
    message_id: str | None,
) -> Iterator[None]:
    """:func:`_sending`, the span written whole when the publish is over (it has no
    children, and the handler never sees it): its ids are taken first, to be injected and
    made current, then it is handed to the processors ended. A publish that raises is
    written by a live span with those ids (the exception recorded as the SDK does)."""
    name = f"send {subject}"
    parent_context = context_api.get_current()
    ids = new_ids(telemetry, name, parent_context, SpanKind.PRODUCER)
    if ids is None:  # not the SDK's tracer: a live span
        with _sending(telemetry, subject, headers, saga_id, message_id):
            yield
        return
    start = time.time_ns()
    current = trace.set_span_in_context(NonRecordingSpan(ids.context), parent_context)
    token = context_api.attach(current)
    failed: Exception | None = None
    try:
        inject(headers, current)
        yield
    except Exception as exc:
        failed = exc
        raise
    finally:  # a cancelled publish ends its span too, as a live span's would
        context_api.detach(token)
        if failed is not None:
            _failed_send(
                telemetry, name, ids, parent_context, start, subject, saga_id, message_id, failed
            )
        elif ids.sampled:
            attributes = {**ids.attributes, **_messaging(subject, "send", saga_id, message_id)}
            write_finished(
                telemetry,
                name,
                ids.context.trace_id,
                ids.context.span_id,
                ids.parent,
                start,
                max(time.time_ns(), start),
                attributes,
                Status(StatusCode.UNSET),
                kind=SpanKind.PRODUCER,
                context=ids.context,
            )


def _failed_send(
    telemetry: Telemetry,
    name: str,
    ids: NewIds,
    parent_context: Context,
    start: int,
    subject: str,
    saga_id: str | None,
    message_id: str | None,
    exc: Exception,
) -> None:
    """A ``send`` span whose publish raised, as a live span would have ended."""
    if not ids.sampled:
        return
    with forced_ids(ids.context.trace_id, ids.context.span_id, True):
        span = telemetry.tracer.start_span(
            name, context=parent_context, kind=SpanKind.PRODUCER, start_time=start
        )
    span.set_attributes({**ids.attributes, **_messaging(subject, "send", saga_id, message_id)})
    with contextlib.suppress(Exception), trace.use_span(span, end_on_exit=True):
        raise exc


@contextmanager
def _sending(
    telemetry: Telemetry,
    subject: str,
    headers: MutableMapping[str, str],
    saga_id: str | None,
    message_id: str | None,
) -> Iterator[None]:
    span = telemetry.tracer.start_span(f"send {subject}", kind=SpanKind.PRODUCER)
    if span.is_recording():
        span.set_attributes(_messaging(subject, "send", saga_id, message_id))
    with trace.use_span(
        span, end_on_exit=True, record_exception=True, set_status_on_exception=True
    ):
        inject(headers)
        yield


def _messaging(
    subject: str, operation: str, saga_id: str | None, message_id: str | None
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        **SYSTEM,
        "messaging.destination.name": subject,
        "messaging.operation.type": operation,
    }
    if saga_id:
        attributes["messaging.message.conversation_id"] = saga_id
    if message_id:
        attributes["messaging.message.id"] = message_id
    return attributes
