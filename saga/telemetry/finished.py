"""Spans known whole when they are written: handed to the SDK's processors as they are.

The engine's saga spans are derived from the instance record (:mod:`saga.telemetry.saga_spans`):
name, ids, parent, start, end, attributes and status are all known before the span
exists. Starting a live SDK span only to end it at once costs the sampler, the id
generator, a lock, attribute bookkeeping, and a copy at the end; about half of what
tracing cost the engine's event loop (docs/performance.md, "Issue 15, round 4: tracing").
When the SDK's tracer has processors that act only when a span ends
(:attr:`Telemetry.whole_spans`: :func:`telemetry_from_env` sets it, with its one batch
processor), :func:`write_finished` builds the SDK's ``ReadableSpan`` directly (the same
fields, the same flags) and gives it to the tracer's processors, which export it as any
other. Otherwise (another tracer, providers of the caller's that may act when a span
starts) it returns False and the caller starts and ends a span the usual way.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    TraceFlags,
    get_current_span,
)

from saga.telemetry.setup import Telemetry

if TYPE_CHECKING:  # the SDK is loaded only when tracing is on
    from opentelemetry.sdk.util.instrumentation import InstrumentationInfo, InstrumentationScope

_SAMPLED_RANDOM = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def _sdk_tracer(telemetry: Telemetry) -> Any | None:
    """The SDK's tracer, when ``telemetry`` says its processors act only when a span ends
    (:attr:`Telemetry.whole_spans`); else None."""
    if not telemetry.whole_spans:
        return None
    from opentelemetry.sdk.trace import Tracer as SdkTracer

    tracer = telemetry.tracer
    return tracer if type(tracer) is SdkTracer else None


@functools.lru_cache(maxsize=16)
def _scope(info: InstrumentationInfo) -> InstrumentationScope:
    """The tracer's instrumentation scope (ours has no attributes), as its spans carry it."""
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    return InstrumentationScope(info.name, info.version, info.schema_url)


def write_finished(
    telemetry: Telemetry,
    name: str,
    trace_id: int,
    span_id: int,
    parent: SpanContext | None,
    start_ns: int,
    end_ns: int,
    attributes: Mapping[str, Any],
    status: Status,
    links: Sequence[Link] = (),
    kind: SpanKind = SpanKind.INTERNAL,
    context: SpanContext | None = None,
) -> bool:
    """Export a sampled, ended span with these fields; False: not for this telemetry (see
    :attr:`Telemetry.whole_spans`), nothing done.

    The span's flags are what the SDK's ``start_span`` gives a sampled span: sampled, and
    ``random-trace-id`` as the parent's (or, for a root, as the id generator says); or
    ``context``, when :func:`new_ids` gave it."""
    sdk = _sdk_tracer(telemetry)
    if sdk is None:
        return False
    from opentelemetry.sdk.trace import ReadableSpan

    if context is None:
        if parent is None:
            random = sdk.id_generator.is_trace_id_random()
        else:
            random = parent.trace_flags.random_trace_id
        context = SpanContext(trace_id, span_id, False, _SAMPLED_RANDOM if random else _SAMPLED)
    span = ReadableSpan(
        name=name,
        context=context,
        parent=parent,
        resource=sdk.resource,
        attributes=attributes,
        links=[link for link in links if link.context.is_valid],  # as the SDK keeps them
        kind=kind,
        instrumentation_info=sdk.instrumentation_info,
        status=status,
        start_time=start_ns,
        end_time=end_ns,
        instrumentation_scope=_scope(sdk.instrumentation_info),
    )
    sdk.span_processor.on_end(span)
    return True


class NewIds(NamedTuple):
    """A span's ids and sampling decision, taken as ``start_span`` takes them."""

    context: SpanContext
    parent: SpanContext | None
    sampled: bool
    attributes: Mapping[str, Any]
    """What the sampler adds to the span's attributes (first)."""


def new_ids(
    telemetry: Telemetry,
    name: str,
    parent_context: Context | None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> NewIds | None:
    """The ids a span started now under ``parent_context`` would get, without starting it;
    None: not for this telemetry (or a decision to record without sampling): start a span."""
    sdk = _sdk_tracer(telemetry)
    if sdk is None:
        return None
    parent: SpanContext | None = get_current_span(parent_context).get_span_context()
    if parent is None or not parent.is_valid:
        parent = None
        trace_id = sdk.id_generator.generate_trace_id()
        random = sdk.id_generator.is_trace_id_random()
    else:
        trace_id, random = parent.trace_id, parent.trace_flags.random_trace_id
    result = sdk.sampler.should_sample(parent_context, trace_id, name, kind, None, ())
    if result.decision.is_recording() != result.decision.is_sampled():
        return None  # recorded but not exported: a live span does that
    flags = TraceFlags.SAMPLED if result.decision.is_sampled() else TraceFlags.DEFAULT
    if random:
        flags |= TraceFlags.RANDOM_TRACE_ID
    span_id = sdk.id_generator.generate_span_id()
    context = SpanContext(trace_id, span_id, False, TraceFlags(flags), result.trace_state)
    return NewIds(context, parent, result.decision.is_sampled(), result.attributes or {})


def new_root_ids(telemetry: Telemetry, name: str) -> SpanContext | None:
    """A new root span's ids and sampling decision, as ``start_span`` would take them,
    without a span (the root is written when the saga ends); None: start a span."""
    ids = new_ids(telemetry, name, Context())
    return ids.context if ids is not None else None
