"""Child sagas in the pure core and the loader: what the parent publishes to start and undo a
child, what the child reports back, and the checks ``saga validate`` makes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saga.core import decide
from saga.core.commands import PublishEvent
from saga.core.events import (
    CompensationSucceeded,
    OperatorRetry,
    SagaTriggered,
    StepFailed,
    StepSucceeded,
    UndoRequested,
)
from saga.core.state import InstanceState, ParentLink, Status
from saga.definition import load_catalog, parse_definition
from saga.errors import DefinitionError
from saga.protocol import (
    HEADER_ATTEMPT,
    HEADER_PARENT_ID,
    HEADER_PARENT_NAME,
    HEADER_SAGA_ID,
    HEADER_SAGA_NAME,
    HEADER_STEP,
    trigger_message_id,
)
from saga.testing import HarnessError, SagaHarness, reply

NOW = datetime(2026, 12, 3, tzinfo=UTC)
PARENT = parse_definition(
    """
name: trip
trigger: {event: trip.requested}
steps:
  - name: book
    saga: booking
    data: {nights: trigger.nights}
  - name: pay
    publish: {event: trip.pay}
    success: trip.paid
    failure: trip.declined
"""
)
CHILD = parse_definition(
    """
name: booking
trigger: {event: booking.requested}
steps:
  - name: hotel
    publish: {event: booking.hotel}
    success: booking.hotel.done
    failure: booking.hotel.full
    compensate: {publish: {event: booking.hotel.cancel}, success: booking.hotel.cancelled}
"""
)
LINK = ParentLink(saga="trip", saga_id="t-1", step="book", attempt=1)


def published(commands: list[object]) -> list[PublishEvent]:
    return [c for c in commands if isinstance(c, PublishEvent)]


def test_the_step_publishes_the_childs_trigger_with_a_derived_id() -> None:
    decision = decide(PARENT, None, SagaTriggered("t-1", {"nights": 3}), NOW)
    [start] = published(decision.commands)
    assert start.subject == "saga.child.booking.start"
    assert start.data == {"nights": 3}
    assert start.msg_id == trigger_message_id("booking", "t-1-book")  # deduped as a trigger
    assert {k: start.headers[k] for k in (HEADER_SAGA_ID, HEADER_SAGA_NAME)} == {
        HEADER_SAGA_ID: "t-1-book",
        HEADER_SAGA_NAME: "booking",
    }
    assert (start.headers[HEADER_PARENT_NAME], start.headers[HEADER_PARENT_ID]) == ("trip", "t-1")
    # the parent's step attempt, so the trigger carries that attempt's traceparent
    assert (start.headers[HEADER_STEP], start.headers[HEADER_ATTEMPT]) == ("book", "1")


def child_run(*events: object) -> InstanceState:
    state = decide(CHILD, None, SagaTriggered("t-1-book", {}, LINK), NOW).state
    for event in events:
        decision = decide(CHILD, state, event, NOW)  # type: ignore[arg-type]
        state = decision.state
    assert state is not None
    return state


def test_a_child_reports_its_end_to_the_parents_step() -> None:
    state = child_run()
    assert state.parent == LINK
    decision = decide(CHILD, state, StepSucceeded("hotel", {"room": 7}), NOW)
    [hotel_done] = [c for c in published(decision.commands) if c.subject.startswith("saga.child")]
    assert hotel_done.subject == "saga.child.trip.book.completed"
    assert hotel_done.headers == {
        HEADER_SAGA_ID: "t-1",
        HEADER_SAGA_NAME: "trip",
        HEADER_ATTEMPT: "1",
    }
    assert hotel_done.data["id"] == "t-1-book"
    assert hotel_done.data["steps"] == {"hotel": {"room": 7}}
    # which the parent reads as its step succeeding
    parent = decide(PARENT, None, SagaTriggered("t-1", {}), NOW).state
    after = decide(PARENT, parent, StepSucceeded("book", hotel_done.data, 1), NOW).state
    assert after is not None
    assert after.steps["book"].status.value == "succeeded"


def test_a_failed_child_fails_the_parents_step_with_its_reason() -> None:
    decision = decide(CHILD, child_run(), StepFailed("hotel", "full"), NOW)
    assert decision.state is not None
    assert decision.state.status is Status.COMPENSATED
    [failed] = [c for c in published(decision.commands) if c.subject.startswith("saga.child")]
    assert failed.subject == "saga.child.trip.book.failed"
    assert failed.data["reason"] == "full"


def test_an_undo_reopens_a_completed_child_and_reports_undone() -> None:
    done = child_run(StepSucceeded("hotel", {}))
    assert done.status is Status.COMPLETED
    undoing = decide(CHILD, done, UndoRequested(), NOW)
    assert undoing.state is not None
    assert undoing.state.status is Status.COMPENSATING
    assert [c.subject for c in published(undoing.commands)] == ["booking.hotel.cancel"]
    again = decide(CHILD, undoing.state, UndoRequested(), NOW)
    assert not again.changed
    assert again.note == "undo already requested: duplicate"
    undone = decide(CHILD, undoing.state, CompensationSucceeded("hotel"), NOW)
    assert undone.state is not None
    assert undone.state.status is Status.COMPENSATED
    subjects = [c.subject for c in published(undone.commands)]
    assert subjects == ["saga.child.trip.book.undone"]


def test_the_parents_undo_command_addresses_the_child() -> None:
    state = decide(PARENT, None, SagaTriggered("t-1", {}), NOW).state
    state = decide(PARENT, state, StepSucceeded("book", {}, 1), NOW).state
    decision = decide(PARENT, state, StepFailed("pay", "declined"), NOW)
    [undo] = published(decision.commands)
    assert undo.subject == "saga.child.booking.undo"
    assert undo.headers[HEADER_SAGA_ID] == "t-1-book"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["ok", "full", "undo", "cancelled"]), max_size=6))
def test_a_child_tells_its_parent_once_per_outcome(script: list[str]) -> None:
    """Whatever arrives in whatever order, each outcome is published at most once and an
    ``undone`` only after the parent asked."""
    events = {
        "ok": StepSucceeded("hotel", {}),
        "full": StepFailed("hotel", "full"),
        "undo": UndoRequested(),
        "cancelled": CompensationSucceeded("hotel"),
    }
    state = decide(CHILD, None, SagaTriggered("t-1-book", {}, LINK), NOW).state
    told: list[str] = []
    for name in script:
        decision = decide(CHILD, state, events[name], NOW)
        assert decision.error is None
        state = decision.state
        told += [c.subject for c in published(decision.commands) if "saga.child" in c.subject]
    assert len(told) == len(set(told))
    if any(t.endswith(".undone") for t in told):
        assert "undo" in script


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_validate_needs_the_child_loaded_and_no_cycle(tmp_path: Path) -> None:
    a = "name: a\ntrigger: {event: a.go}\nsteps:\n  - {name: s, saga: b}\n"
    b = "name: b\ntrigger: {event: b.go}\nsteps:\n  - {name: s, saga: a}\n"
    with pytest.raises(DefinitionError) as missing:
        load_catalog([write(tmp_path, "a", a)])
    assert "child saga 'b' is not among the definitions loaded (a)" in str(missing.value)
    with pytest.raises(DefinitionError) as cycle:
        load_catalog([write(tmp_path, "a", a), write(tmp_path, "b", b)])
    assert "child sagas form a cycle: a -> b -> a" in str(cycle.value)


def test_a_child_step_gets_its_events_from_the_engine() -> None:
    with pytest.raises(DefinitionError, match="the engine supplies its publish, retry"):
        parse_definition(
            "name: a\ntrigger: {event: a.go}\nsteps:\n"
            "  - {name: s, saga: b, publish: {event: x.y}, retry: {attempts: 2}}\n"
        )


# -- the example in docs/examples, in saga.testing ----------------------------------------------


async def test_the_trip_example_runs_with_a_scripted_child() -> None:
    """In ``saga.testing`` the child is a command like any other: script its outcome."""
    h = SagaHarness.from_file(Path(__file__).parents[2] / "docs/examples/trip.yaml")
    room = {"id": "t1-book_hotel", "saga": "hotel-booking", "steps": {"reserve": {"room": 7}}}
    h.on("saga.child.hotel-booking.start", reply("saga.child.trip.book_hotel.completed", **room))
    h.on("saga.child.hotel-booking.undo", reply("saga.child.trip.book_hotel.undone"))
    h.on("trips.pay", reply("trips.declined", reason="card declined"))
    result = await h.run({"trip_id": "t1", "city": "Oslo", "nights": 2})
    assert result.status == "compensated"
    start = next(m for m in result.commands if m.subject == "saga.child.hotel-booking.start")
    assert start.payload == {"city": "Oslo", "nights": 2}
    pay = next(m for m in result.commands if m.subject == "trips.pay")
    assert pay.payload == {"trip_id": "t1", "room": 7}
    assert "saga.child.hotel-booking.undo" in result.published_subjects


def test_an_operator_retry_of_a_running_child_step_is_refused() -> None:
    """The child's id is per step, so a second attempt would start nothing and wait for ever."""
    state = decide(PARENT, None, SagaTriggered("t-1", {}), NOW).state
    refused = decide(PARENT, state, OperatorRetry(actor="ann"), NOW)
    assert not refused.changed
    assert refused.note == (
        "cannot retry: step 'book' runs the child saga 'booking'; act on the child instead"
    )


async def test_a_parent_whose_child_step_would_run_again_is_not_redriven() -> None:
    """Redrive would re-trigger a child whose id is taken: the parent would wait for ever,
    so the engine refuses it and says why."""
    h = SagaHarness(PARENT)
    h.on("saga.child.booking.start", reply("saga.child.trip.book.failed", reason="full"))
    result = await h.run({"nights": 2})
    assert result.status == "compensated"
    with pytest.raises(HarnessError, match="would start child saga 'booking' again"):
        await h.act("redrive", reason="try again")
