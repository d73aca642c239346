"""Saga spans derived from the instance record: tree, outcome, ids that survive a re-emission."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import StatusCode

from saga.core import (
    CompensationSucceeded,
    InstanceState,
    OperatorResume,
    StepFailed,
    Timer,
    TimerFired,
    TimerKind,
)
from saga.core.events import Event
from saga.definition import load_definitions
from saga.protocol import HEADER_PARENT_ID
from saga.telemetry import Telemetry
from saga.telemetry.saga_spans import (
    STEP,
    TRIGGER_KEY,
    attempt_context,
    emit_closed,
    message_role,
    new_saga_trace,
)
from tests.unit.test_decide import (
    DEFINITIONS,
    Run,
    compensated,
    completed,
    order_in_flight,
    order_parked,
)

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def order() -> Run:
    return Run(load_definitions([DEFINITIONS])["order-fulfilment"])


@pytest.fixture
def traced() -> Iterator[tuple[Telemetry, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Telemetry.for_providers(provider), exporter
    provider.shutdown()


class Traced:
    """A run whose every transition writes the spans it closes, as the engine does."""

    def __init__(self, run: Run, telemetry: Telemetry) -> None:
        self.run = run
        self.telemetry = telemetry
        self.trace = new_saga_trace(telemetry, run.definition.name, {"traceparent": CALLER})
        self.done = 0

    def flush(self) -> None:
        state = self.state
        emit_closed(self.telemetry, state, self.trace, self.done, len(state.history))
        self.done = len(state.history)

    @property
    def state(self) -> InstanceState:
        assert self.run.state is not None
        return self.run.state

    def send(self, event: Event) -> None:
        self.run.send(event)
        self.flush()


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def span_of(context: object) -> trace.SpanContext:
    return trace.get_current_span(context).get_span_context()  # type: ignore[arg-type]


def identities(spans: tuple[ReadableSpan, ...]) -> set[tuple[str, int, int]]:
    return {(s.name, s.context.span_id, s.parent.span_id if s.parent else 0) for s in spans}


def test_a_compensated_saga_has_a_root_with_the_outcome_and_attempts_as_children(
    order: Run, traced: tuple[Telemetry, InMemorySpanExporter]
) -> None:
    telemetry, exporter = traced
    t = Traced(order, telemetry)
    compensated(order)
    t.flush()
    spans = exporter.get_finished_spans()
    root = by_name(spans, "saga order-fulfilment")[0]
    assert root.parent is None
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes is not None
    assert root.attributes["saga.outcome"] == "compensated"
    assert root.attributes["saga.failure.step"] == "charge_payment"
    assert root.attributes["saga.failure.reason"] == "declined"
    assert root.attributes["saga.steps.failed"] == 1
    assert root.attributes["saga.steps.compensated"] == 1
    assert [link.context.trace_id for link in root.links] == [int(CALLER.split("-")[1], 16)]
    assert root.start_time == int(t.state.started_at.timestamp() * 1e9)
    names = sorted(s.name for s in spans if s is not root)
    assert names == [
        "saga.compensate reserve_inventory",
        "saga.step charge_payment",
        "saga.step reserve_inventory",
    ]
    for span in spans:
        if span is not root:
            assert span.parent is not None
            assert span.parent.span_id == root.context.span_id
            assert span.context.trace_id == root.context.trace_id
    failed = by_name(spans, "saga.step charge_payment")[0]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "declined"


def test_the_command_names_the_span_its_attempt_is_later_written_with(
    order: Run, traced: tuple[Telemetry, InMemorySpanExporter]
) -> None:
    telemetry, exporter = traced
    t = Traced(order, telemetry)
    order_in_flight(order, "charge_payment")
    t.flush()
    named = attempt_context(t.trace, t.state, STEP, "charge_payment", 1)
    promised = trace.get_current_span(named).get_span_context().span_id
    order.ok("charge_payment")
    t.flush()
    written = by_name(exporter.get_finished_spans(), "saga.step charge_payment")[0]
    assert written.context.span_id == promised


def test_spans_written_again_from_the_record_have_the_same_ids(
    order: Run, traced: tuple[Telemetry, InMemorySpanExporter]
) -> None:
    telemetry, exporter = traced
    t = Traced(order, telemetry)
    completed(order)
    t.flush()
    first = identities(exporter.get_finished_spans())
    exporter.clear()
    emit_closed(telemetry, t.state, t.trace, 0, len(t.state.history))  # after a crash
    again = identities(exporter.get_finished_spans())
    assert again == first
    assert len(first) == 4  # the root and three steps


def test_a_parked_saga_ends_its_root_as_parked_and_again_when_resumed(
    order: Run, traced: tuple[Telemetry, InMemorySpanExporter]
) -> None:
    telemetry, exporter = traced
    t = Traced(order, telemetry)
    order_parked(order)
    t.flush()
    roots = by_name(exporter.get_finished_spans(), "saga order-fulfilment")
    assert len(roots) == 1
    assert roots[0].attributes is not None
    assert roots[0].attributes["saga.outcome"] == "parked"
    assert roots[0].status.status_code is StatusCode.ERROR
    undos = by_name(exporter.get_finished_spans(), "saga.compensate charge_payment")
    assert [s.attributes["saga.attempt"] for s in undos if s.attributes] == [1, 2, 3, 4, 5]
    assert all(
        s.attributes and s.attributes["saga.compensation.outcome"] == "timed-out" for s in undos
    )

    t.send(OperatorResume())
    t.send(CompensationSucceeded("reserve_inventory"))
    roots = by_name(exporter.get_finished_spans(), "saga order-fulfilment")
    assert len(roots) == 2
    assert roots[0].context.span_id == roots[1].context.span_id  # one span in a viewer
    assert roots[1].attributes is not None
    assert roots[1].attributes["saga.outcome"] == "compensated"
    resumed = by_name(exporter.get_finished_spans(), "saga.operator resume")[0]
    assert resumed.attributes is not None
    assert resumed.attributes["saga.operator.action"] == "resume"
    assert resumed.attributes["saga.step"] == "charge_payment"
    assert resumed.parent is not None
    assert resumed.parent.span_id == roots[0].context.span_id


def test_a_timer_is_processed_under_its_attempt_with_a_bounded_name(
    order: Run, traced: tuple[Telemetry, InMemorySpanExporter]
) -> None:
    telemetry, _ = traced
    t = Traced(order, telemetry)
    order_in_flight(order, "charge_payment")
    event = TimerFired(Timer(TimerKind.STEP_TIMEOUT, "charge_payment", 1))
    role = message_role(t.trace, t.state, event, "saga.timer.fire.order-fulfilment.o-1.x")
    assert role.name == "process saga.timer"
    assert role.attributes == {
        "saga.timer.kind": "step-timeout",
        "saga.step": "charge_payment",
        "saga.attempt": 1,
    }
    expected = attempt_context(t.trace, t.state, STEP, "charge_payment", 1)
    assert span_of(role.parent) == span_of(expected)
    reply = message_role(t.trace, t.state, StepFailed("charge_payment", "x"), "payment.declined")
    assert reply.name == "process payment.declined"
    assert span_of(reply.parent) == span_of(expected)


def test_the_callers_sampling_decision_is_the_sagas(
    order: Run, traced: tuple[Telemetry, InMemorySpanExporter]
) -> None:
    telemetry, exporter = traced
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    dropping = Telemetry.for_providers(provider)
    unsampled = CALLER[:-2] + "00"

    def sampled(carrier: dict[str, str]) -> bool:
        return bool(int(carrier["traceparent"].rsplit("-", 1)[1], 16) & 1)

    assert sampled(new_saga_trace(dropping, "x", {"traceparent": CALLER}))
    assert not sampled(new_saga_trace(dropping, "x", {"traceparent": unsampled}))
    assert not sampled(new_saga_trace(dropping, "x", None))
    assert sampled(new_saga_trace(telemetry, "x", None))
    assert TRIGGER_KEY not in new_saga_trace(telemetry, "x", None)
    assert new_saga_trace(Telemetry.disabled(), "x", {"traceparent": CALLER}) == {}


def test_a_slot_fire_is_processed_as_the_earliest_timer_it_wakes(
    order: Run, traced: tuple[Telemetry, InMemorySpanExporter]
) -> None:
    telemetry, _ = traced
    t = Traced(order, telemetry)
    order_in_flight(order, "charge_payment")
    due = t.state.started_at
    state = t.state.model_copy(
        update={
            "timers": {
                "deadline._.1": due + timedelta(hours=1),
                "step-timeout.charge_payment.1": due,
            }
        }
    )
    role = message_role(t.trace, state, TimerFired(Timer(TimerKind.WAKE)), "saga.timer.fire.x")
    assert role.attributes == {
        "saga.timer.kind": "step-timeout",
        "saga.step": "charge_payment",
        "saga.attempt": 1,
    }


def test_a_child_sagas_root_is_a_child_of_its_parents_step_attempt(
    order: Run, traced: tuple[Telemetry, InMemorySpanExporter]
) -> None:
    """The child's trigger carries the parent's attempt context (``Saga-Parent-Id`` marks
    it as a child): the child's whole trace hangs under that attempt, in the parent's trace."""
    telemetry, exporter = traced
    t = Traced(order, telemetry)
    t.trace = new_saga_trace(
        telemetry, "order-fulfilment", {"traceparent": CALLER, HEADER_PARENT_ID: "p-1"}
    )
    assert TRIGGER_KEY not in t.trace
    compensated(order)
    t.flush()
    spans = exporter.get_finished_spans()
    root = by_name(spans, "saga order-fulfilment")[0]
    caller_trace, caller_span = (int(x, 16) for x in CALLER.split("-")[1:3])
    assert root.parent is not None
    assert (root.parent.trace_id, root.parent.span_id) == (caller_trace, caller_span)
    assert root.links == ()
    assert {s.context.trace_id for s in spans} == {caller_trace}


class OtherTracer(trace.Tracer):
    """Not the SDK's tracer (as a vendor's or a wrapper would be): spans are started and
    ended the usual way, so the spans written whole can be compared with them."""

    def __init__(self, inner: trace.Tracer) -> None:
        self.inner = inner

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self.inner.start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.start_as_current_span(*args, **kwargs)


def exported(span: ReadableSpan) -> dict[str, Any]:
    """Everything of a span an exporter sends (the OTLP encoder's fields)."""
    return {
        "name": span.name,
        "context": (span.context.trace_id, span.context.span_id, int(span.context.trace_flags)),
        "remote": span.context.is_remote,
        "state": span.context.trace_state.to_header(),
        "parent": span.parent and (span.parent.span_id, span.parent.is_remote),
        "parent_flags": span.parent and int(span.parent.trace_flags),
        "kind": span.kind,
        "times": (span.start_time, span.end_time),
        "attributes": list((span.attributes or {}).items()),
        "dropped": (span.dropped_attributes, span.dropped_links, span.dropped_events),
        "status": (span.status.status_code, span.status.description),
        "links": [(link.context.span_id, dict(link.attributes or {})) for link in span.links],
        "events": list(span.events),
        "resource": span.resource,
        "scope": span.instrumentation_scope,
    }


@pytest.mark.parametrize("trigger", ["caller", "parent"])
def test_spans_written_whole_are_the_spans_the_sdk_would_end(trigger: str) -> None:
    """The engine hands its record-derived spans to the SDK's processors whole (cheaper);
    what is exported is what starting and ending each span would have exported."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    fast = Telemetry.for_providers(provider, whole_spans=True)
    usual = Telemetry(OtherTracer(fast.tracer), None, True)
    headers = {"traceparent": CALLER}
    if trigger == "parent":
        headers[HEADER_PARENT_ID] = "parent-1"
    saga_trace = new_saga_trace(fast, "order-fulfilment", headers)
    written = []
    for telemetry in (fast, usual):
        run = Run(load_definitions([DEFINITIONS])["order-fulfilment"])  # same clock, same ids
        t = Traced(run, telemetry)
        t.trace = saga_trace
        compensated(run)
        t.flush()
        written.append([exported(s) for s in exporter.get_finished_spans()])
        exporter.clear()
    provider.shutdown()
    assert len(written[0]) == 4  # the root, two step attempts and an undo
    assert written[0] == written[1]


def test_a_processor_that_acts_on_start_sees_every_saga_span_start() -> None:
    """Spans are written whole only when the telemetry says its processors act when a span
    ends alone (``whole_spans``, set by ``telemetry_from_env``); not for a caller's own."""
    from opentelemetry.sdk.trace import SpanProcessor

    started: list[str] = []

    class OnStart(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            started.append(span.name)

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(OnStart())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = Telemetry.for_providers(provider)
    run = Run(load_definitions([DEFINITIONS])["order-fulfilment"])
    t = Traced(run, telemetry)
    completed(run)
    t.flush()
    provider.shutdown()
    written = [s.name for s in exporter.get_finished_spans()]
    assert len(written) == 4
    assert sorted(started) == sorted([*written, "saga order-fulfilment"])  # and the root's ids
