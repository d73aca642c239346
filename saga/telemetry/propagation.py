"""W3C trace context in NATS headers, through a typed getter and setter."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter


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


def extract(headers: Mapping[str, str] | None) -> Context:
    """The context carried by ``headers`` (empty when they carry none)."""
    return propagate.extract(headers or {}, getter=GETTER)


def has_span(context: Context) -> bool:
    return trace.get_current_span(context).get_span_context().is_valid


def trace_id_of(headers: Mapping[str, str] | None) -> str | None:
    """The 32-hex trace id in a ``traceparent`` header, for people and logs."""
    span = trace.get_current_span(extract(headers)).get_span_context()
    return format(span.trace_id, "032x") if span.is_valid else None
