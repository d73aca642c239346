"""W3C trace context in NATS headers, through a typed getter and setter."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter, TextMapPropagator


class _HeaderGetter(Getter[Mapping[str, str]]):
    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:  # NATS headers keep the case they were sent with
            value = next((v for k, v in carrier.items() if k.lower() == key), None)
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier.keys())


class _HeaderSetter(Setter[MutableMapping[str, str]]):
    def set(self, carrier: MutableMapping[str, str], key: str, value: str) -> None:
        carrier[key] = value


GETTER = _HeaderGetter()
SETTER = _HeaderSetter()


def inject(headers: MutableMapping[str, str], context: Context | None = None) -> None:
    """Write the (current or given) context into ``headers``."""
    propagate.inject(headers, context=context, setter=SETTER)


_EXTRACTED: dict[tuple[object, ...], Context] = {}
_EXTRACTED_MAX = 512
"""Enough for the messages in flight: hits come from one transition extracting the same
headers several times, and from the messages of one saga attempt (the same trace headers)."""

_FIELDS: dict[int, tuple[TextMapPropagator, frozenset[str] | None]] = {}


def _fields(textmap: TextMapPropagator) -> frozenset[str] | None:
    """The (lower-case) header names ``textmap`` reads, when it is made of the W3C trace
    context and baggage propagators (the default), which read no others; else None."""
    known = _FIELDS.get(id(textmap))
    if known is None or known[0] is not textmap:
        from opentelemetry.baggage.propagation import W3CBaggagePropagator
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        parts = getattr(textmap, "_propagators", [textmap])
        standard = (TraceContextTextMapPropagator, W3CBaggagePropagator)
        names = None
        if all(type(part) in standard for part in parts):
            names = frozenset(field.lower() for field in textmap.fields)
        known = _FIELDS[id(textmap)] = (textmap, names)
    return known[1]


def _carrier(headers: Mapping[str, str], fields: frozenset[str]) -> dict[str, str]:
    """The headers the propagators read, under lower-case names (NATS headers keep the
    case they were sent with): every other header (ids, saga headers) left out."""
    found = {}
    for key, value in headers.items():
        if key in fields:
            found[key] = value
        else:
            lower = key.lower()
            if lower in fields:
                found[lower] = value
    return found


def extract(headers: Mapping[str, str] | None) -> Context:
    """The context carried by ``headers`` alone (empty when they carry none).

    Remembered by the trace headers' content: the engine extracts the same message headers
    and the same saga trace several times per transition (parent, link, step spans). That
    is sound because the result depends on nothing else (an empty base context, not the
    current one) and a context is immutable.
    """
    if not headers:
        return Context()
    textmap = propagate.get_global_textmap()
    fields = _fields(textmap)
    carrier = _carrier(headers, fields) if fields is not None else headers
    key = (id(textmap), *carrier.items())
    found = _EXTRACTED.get(key)
    if found is None:
        found = textmap.extract(carrier, context=Context(), getter=GETTER)
        if len(_EXTRACTED) >= _EXTRACTED_MAX:
            del _EXTRACTED[next(iter(_EXTRACTED))]
        _EXTRACTED[key] = found
    return found


def has_span(context: Context) -> bool:
    return trace.get_current_span(context).get_span_context().is_valid


def trace_id_of(headers: Mapping[str, str] | None) -> str | None:
    """The 32-hex trace id in a ``traceparent`` header, for people and logs."""
    span = trace.get_current_span(extract(headers)).get_span_context()
    return format(span.trace_id, "032x") if span.is_valid else None
