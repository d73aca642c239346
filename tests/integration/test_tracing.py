"""The span tree of a saga, across the engine and a participant, with an in-memory exporter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from saga.client import find_instance, instance_store
from saga.definition import parse_definition
from saga.engine import Engine, EngineSettings
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology, instance_key
from saga.participant import App, Context, Reject
from saga.protocol import HEADER_KIND, HEADER_SAGA_ID, HEADER_SAGA_NAME, HEADER_STEP, KIND_STEP
from saga.telemetry import Telemetry
from saga.telemetry.recovery import SpanMarks
from tests.support import wait_for

TRIP = """
name: trip
trigger: {event: trip.requested, id: {field: id}}
steps:
  - name: flight
    publish: {event: flight.book, data: {id: trigger.id}}
    success: flight.booked
    compensate: {publish: {event: flight.cancel, data: {id: trigger.id}}, success: flight.cancelled}
  - name: hotel
    publish: {event: hotel.book, data: {id: trigger.id, nights: trigger.nights}}
    success: hotel.booked
    failure: hotel.full
"""


def participant() -> App:
    app = App("travel")

    @app.step("flight.book", success="flight.booked")
    async def flight(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        return {"ref": "F1"}

    @app.compensation("flight.cancel", success="flight.cancelled")
    async def cancel(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        return {}

    @app.step("hotel.book", success="hotel.booked", failure="hotel.full")
    async def hotel(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        if payload["nights"] > 14:
            raise Reject("hotel-full")
        return {"ref": "H1"}

    return app


def exported(exporter: InMemorySpanExporter, service: str) -> TracerProvider:
    """A provider of one process (``service.name``), exporting at once to ``exporter``."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


READER = InMemoryMetricReader()
METER_PROVIDER = MeterProvider(metric_readers=[READER])


@pytest.fixture
async def traced(nats_server: EmbeddedServer) -> AsyncIterator[tuple[Client, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    telemetry, participant_telemetry = (
        Telemetry.for_providers(exported(exporter, service), METER_PROVIDER)
        for service in ("engine", "travel")
    )
    nc = await nats.connect(nats_server.url)
    engine = Engine(
        nc, {"trip": parse_definition(TRIP)}, EngineSettings(fetch_wait=0.2), telemetry=telemetry
    )
    await engine.start()
    app = participant()
    app.telemetry = participant_telemetry
    async with app.running(nc):
        yield nc, exporter
    await engine.stop()
    await nc.close()


async def run(
    nc: Client, exporter: InMemorySpanExporter, saga_id: str, nights: int
) -> list[ReadableSpan]:
    await nc.jetstream().publish(
        "trip.requested", f'{{"id": "{saga_id}", "nights": {nights}}}'.encode()
    )
    store = await instance_store(nc.jetstream(), Topology())

    async def ended() -> bool:
        state = await find_instance(store, saga_id, "trip")
        return state is not None and state.status.terminal

    await wait_for(ended, message=f"saga {saga_id} to end")
    last = "send flight.cancelled" if nights > 14 else "send hotel.booked"

    def of_saga() -> list[ReadableSpan]:
        return [s for s in exporter.get_finished_spans() if saga_of(s) == saga_id]

    # The root is written with the terminal state; the last reply's send may end after it.
    await wait_for(
        lambda: {"saga trip", last} <= {s.name for s in of_saga()},
        message=f"the root and {last!r}",
    )
    root = next(s for s in of_saga() if s.name == "saga trip")
    trace_id = root.context.trace_id
    return [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]


def saga_of(span: ReadableSpan) -> object:
    """The saga a span names: ``saga.id``, or the conversation id of a message span."""
    attributes = span.attributes or {}
    return attributes.get("saga.id", attributes.get("messaging.message.conversation_id"))


def by_name(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def parent_name(spans: list[ReadableSpan], span: ReadableSpan) -> str | None:
    if span.parent is None:
        return None
    return next(s.name for s in spans if s.context.span_id == span.parent.span_id)


def depth(spans: list[ReadableSpan], span: ReadableSpan) -> int:
    by_id = {s.context.span_id: s for s in spans}
    level = 1
    while span.parent is not None:
        span = by_id[span.parent.span_id]  # a KeyError is an orphan
        level += 1
    return level


async def test_completed_saga_is_one_trace_with_the_expected_tree(
    traced: tuple[Client, InMemorySpanExporter],
) -> None:
    nc, exporter = traced
    spans = await run(nc, exporter, "t-1", nights=3)
    names = sorted(s.name for s in spans)
    assert names.count("saga trip") == 1
    root = by_name(spans, "saga trip")[0]
    assert root.parent is None
    assert root.attributes is not None
    assert dict(root.attributes) == {
        "saga.id": "t-1",
        "saga.name": "trip",
        "saga.version": 1,
        "saga.outcome": "completed",
        "saga.steps.total": 2,
        "saga.steps.failed": 0,
        "saga.steps.compensated": 0,
    }
    assert root.status.status_code is StatusCode.UNSET
    assert root.end_time is not None
    # the root covers the whole saga: it ends after every step
    assert all(root.end_time >= (s.end_time or 0) for s in by_name(spans, "saga.step hotel"))

    # the engine writes only the spans derived from the record: no message span of its own
    engine = {s.name for s in spans if s.resource.attributes.get("service.name") == "engine"}
    assert engine == {"saga trip", "saga.step flight", "saga.step hotel"}

    # the step attempt is the parent of the participant's work (the command carries it)
    step = by_name(spans, "saga.step flight")[0]
    assert parent_name(spans, step) == "saga trip"
    assert step.attributes is not None
    assert step.attributes["saga.attempt"] == 1
    processes = by_name(spans, "process flight.book")
    assert len(processes) == 1
    assert processes[0].kind is SpanKind.CONSUMER
    assert parent_name(spans, processes[0]) == "saga.step flight"
    assert processes[0].attributes is not None
    assert processes[0].attributes["messaging.system"] == "nats"
    assert processes[0].attributes["saga.id"] == "t-1"
    assert processes[0].attributes["saga.step"] == "flight"
    assert processes[0].attributes["saga.attempt"] == 1
    assert processes[0].attributes["saga.delivery"] == 1
    assert processes[0].attributes["messaging.message.id"] == "trip:t-1:flight:step:1"
    reply = by_name(spans, "send flight.booked")[0]
    assert reply.kind is SpanKind.PRODUCER
    assert parent_name(spans, reply) == "process flight.book"

    for name in ("flight", "hotel"):
        span = by_name(spans, f"saga.step {name}")[0]
        assert span.attributes is not None
        assert span.attributes["saga.step.outcome"] == "succeeded"
        assert span.status.status_code is StatusCode.UNSET
    assert not by_name(spans, "saga.compensate flight")
    assert max(depth(spans, s) for s in spans) <= 4


async def test_compensated_saga_keeps_compensations_in_the_same_trace(
    traced: tuple[Client, InMemorySpanExporter],
) -> None:
    nc, exporter = traced
    spans = await run(nc, exporter, "t-2", nights=21)
    root = by_name(spans, "saga trip")[0]
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes is not None
    assert root.attributes["saga.outcome"] == "compensated"
    assert root.attributes["saga.failure.step"] == "hotel"
    assert root.attributes["saga.failure.reason"] == "hotel-full"
    assert root.attributes["saga.steps.failed"] == 1
    assert root.attributes["saga.steps.compensated"] == 1
    hotel = by_name(spans, "saga.step hotel")[0]
    assert hotel.status.status_code is StatusCode.ERROR
    assert hotel.attributes is not None
    assert hotel.attributes["error.type"] == "hotel-full"
    assert hotel.attributes["saga.step.outcome"] == "failed"
    # the participant marks the business failure on its own span, with the reason
    refused = by_name(spans, "process hotel.book")[0]
    assert refused.status.status_code is StatusCode.ERROR
    assert refused.attributes is not None
    assert refused.attributes["saga.failure.reason"] == "hotel-full"

    undo = by_name(spans, "saga.compensate flight")[0]
    assert parent_name(spans, undo) == "saga trip"
    assert undo.attributes is not None
    assert undo.attributes["saga.compensation.outcome"] == "done"
    assert parent_name(spans, by_name(spans, "process flight.cancel")[0]) == (
        "saga.compensate flight"
    )
    assert max(depth(spans, s) for s in spans) <= 4


def counts() -> dict[str, float]:
    """Cumulative counter values by metric name (summed over attributes)."""
    data = READER.get_metrics_data()
    found: dict[str, float] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points = list(metric.data.data_points)
                if points and hasattr(points[0], "value"):
                    found[metric.name] = sum(p.value for p in points)  # type: ignore[attr-defined]
                elif points:
                    found[metric.name] = sum(p.count for p in points)  # type: ignore[attr-defined]
    return found


async def test_metrics_count_outcomes_and_durations(
    traced: tuple[Client, InMemorySpanExporter],
) -> None:
    nc, exporter = traced
    before = counts()
    await run(nc, exporter, "m-1", nights=3)
    await run(nc, exporter, "m-2", nights=30)
    after = counts()

    def delta(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    assert delta("saga.started") == 2
    assert delta("saga.completed") == 1
    assert delta("saga.compensated") == 1
    assert delta("saga.duration") == 2  # histogram points recorded
    assert delta("saga.step.duration") == 4  # flight, hotel; flight, hotel (failed)


async def test_a_repeated_trigger_adds_no_trace(
    traced: tuple[Client, InMemorySpanExporter],
) -> None:
    """The engine creates a new instance without reading first; the second trigger of an
    existing one loses that create, and writes no second root."""
    nc, exporter = traced
    await run(nc, exporter, "t-twice", nights=3)
    js = nc.jetstream()
    again = await js.publish("trip.requested", b'{"id": "t-twice", "nights": 3}')

    async def handled() -> bool:
        info = await js.consumer_info(again.stream, Topology().engine_consumer)
        return info.ack_floor.stream_seq >= again.seq

    await wait_for(handled, message="the repeated trigger to be handled")
    roots = [
        s
        for s in exporter.get_finished_spans()
        if s.name == "saga trip" and s.attributes and s.attributes.get("saga.id") == "t-twice"
    ]
    assert len(roots) == 1


async def test_a_reply_that_changes_nothing_is_labelled_under_its_attempt(
    traced: tuple[Client, InMemorySpanExporter],
) -> None:
    nc, exporter = traced
    spans = await run(nc, exporter, "t-late", nights=3)
    step = by_name(spans, "saga.step flight")[0]
    headers = {
        HEADER_SAGA_ID: "t-late",
        HEADER_SAGA_NAME: "trip",
        HEADER_STEP: "flight",
        HEADER_KIND: KIND_STEP,
    }
    await nc.jetstream().publish("flight.booked", b'{"ref": "F1"}', headers=headers)

    def ignored() -> list[ReadableSpan]:
        return [
            s
            for s in exporter.get_finished_spans()
            if s.name == "process flight.booked"
            and s.attributes
            and "saga.message.ignored" in s.attributes
            and saga_of(s) == "t-late"
        ]

    await wait_for(lambda: bool(ignored()), message="the ignored reply's span")
    span = ignored()[0]
    assert span.attributes is not None
    assert span.attributes["saga.message.ignored"] == "instance is completed"
    assert span.attributes["saga.reply.late"] is True
    assert span.parent is not None
    assert span.parent.span_id == step.context.span_id


async def test_an_ended_saga_is_marked_exported_and_a_starting_engine_rewrites_unmarked_ones(
    traced: tuple[Client, InMemorySpanExporter],
) -> None:
    nc, exporter = traced
    spans = await run(nc, exporter, "t-marked", nights=21)
    engine_spans = {(s.name, s.context.span_id) for s in spans if s.name.startswith("saga")}
    js = nc.jetstream()
    store = await instance_store(js, Topology())
    key = instance_key("trip", "t-marked")

    async def marked() -> bool:
        stored = await store.load(key)
        assert stored is not None
        return stored.record.traced == len(stored.record.state.history)

    await wait_for(marked, message="the exported-up-to mark")
    provider = TracerProvider()
    again = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(again))
    starting = SpanMarks(Telemetry.for_providers(provider))
    assert await starting.scan(js, Topology().instances_bucket) == 0  # marked: nothing to do

    stored = await store.load(key)
    assert stored is not None
    unmarked = stored.record.model_copy(update={"traced": 0})  # as if killed before export
    await store.update(key, unmarked, stored.revision)
    starting = SpanMarks(Telemetry.for_providers(provider))
    assert await starting.scan(js, Topology().instances_bucket) == 1
    rewritten = {(s.name, s.context.span_id) for s in again.get_finished_spans()}
    assert rewritten == engine_spans


async def test_a_dead_lettered_timer_has_a_bounded_span_name(
    traced: tuple[Client, InMemorySpanExporter],
) -> None:
    nc, exporter = traced
    headers = {"Saga-Name": "nope", "Saga-Id": "x", "Saga-Timer": "deadline._.1"}
    await nc.jetstream().publish("saga.timer.fire.nope.x.deadline._.1", b"", headers=headers)

    def rejected() -> list[ReadableSpan]:
        return [
            s
            for s in exporter.get_finished_spans()
            if s.attributes and s.attributes.get("error.type") == "unknown-event"
        ]

    await wait_for(lambda: bool(rejected()), message="the dead-lettered timer's span")
    assert [s.name for s in rejected()] == ["process saga.timer"]
