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
    Finished,
    InstanceState,
    PublishEvent,
    Reopened,
    SagaTriggered,
    StepFailed,
    StepSucceeded,
    Timer,
    TimerFired,
    TimerKind,
    decide,
)
from saga.definition import parse_definition
from saga.testing import SagaHarness, reply

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


PARALLEL = parse_definition(
    """
name: parallel
trigger: {event: p.requested, id: {field: id}}
branch_failure: wait
steps:
  - {name: slow, publish: {event: slow.go}, success: slow.done}
  - {name: quick, publish: {event: quick.go}, success: quick.done, timeout: 1s, after: []}
  - name: watched
    success: watched.done
    failure: watched.failed
    compensate: {publish: {event: watched.undo}, success: watched.undone}
"""
)


def test_an_observed_step_that_reports_success_while_the_saga_fails_is_undone() -> None:
    """Found by the property test: ``quick`` timed out, so ``watched`` (after it) will never
    be started, and the saga waits for ``slow`` before compensating. The service behind the
    observed ``watched`` acted on its own anyway, first saying it failed, then that it
    succeeded. The success is recorded so that its effect is undone with the others."""
    state = None
    events: list[Event] = [
        SagaTriggered("p-1", {"id": "p-1"}),
        TimerFired(Timer(TimerKind.STEP_TIMEOUT, "quick", 1)),
        StepFailed("watched", "late"),
        StepSucceeded("watched", {"ref": "w-1"}),
        StepSucceeded("slow"),
    ]
    for i, event in enumerate(events):
        state = decide(PARALLEL, state, event, T0 + timedelta(seconds=i)).state
    assert state is not None
    assert any(h.event == "step.late-success" and h.step == "watched" for h in state.history)
    assert state.status.value == "compensating"
    assert state.compensation_queue[0] == "watched"


async def test_a_reopened_saga_announces_reopened_once_and_compensated_once() -> None:
    """Issue 12, defect 4: a saga reopened to undo a late success published
    ``saga.status.trip.compensated`` twice."""
    h = SagaHarness(TRIP)
    h.on("flight.book", reply("flight.booked"))
    h.on("flight.cancel", reply("flight.cancelled"))
    h.on("hotel.cancel", reply("hotel.cancelled"))
    compensated = await h.run({"id": "t-1"})
    assert compensated.status == "compensated"

    await h.emit("hotel.booked", {"ref": "H1"})

    result = await h.settle()
    assert result.status == "compensated"
    assert "hotel.cancel" in result.published_subjects
    announced = [m.subject for m in result.status_events]
    assert announced == ["saga.status.trip.compensated", "saga.status.trip.reopened"]
    assert result.status_events[1].payload["reason"] == "late success of hotel: undoing it"


def test_the_second_compensation_of_a_reopened_saga_is_not_finished_again() -> None:
    compensated = run(
        StepSucceeded("flight"),
        TimerFired(Timer(TimerKind.STEP_TIMEOUT, "hotel", 1)),
        CompensationSucceeded("flight"),
    )
    reopened = decide(TRIP, compensated, StepSucceeded("hotel"), T0 + timedelta(1))
    assert reopened.state is not None
    assert Reopened("hotel") in reopened.commands
    done = decide(TRIP, reopened.state, CompensationSucceeded("hotel"), T0 + timedelta(2))
    assert done.state is not None
    assert done.state.status.value == "compensated"
    assert not any(isinstance(c, Finished) for c in done.commands)
