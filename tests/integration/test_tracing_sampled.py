"""With a parent-based sampler, tracing keeps or drops whole sagas, engine and participant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

from saga.client import find_record, instance_store
from saga.definition import parse_definition
from saga.engine import Engine, EngineSettings
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology
from saga.participant import App, Context
from saga.store import InstanceRecord
from saga.telemetry import Telemetry
from tests.support import wait_for

TRIP = """
name: trip
trigger: {event: trip.requested, id: {field: id}}
steps:
  - name: flight
    publish: {event: flight.book, data: {id: trigger.id}}
    success: flight.booked
    timeout: 30s
  - name: hotel
    publish: {event: hotel.book, data: {id: trigger.id}}
    success: hotel.booked
    timeout: 30s
"""
SAMPLED_PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def participant() -> App:
    app = App("travel")

    @app.step("flight.book", success="flight.booked")
    async def flight(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        return {}

    @app.step("hotel.book", success="hotel.booked")
    async def hotel(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        return {}

    return app


@pytest.fixture
async def sampled(
    nats_server: EmbeddedServer,
) -> AsyncIterator[tuple[Client, InMemorySpanExporter]]:
    """Root spans are never sampled on their own; a sampled parent keeps the saga."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(root=ALWAYS_OFF))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = Telemetry.for_providers(provider)
    nc = await nats.connect(nats_server.url)
    engine = Engine(
        nc, {"trip": parse_definition(TRIP)}, EngineSettings(fetch_wait=0.2), telemetry=telemetry
    )
    await engine.start()
    app = participant()
    app.telemetry = telemetry
    async with app.running(nc):
        yield nc, exporter
    await engine.stop()
    await nc.close()


def sampled_flag(record: InstanceRecord) -> bool:
    flags = record.trace["traceparent"].rsplit("-", 1)[1]
    return bool(int(flags, 16) & 1)


async def run(nc: Client, saga_id: str, headers: dict[str, str] | None = None) -> InstanceRecord:
    await nc.jetstream().publish(
        "trip.requested", f'{{"id": "{saga_id}"}}'.encode(), headers=headers
    )
    store = await instance_store(nc.jetstream(), Topology())
    found: list[InstanceRecord] = []

    async def ended() -> bool:
        record = await find_record(store, saga_id, "trip")
        if record is not None and record.state.status.terminal:
            found.append(record)
            return True
        return False

    await wait_for(ended, message=f"saga {saga_id} to end")
    return found[-1]


async def test_a_saga_sampled_out_exports_nothing_and_still_completes(
    sampled: tuple[Client, InMemorySpanExporter],
) -> None:
    nc, exporter = sampled
    record = await run(nc, "s-1")
    assert record.state.status.value == "completed"
    assert not sampled_flag(record)  # the decision, kept with the instance
    assert exporter.get_finished_spans() == ()


async def test_a_sampled_saga_is_traced_whole(
    sampled: tuple[Client, InMemorySpanExporter],
) -> None:
    nc, exporter = sampled
    record = await run(nc, "s-2", {"traceparent": SAMPLED_PARENT})
    assert sampled_flag(record)

    def names() -> set[str]:
        return {s.name for s in exporter.get_finished_spans()}

    wanted = {
        "saga trip",
        "saga.step flight",
        "process flight.book",
        "send flight.booked",
        "saga.step hotel",
        "process hotel.book",
        "send hotel.booked",
    }
    await wait_for(lambda: wanted <= names(), message="every span of the sampled saga")
    spans = exporter.get_finished_spans()
    # the saga is a trace of its own (the caller's sampling decision), linked to the caller
    root = next(s for s in spans if s.name == "saga trip")
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    assert [link.context.trace_id for link in root.links] == [int(SAMPLED_PARENT.split("-")[1], 16)]
    step = next(s for s in spans if s.name == "saga.step flight")
    assert step.attributes is not None
    assert step.attributes["saga.step.outcome"] == "succeeded"
    process = next(s for s in spans if s.name == "process flight.book")
    assert process.attributes is not None
    assert process.attributes["messaging.message.conversation_id"] == "s-2"
