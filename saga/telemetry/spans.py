"""The span model (OpenTelemetry messaging conventions, ``messaging.system = nats``).

- ``saga {name}``: a short root span when an instance starts;
- ``saga.step {step}`` / ``saga.compensate {step}``: written when the outcome is known,
  from the step's real start to its end, as children of the root;
- ``process {subject}`` (CONSUMER): handling one message, parent = the context that
  created the message (also added as a link);
- ``send {subject}`` (PRODUCER): each publish, its context injected into the headers.

Cheap when it can be: with tracing off, ``consuming`` and ``sending`` hand out one shared
no-op context manager; a span that is not recording (sampled out, e.g. with
``OTEL_TRACES_SAMPLER=parentbased_traceidratio``) gets no attributes built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from saga.telemetry.propagation import extract, has_span, inject
from saga.telemetry.setup import Telemetry

SYSTEM = {"messaging.system": "nats"}
_NOTHING: AbstractContextManager[None] = nullcontext()
"""What ``consuming`` and ``sending`` return with tracing off (reusable, no span)."""


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)


def mark_error(span: Span | None, error_type: str, description: str) -> None:
    if span is None:
        return
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, description))


@dataclass(frozen=True)
class SagaRoot:
    """A saga's root span, started but not yet written: it is ended (and so exported) only
    once the new instance is stored, so a trigger that loses a create race leaves no trace."""

    context: dict[str, str]
    """The span's context as headers, kept with the instance."""
    span: Span | None = None

    def end(self) -> None:
        if self.span is not None:
            self.span.end()


def start_saga(
    telemetry: Telemetry,
    name: str,
    version: int,
    saga_id: str,
    parent: Mapping[str, str] | None,
    start_ns: int,
) -> SagaRoot:
    """Start the short root span of a new instance."""
    if not telemetry.enabled:
        return SagaRoot({})
    span = telemetry.tracer.start_span(f"saga {name}", context=extract(parent), start_time=start_ns)
    if span.is_recording():
        span.set_attributes({"saga.id": saga_id, "saga.name": name, "saga.version": version})
    carrier: dict[str, str] = {}
    inject(carrier, trace.set_span_in_context(span))
    return SagaRoot(carrier, span)


def parent_for(message_headers: Mapping[str, str] | None, saga_trace: Mapping[str, str]) -> Context:
    """The message's creator when it belongs to the saga's trace, else the saga's root."""
    creator = extract(message_headers)
    root = extract(saga_trace)
    if has_span(creator) and (not has_span(root) or _trace(creator) == _trace(root)):
        return creator
    return root


def _trace(context: Context) -> int:
    return trace.get_current_span(context).get_span_context().trace_id


def consuming(
    telemetry: Telemetry,
    subject: str,
    headers: Mapping[str, str] | None,
    *,
    saga_id: str | None,
    parent: Context | None = None,
    start_ns: int | None = None,
    message_id: str | None = None,
) -> AbstractContextManager[Span | None]:
    """A CONSUMER span around handling one message; the current span inside the block."""
    if not telemetry.enabled:
        return _NOTHING
    return _consuming(telemetry, subject, headers, saga_id, parent, start_ns, message_id)


@contextmanager
def _consuming(
    telemetry: Telemetry,
    subject: str,
    headers: Mapping[str, str] | None,
    saga_id: str | None,
    parent: Context | None,
    start_ns: int | None,
    message_id: str | None,
) -> Iterator[Span | None]:
    creator = extract(headers)
    links = [Link(trace.get_current_span(creator).get_span_context())] if has_span(creator) else []
    span = telemetry.tracer.start_span(
        f"process {subject}",
        context=parent if parent is not None else creator,
        kind=SpanKind.CONSUMER,
        links=links,
        start_time=start_ns,
    )
    if span.is_recording():
        span.set_attributes(_messaging(subject, "process", saga_id, message_id))
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
    """A PRODUCER span around one publish; injects its context into ``headers``."""
    if not telemetry.enabled:
        return _NOTHING
    return _sending(telemetry, subject, headers, saga_id, message_id)


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


def outcome_span(
    telemetry: Telemetry,
    name: str,
    saga_trace: Mapping[str, str],
    start: datetime,
    end: datetime,
    attributes: Callable[[], dict[str, Any]],
    error: str | None = None,
) -> None:
    """A finished span with real start and end times: nothing stays open across a wait.

    ``attributes`` is called only when the span records (not when it is sampled out).
    """
    if not telemetry.enabled:
        return
    span = telemetry.tracer.start_span(name, context=extract(saga_trace), start_time=_ns(start))
    if not span.is_recording():
        return  # nothing to end: a non-recording span is never exported
    span.set_attributes(attributes())
    if error is not None:
        mark_error(span, error, error)
    span.end(end_time=_ns(end))
