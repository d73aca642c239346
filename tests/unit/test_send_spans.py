"""A participant's ``send`` span, written whole after the publish: what a live span gives."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from saga.telemetry import Telemetry
from saga.telemetry.propagation import extract
from saga.telemetry.spans import consuming, sending
from tests.unit.test_saga_spans import OtherTracer

COMMAND = {
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "Saga-Id": "o-1",
    "Nats-Msg-Id": "o-1:reserve:1",
}


def fields(span: ReadableSpan) -> dict[str, Any]:
    """What is exported of a span, but its own random id."""
    assert span.parent is not None
    return {
        "name": span.name,
        "trace": span.context.trace_id,
        "flags": int(span.context.trace_flags),
        "state": span.context.trace_state.to_header(),
        "parent remote": span.parent.is_remote,
        "kind": span.kind,
        "attributes": list((span.attributes or {}).items()),
        "status": (span.status.status_code, span.status.description),
        "events": [(e.name, sorted((e.attributes or {}).keys())) for e in span.events],
        "links": list(span.links),
        "resource": span.resource,
        "scope": span.instrumentation_scope,
        "ends": span.end_time is not None and span.start_time is not None,
    }


def send_once(telemetry: Telemetry, fail: bool) -> dict[str, str]:
    reply: dict[str, str] = {"Saga-Id": "o-1"}
    with consuming(telemetry, "bench.reserve", COMMAND, saga_id="o-1"):
        try:
            with sending(telemetry, "bench.reserved", reply, saga_id="o-1", message_id="r-1"):
                if fail:
                    raise ConnectionError("no ack")
        except ConnectionError:
            pass
    return reply


@pytest.mark.parametrize("fail", [False, True])
def test_a_send_span_written_whole_is_the_live_one(fail: bool) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    fast = Telemetry.for_providers(provider, whole_spans=True)
    usual = Telemetry(OtherTracer(fast.tracer), None, True)
    written = []
    for telemetry in (fast, usual):
        reply = send_once(telemetry, fail)
        send, process = sorted(exporter.get_finished_spans(), key=lambda s: s.kind.value)
        assert send.name == "send bench.reserved"
        assert send.parent is not None
        assert send.parent.span_id == process.context.span_id
        injected = trace.get_current_span(extract(reply)).get_span_context()
        assert injected.span_id == send.context.span_id  # the reply names its send span
        written.append(fields(send))
        exporter.clear()
    provider.shutdown()
    assert written[0] == written[1]
    assert (written[0]["status"][0].name == "ERROR") is fail


def test_a_send_not_sampled_writes_nothing_and_still_carries_its_context() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = Telemetry.for_providers(provider, whole_spans=True)
    reply: dict[str, str] = {}
    with sending(telemetry, "bench.reserved", reply, saga_id="o-1", message_id="r-1"):
        pass
    provider.shutdown()
    assert exporter.get_finished_spans() == ()
    assert int(reply["traceparent"][-2:], 16) & 1 == 0  # not sampled
