"""``limits``: parsing of a saga's rate and running limits, and which subjects they gate.

Bad values are refused with their place by ``tests/unit/broken/limits-*.yaml``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.resources import Resource

from saga.core.commands import CancelTimer, PublishEvent, ReleaseSlot, ScheduleTimer
from saga.core.decide import decide
from saga.core.events import (
    CommandAdmitted,
    OperatorAbort,
    OperatorRetry,
    SagaTriggered,
    StepFailed,
    StepStarted,
    StepSucceeded,
    Timer,
    TimerFired,
    TimerKind,
)
from saga.core.state import InstanceState, Status, StepStatus
from saga.definition import parse_definition
from saga.definition.catalog import Catalog
from saga.definition.limits import rate_per_second
from saga.engine.admission import Admission, GateCount, gated_subjects, gates_of, holds_slot
from saga.engine.settings import EngineSettings
from saga.nats.delivery import delivery_in
from saga.protocol import HEADER_KIND, HEADER_TARGET
from saga.telemetry.setup import new_meter_provider

LIMITED = """\
name: capped
trigger: {event: orders.placed}
limits: {max_running: 500, start_rate: 100/s}
steps:
  - name: reserve
    publish: {event: inventory.reserve}
    success: inventory.reserved
"""
FREE = (
    LIMITED.replace("name: capped", "name: free")
    .replace("limits: {max_running: 500, start_rate: 100/s}\n", "")
    .replace("orders.placed", "orders.free")
    .replace("inventory.", "stock.")
)


@pytest.mark.parametrize(
    ("text", "per_second"),
    [("100/s", 100.0), ("30/m", 0.5), ("360/h", 0.1), ("2.5/s", 2.5), (" 5 / s ", 5.0)],
)
def test_a_rate_is_starts_per_second(text: str, per_second: float) -> None:
    assert rate_per_second(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["fast", "100", "100/d", "0/s", "-1/s", "1e3/s", ""])
def test_a_rate_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        rate_per_second(text)


def test_a_number_is_refused_for_want_of_a_unit() -> None:
    with pytest.raises(ValueError, match="no unit: write '100/s'"):
        rate_per_second(100)


def test_limits_parse_and_serialize_as_written() -> None:
    definition = parse_definition(LIMITED)
    assert definition.limits is not None
    assert definition.limits.max_running == 500
    assert definition.limits.starts_per_second == 100.0
    assert definition.model_dump()["limits"] == {"max_running": 500, "start_rate": "100/s"}


def test_only_a_limited_sagas_triggers_are_gated() -> None:
    catalog = Catalog.of({"capped": parse_definition(LIMITED), "free": parse_definition(FREE)})
    gates = gates_of(catalog, "saga-engine")
    assert list(gates) == ["capped"]
    gate = gates["capped"]
    assert gate.consumer == "saga-engine-limit-capped"
    assert (gate.max_running, gate.per_second) == (500, 100.0)
    assert gated_subjects(catalog, "saga-engine") == {"orders.placed", "saga.child.capped.start"}


def test_running_and_compensating_instances_hold_their_slot() -> None:
    now = datetime.now(UTC)
    state = InstanceState(
        saga_id="x", saga_name="capped", saga_version=1, started_at=now, updated_at=now
    )
    held = {s for s in Status if holds_slot(state.model_copy(update={"status": s}))}
    assert held == {Status.RUNNING, Status.COMPENSATING}


def test_a_stored_ack_subject_names_its_message() -> None:
    first = "$JS.ACK.SAGA_EVENTS.saga-engine-limit-capped.1.42.7.1796278917949091259.0"
    again = "$JS.ACK.SAGA_EVENTS.saga-engine-limit-capped.3.42.19.1796278917949999999.5"
    assert delivery_in(first) is not None
    assert delivery_in(first).sequence == delivery_in(again).sequence == 42  # type: ignore[union-attr]
    assert delivery_in("_INBOX.x") is None


def test_waiting_and_admitted_counts_are_gauges_per_saga() -> None:
    reader = InMemoryMetricReader()
    provider = new_meter_provider(Resource.create({}), [reader])
    admission = Admission(Client(), EngineSettings(), provider.get_meter("test"))
    catalog = Catalog.of({"capped": parse_definition(LIMITED)})
    admission.gates = gates_of(catalog, "saga-engine")
    admission.counts["capped"] = GateCount("capped", waiting=1500, admitted=500, max_running=500)

    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    seen = {
        (metric.name, dict(point.attributes or {})["saga.name"]): point.value
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
        if isinstance(point, NumberDataPoint)
    }
    assert seen == {("saga.waiting", "capped"): 1500, ("saga.admitted", "capped"): 500}


def test_the_console_shows_limits_and_counts_on_the_definition_page() -> None:
    from saga.console.definitions import _limits

    definition = parse_definition(LIMITED)
    count = GateCount("capped", waiting=7, admitted=500, max_running=500)
    shown = str(_limits(definition, {"capped": count}))
    assert 'Limits: <span class="mono">max_running 500, start_rate 100/s</span>' in shown
    assert "7 waiting, 500 running" in shown
    assert "waiting" not in str(_limits(definition, {}))
    assert str(_limits(parse_definition(FREE), {})) == ""
    gated = parse_definition(GATED)
    step = GateCount("gated", waiting=3, admitted=5, max_running=5, step="reserve")
    shown = str(_limits(gated, {"gated.reserve": step}))
    assert (
        'Step reserve: <span class="mono">max_in_flight 5</span> · 3 waiting, 5 in flight' in shown
    )


# -- max_in_flight in the core: the command waits for its slot, the timers start at the send --

GATED = """\
name: gated
trigger: {event: orders.placed}
steps:
  - name: reserve
    publish: {event: inventory.reserve, data: {n: trigger.n}}
    success: inventory.reserved
    failure: inventory.rejected
    timeout: 10s
    retry: {attempts: 2, backoff: 1s}
    max_in_flight: 5
"""
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SLOT = "$JS.ACK.SAGA_EVENTS.saga-engine-limit-gated-reserve.1.7.1.1.0"


def started() -> tuple[Any, InstanceState]:
    definition = parse_definition(GATED)
    decision = decide(definition, None, SagaTriggered("g1", {"n": 3}), T0)
    assert decision.state is not None
    return definition, decision.state


def test_a_gated_command_waits_for_its_slot_without_a_timer() -> None:
    definition = parse_definition(GATED)
    decision = decide(definition, None, SagaTriggered("g1", {"n": 3}), T0)
    [held] = decision.commands
    assert isinstance(held, PublishEvent)
    assert held.subject == "saga.admit.gated.reserve"
    assert held.headers[HEADER_TARGET] == "inventory.reserve"
    assert held.msg_id == "gated:g1:reserve:step:1:admit"
    assert held.data == {"n": 3}


def test_the_admitted_command_is_sent_and_its_timeout_starts_then() -> None:
    definition, state = started()
    later = T0 + timedelta(minutes=5)
    decision = decide(definition, state, CommandAdmitted("reserve", 1, SLOT, {"n": 3}), later)
    sent, timer = decision.commands
    assert isinstance(sent, PublishEvent)
    assert isinstance(timer, ScheduleTimer)
    assert (sent.subject, sent.data, sent.msg_id) == (
        "inventory.reserve",
        {"n": 3},
        "gated:g1:reserve:step:1",
    )
    assert timer.fire_at == later + timedelta(seconds=10)
    assert decision.state is not None
    assert decision.state.steps["reserve"].slot == SLOT
    again = decide(definition, decision.state, CommandAdmitted("reserve", 1, SLOT), later)
    assert not again.changed  # a redelivered admission sends nothing twice


def test_the_slot_is_given_back_when_the_attempt_ends() -> None:
    definition, state = started()
    admitted = decide(definition, state, CommandAdmitted("reserve", 1, SLOT, {}), T0).state
    assert admitted is not None
    done = decide(definition, admitted, StepSucceeded("reserve", {}, 1), T0)
    assert ReleaseSlot(SLOT) in done.commands
    assert done.state is not None
    assert done.state.steps["reserve"].slot is None
    failed = decide(definition, admitted, StepFailed("reserve", "no", {}, 1), T0)
    assert ReleaseSlot(SLOT) in failed.commands


def test_a_timeout_gives_the_slot_back_and_the_retry_waits_for_a_new_one() -> None:
    definition, state = started()
    admitted = decide(definition, state, CommandAdmitted("reserve", 1, SLOT, {}), T0).state
    timeout = TimerFired(Timer(TimerKind.STEP_TIMEOUT, "reserve", 1))
    timed_out = decide(definition, admitted, timeout, T0 + timedelta(seconds=10))
    assert ReleaseSlot(SLOT) in timed_out.commands
    retry = TimerFired(Timer(TimerKind.STEP_RETRY, "reserve", 1))
    retried = decide(definition, timed_out.state, retry, T0 + timedelta(seconds=11))
    [held] = [c for c in retried.commands if isinstance(c, PublishEvent)]
    assert held.subject == "saga.admit.gated.reserve"
    assert not any(isinstance(c, ScheduleTimer) for c in retried.commands)


def test_an_admission_for_an_attempt_that_ended_is_dropped() -> None:
    definition, state = started()
    failed = decide(definition, state, StepFailed("reserve", "no", {}, 1), T0).state
    late = decide(definition, failed, CommandAdmitted("reserve", 1, SLOT, {}), T0)
    assert not late.changed
    assert late.commands == []


# -- max_in_flight, properties over random event sequences ---------------------------------------

GATED_TWO = """\
name: gated
trigger: {event: orders.placed}
steps:
  - name: reserve
    publish: {event: inventory.reserve}
    success: inventory.reserved
    failure: inventory.rejected
    timeout: 1s
    queue_timeout: QUEUE
    retry: {attempts: 3, backoff: 100ms, on_failure: true}
    max_in_flight: 2
    compensate: {publish: {event: inventory.release}}
  - name: charge
    publish: {event: pay.charge}
    success: pay.charged
    timeout: 1s
    max_in_flight: 1
"""
STEP_TIMER_KINDS = (TimerKind.STEP_TIMEOUT, TimerKind.QUEUE_TIMEOUT)


def slot_events(definition: Any) -> st.SearchStrategy[Any]:
    steps = st.sampled_from([s.name for s in definition.steps])
    attempts = st.integers(1, 4)
    return st.one_of(
        st.builds(
            CommandAdmitted,
            steps,
            attempts,
            st.sampled_from(["slot-a", "slot-b", "slot-c"]),
            st.just({}),
        ),
        st.builds(StepSucceeded, steps, st.just({}), attempts | st.none()),
        st.builds(StepFailed, steps, st.just("no"), st.just({}), attempts | st.none()),
        st.builds(StepStarted, steps, attempts | st.none()),
        st.builds(OperatorAbort),
        st.builds(OperatorRetry),
        st.just("fire"),
    )


@pytest.mark.parametrize("queue", [None, "5s"])
@given(data=st.data())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_slots_are_held_only_while_sent_and_given_back_once(queue: str | None, data: Any) -> None:
    """Whatever happens: a slot is held only by an in-flight attempt of a running instance,
    each slot taken is given back exactly once, a command goes to its participant only when
    admitted, and no run or queue timer is pending while a command is held back (a start
    report for a command not yet sent once armed the run timeout: found by this test)."""
    text = (
        GATED_TWO.replace("QUEUE", queue)
        if queue
        else GATED_TWO.replace("    queue_timeout: QUEUE\n", "")
    )
    definition = parse_definition(text)
    now = T0
    decision = decide(definition, None, SagaTriggered("g1", {}), now)
    state = decision.state
    pending: dict[Timer, datetime] = {}
    held: set[str] = set()
    for _ in range(data.draw(st.integers(1, 25))):
        assert state is not None
        for command in decision.commands:
            if isinstance(command, ScheduleTimer):
                pending[command.timer] = command.fire_at
            elif isinstance(command, CancelTimer):
                pending.pop(command.timer, None)
        event = data.draw(slot_events(definition))
        if event == "fire":
            if not pending:
                continue
            timer = data.draw(st.sampled_from(sorted(pending, key=lambda t: t.key)))
            now = max(now, pending.pop(timer))
            event = TimerFired(timer)
        now += timedelta(milliseconds=10)
        before = {n: s.slot for n, s in state.steps.items()}
        decision = decide(definition, state, event, now)
        assert decision.error is None, decision.error
        assert decision.state is not None
        state = decision.state
        released = [c.slot for c in decision.commands if isinstance(c, ReleaseSlot)]
        assert len(released) == len(set(released))
        for name, s in state.steps.items():
            if s.slot is not None:
                assert s.status is StepStatus.ACTIVE
                assert state.status is Status.RUNNING
            if before[name] is not None and s.slot != before[name]:
                assert before[name] in released, f"{name}'s slot was dropped, not given back"
            if before[name] is None and s.slot is not None:
                assert isinstance(event, CommandAdmitted)
                held.add(s.slot)
        for slot in released:
            assert slot in held
            held.discard(slot)
        for command in decision.commands:
            if isinstance(command, PublishEvent) and command.headers.get(HEADER_KIND) == "step":
                assert command.subject.startswith("saga.admit.") or isinstance(
                    event, CommandAdmitted
                )
        for name, s in state.steps.items():
            if s.status is StepStatus.ACTIVE and s.slot is None:
                armed = [t for t in pending if t.step == name and t.kind in STEP_TIMER_KINDS]
                armed += [
                    c.timer
                    for c in decision.commands
                    if isinstance(c, ScheduleTimer)
                    and c.timer.step == name
                    and c.timer.kind in STEP_TIMER_KINDS
                ]
                cancelled = {c.timer for c in decision.commands if isinstance(c, CancelTimer)}
                assert not [t for t in armed if t not in cancelled and t.attempt == s.attempt]


def test_a_start_report_before_the_command_was_sent_arms_nothing() -> None:
    definition = parse_definition(GATED_TWO.replace("QUEUE", "5s"))
    state = decide(definition, None, SagaTriggered("g1", {}), T0).state
    early = decide(definition, state, StepStarted("reserve", 1), T0)
    assert not early.changed
    assert early.commands == []
