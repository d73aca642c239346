"""A success that arrives after the saga has ended: its effect must still be undone.

Found by the chaos run (tests/chaos, cluster scenario, full mode): the hotel's observed
step timed out while a cluster node was down, the flight was cancelled and the saga
ended ``compensated``; then the hotel's booking arrived. The engine ignored it, so a
room stayed booked for a saga that reports itself compensated (the invariants checker
reports it as ``not-undone``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from saga.core import (
    CompensationSucceeded,
    Event,
    InstanceState,
    PublishEvent,
    SagaTriggered,
    StepSucceeded,
    Timer,
    TimerFired,
    TimerKind,
    decide,
)
from saga.definition import parse_definition

TRIP = parse_definition(
    """
name: trip
trigger: {event: trip.requested, id: {field: id}}
steps:
  - name: flight
    publish: {event: flight.book}
    success: flight.booked
    timeout: 5s
    compensate: {publish: {event: flight.cancel}, success: flight.cancelled}
  - name: hotel
    success: hotel.booked
    timeout: 5s
    compensate: {publish: {event: hotel.cancel}, success: hotel.cancelled}
"""
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def run(*events: Event) -> InstanceState:
    state = None
    for i, event in enumerate((SagaTriggered("t-1", {"id": "t-1"}), *events)):
        decision = decide(TRIP, state, event, T0 + timedelta(seconds=i))
        state = decision.state
    assert state is not None
    return state


def test_a_success_after_the_saga_was_compensated_is_undone() -> None:
    compensated = run(
        StepSucceeded("flight"),
        TimerFired(Timer(TimerKind.STEP_TIMEOUT, "hotel", 1)),
        CompensationSucceeded("flight"),
    )
    assert compensated.status.value == "compensated"
    late = decide(TRIP, compensated, StepSucceeded("hotel", {"ref": "H1"}), T0 + timedelta(1))
    undo = [c for c in late.commands if isinstance(c, PublishEvent)]
    assert [c.subject for c in undo] == ["hotel.cancel"]
    assert late.state is not None
    assert late.state.status.value == "compensating"


def test_a_success_during_compensation_is_undone_today() -> None:
    """The same late success while the flight's undo is still in flight is handled."""
    compensating = run(
        StepSucceeded("flight"), TimerFired(Timer(TimerKind.STEP_TIMEOUT, "hotel", 1))
    )
    late = decide(TRIP, compensating, StepSucceeded("hotel"), T0 + timedelta(1))
    assert late.changed
    assert late.state is not None
    assert late.state.compensation_queue == ["flight", "hotel"]
