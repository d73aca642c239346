"""The saga state machine, one behaviour per test: given a state, when an event, then a decision.

Most tests run the example definitions (``definitions/*.yaml``); a few use a small inline
saga (``shop``) for the policies those examples do not have (retry on failure, compensation
failure events, fire-and-forget compensation).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from saga.core import (
    CancelTimer,
    CompensationFailed,
    CompensationStatus,
    CompensationSucceeded,
    Decision,
    Event,
    Finished,
    InstanceState,
    OperatorAbort,
    OperatorResume,
    OperatorRetry,
    Parked,
    PublishEvent,
    SagaTriggered,
    ScheduleTimer,
    Status,
    StepFailed,
    StepState,
    StepStatus,
    StepSucceeded,
    Timer,
    TimerFired,
    TimerKind,
    classify,
    decide,
)
from saga.definition import SagaDefinition, load_definitions, parse_definition
from saga.protocol import HEADER_ATTEMPT, HEADER_KIND, HEADER_SAGA_ID, HEADER_SAGA_NAME, HEADER_STEP

DEFINITIONS = Path(__file__).resolve().parents[2] / "definitions"
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

ORDER = {
    "order_id": "o-1",
    "customer_id": "c-9",
    "items": [{"sku": "A-1", "qty": 2}],
    "total": 42.5,
    "address": "1 Main St",
}
RESERVED = {"reservation_id": "r-1", "warehouse": "north"}
CHARGED = {"payment_id": "p-1", "amount": 42.5, "card": "4242"}
SHIPPED = {"tracking_id": "t-1"}
ORDER_REPLIES: dict[str, dict[str, Any]] = {
    "reserve_inventory": RESERVED,
    "charge_payment": CHARGED,
    "schedule_shipping": SHIPPED,
}
ORDER_STEPS = list(ORDER_REPLIES)

TRIP = {"trip_id": "trip-1", "traveller": "Ada", "route": "AMS-LIS", "date": "2025-05-01"}

SHOP = """
name: shop
trigger: {event: shop.ordered}
steps:
  - name: reserve
    publish: {event: stock.reserve, data: {sku: trigger.sku}}
    success: stock.reserved
    failure: stock.rejected
    timeout: 10s
    retry: {attempts: 2, backoff: 1s, on_failure: true}
    compensate:
      publish: {event: stock.release}
      success: stock.released
      failure: stock.release_failed
      timeout: 5s
      retry: {attempts: 2, backoff: 1s, on_failure: COMP_ON_FAILURE}
  - name: charge
    publish: {event: payment.charge}
    success: payment.charged
    failure: payment.declined
    compensate:
      publish: {event: payment.refund}
  - name: ship
    publish: {event: shipping.book}
    success: shipping.booked
    failure: shipping.failed
"""
"""A saga with retry on failure, a compensation failure event and a fire-and-forget undo."""

NOTIFY = """
name: notify
trigger: {event: shop.ordered}
steps:
  - {name: reserve, publish: {event: stock.reserve}, success: stock.reserved,
     compensate: {publish: {event: stock.release}}}
  - {name: notify, publish: {event: mail.send}, success: mail.sent}
  - {name: charge, publish: {event: payment.charge}, success: payment.charged,
     failure: payment.declined}
"""
"""A step with nothing to undo (``notify``) between two others."""


# -- helpers ----------------------------------------------------------------------------------


class Run:
    """One instance driven through ``decide`` with a clock that only moves forward."""

    def __init__(self, definition: SagaDefinition, saga_id: str = "o-1") -> None:
        self.definition = definition
        self.saga_id = saga_id
        self.state: InstanceState | None = None
        self.now = T0

    def send(self, event: Event, after: float = 1.0) -> Decision:
        self.now += timedelta(seconds=after)
        decision = decide(self.definition, self.state, event, self.now)
        assert decision.error is None, decision.error
        if decision.state is not None:
            self.state = decision.state
        return decision

    def start(self, data: dict[str, Any] | None = None) -> Decision:
        return self.send(SagaTriggered(self.saga_id, ORDER if data is None else data), after=0)

    def fire(self, kind: TimerKind, step: str | None = None, attempt: int = 1) -> Decision:
        return self.send(TimerFired(Timer(kind, step, attempt)))

    def ok(self, step: str, data: dict[str, Any] | None = None) -> Decision:
        return self.send(StepSucceeded(step, ORDER_REPLIES.get(step, {}) if data is None else data))

    @property
    def status(self) -> Status:
        assert self.state is not None
        return self.state.status

    def step(self, name: str) -> StepState:
        assert self.state is not None
        return self.state.steps[name]


def published(decision: Decision) -> list[PublishEvent]:
    return [c for c in decision.commands if isinstance(c, PublishEvent)]


def subjects(decision: Decision) -> list[str]:
    return [p.subject for p in published(decision)]


def scheduled(decision: Decision) -> list[Timer]:
    return [c.timer for c in decision.commands if isinstance(c, ScheduleTimer)]


def cancelled(decision: Decision) -> list[Timer]:
    return [c.timer for c in decision.commands if isinstance(c, CancelTimer)]


def finished(decision: Decision) -> list[str]:
    return [c.status for c in decision.commands if isinstance(c, Finished)]


def assert_noop(decision: Decision, before: InstanceState | None) -> None:
    assert decision.changed is False
    assert decision.commands == []
    assert decision.note
    assert decision.state == before


@pytest.fixture(scope="module")
def definitions() -> dict[str, SagaDefinition]:
    return load_definitions([DEFINITIONS])


@pytest.fixture
def order(definitions: dict[str, SagaDefinition]) -> Run:
    return Run(definitions["order-fulfilment"])


def linear(definition: SagaDefinition) -> SagaDefinition:
    """The example without ``after``/``when``: every step after the one before it."""
    steps = [s.model_copy(update={"after": None, "when": None}) for s in definition.steps]
    return definition.model_copy(update={"steps": steps})


@pytest.fixture
def travel(definitions: dict[str, SagaDefinition]) -> Run:
    """travel-booking run one step after another (its parallel form is tested below)."""
    return Run(linear(definitions["travel-booking"]), saga_id="trip-1")


@pytest.fixture
def trip(definitions: dict[str, SagaDefinition]) -> Run:
    """travel-booking as written: hotel (observed) and car in parallel after the flight."""
    return Run(definitions["travel-booking"], saga_id="trip-1")


@pytest.fixture
def shop() -> Run:
    return Run(parse_definition(SHOP.replace("COMP_ON_FAILURE", "false")), saga_id="s-1")


@pytest.fixture
def shop_retrying_undo() -> Run:
    return Run(parse_definition(SHOP.replace("COMP_ON_FAILURE", "true")), saga_id="s-1")


def order_in_flight(run: Run, step: str) -> Run:
    """Given: the order saga started and every step before ``step`` succeeded."""
    run.start()
    for name in ORDER_STEPS[: ORDER_STEPS.index(step)]:
        run.ok(name)
    assert run.step(step).status is StepStatus.ACTIVE
    return run


def order_compensating(run: Run) -> Run:
    """Given: reserve and charge succeeded, shipping failed; the refund is in progress."""
    order_in_flight(run, "schedule_shipping")
    run.send(StepFailed("schedule_shipping", "no courier"))
    assert run.status is Status.COMPENSATING
    return run


def order_parked(run: Run) -> Run:
    """Given: the refund timed out on all its 5 attempts, so the instance is parked."""
    order_compensating(run)
    for attempt in range(1, 5):
        run.fire(TimerKind.COMPENSATION_TIMEOUT, "charge_payment", attempt)
        run.fire(TimerKind.COMPENSATION_RETRY, "charge_payment", attempt)
    run.fire(TimerKind.COMPENSATION_TIMEOUT, "charge_payment", 5)
    assert run.status is Status.PARKED
    return run


def completed(run: Run) -> Run:
    order_in_flight(run, "schedule_shipping").ok("schedule_shipping")
    assert run.status is Status.COMPLETED
    return run


def compensated(run: Run) -> Run:
    order_in_flight(run, "charge_payment").send(StepFailed("charge_payment", "declined"))
    run.send(CompensationSucceeded("reserve_inventory"))
    assert run.status is Status.COMPENSATED
    return run


# -- start and happy path ---------------------------------------------------------------------


def test_trigger_creates_instance_and_drives_first_step(order: Run) -> None:
    decision = order.start()

    assert decision.changed
    assert order.status is Status.RUNNING
    assert subjects(decision) == ["inventory.reserve"]
    assert order.step("reserve_inventory").status is StepStatus.ACTIVE
    assert order.step("reserve_inventory").attempt == 1


def test_trigger_schedules_deadline_and_first_step_timeout(order: Run) -> None:
    decision = order.start()

    assert [c for c in decision.commands if isinstance(c, ScheduleTimer)] == [
        ScheduleTimer(Timer(TimerKind.DEADLINE), T0 + timedelta(minutes=2)),
        ScheduleTimer(
            Timer(TimerKind.STEP_TIMEOUT, "reserve_inventory", 1), T0 + timedelta(seconds=10)
        ),
    ]


def test_step_success_cancels_its_timeout_and_drives_next_step(order: Run) -> None:
    order.start()

    decision = order.ok("reserve_inventory")

    assert cancelled(decision) == [Timer(TimerKind.STEP_TIMEOUT, "reserve_inventory", 1)]
    assert subjects(decision) == ["payment.charge"]
    assert order.step("charge_payment").status is StepStatus.ACTIVE


def test_happy_path_completes_and_emits_finished_completed(order: Run) -> None:
    order_in_flight(order, "schedule_shipping")

    decision = order.ok("schedule_shipping")

    assert order.status is Status.COMPLETED
    assert finished(decision) == ["completed"]
    assert order.state is not None
    assert order.state.completed == ORDER_STEPS
    assert order.state.finished_at == order.now


def test_completion_cancels_the_deadline(order: Run) -> None:
    order_in_flight(order, "schedule_shipping")

    decision = order.ok("schedule_shipping")

    assert Timer(TimerKind.DEADLINE) in cancelled(decision)


# -- failure and compensation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("failing", "undone"),
    [
        ("reserve_inventory", []),
        ("charge_payment", ["inventory.release"]),
        ("schedule_shipping", ["payment.refund", "inventory.release"]),
    ],
)
def test_failure_compensates_exactly_the_completed_steps_newest_first(
    order: Run, failing: str, undone: list[str]
) -> None:
    order_in_flight(order, failing)

    published_undos = subjects(order.send(StepFailed(failing, "nope")))
    confirmations = {"payment.refund": "charge_payment", "inventory.release": "reserve_inventory"}
    for _ in undone:
        step = confirmations[published_undos[-1]]
        last = order.send(CompensationSucceeded(step))
        published_undos += subjects(last)

    assert published_undos == undone
    assert order.status is Status.COMPENSATED
    assert order.step(failing).status is StepStatus.FAILED
    assert order.step(failing).compensation is CompensationStatus.NONE


def test_failure_with_nothing_to_undo_finishes_compensated_at_once(order: Run) -> None:
    order.start()

    decision = order.send(StepFailed("reserve_inventory", "out of stock"))

    assert finished(decision) == ["compensated"]
    assert order.state is not None
    assert order.state.failure_step == "reserve_inventory"
    assert order.state.failure_reason == "out of stock"


def test_compensation_begins_by_cancelling_the_deadline(order: Run) -> None:
    order_in_flight(order, "charge_payment")

    decision = order.send(StepFailed("charge_payment", "declined"))

    assert Timer(TimerKind.DEADLINE) in cancelled(decision)
    assert Timer(TimerKind.COMPENSATION_TIMEOUT, "reserve_inventory", 1) in scheduled(decision)


def test_step_without_compensation_is_skipped_when_undoing() -> None:
    run = Run(parse_definition(NOTIFY))
    run.start({})
    run.ok("reserve")
    run.ok("notify")

    decision = run.send(StepFailed("charge", "declined"))

    assert subjects(decision) == ["stock.release"]
    assert run.step("notify").compensation is CompensationStatus.NONE
    assert finished(decision) == ["compensated"]


def test_fire_and_forget_compensation_is_done_when_published(shop: Run) -> None:
    shop.start({"sku": "A"})
    shop.ok("reserve")
    shop.ok("charge")

    decision = shop.send(StepFailed("ship", "no courier"))

    assert subjects(decision) == ["payment.refund", "stock.release"]
    assert shop.step("charge").compensation is CompensationStatus.DONE
    assert shop.step("reserve").compensation is CompensationStatus.ACTIVE


# -- step timeouts and retries ----------------------------------------------------------------


def test_step_timeout_waits_to_retry_with_backoff(order: Run) -> None:
    order.start()

    decision = order.fire(TimerKind.STEP_TIMEOUT, "reserve_inventory", 1)

    assert order.step("reserve_inventory").status is StepStatus.RETRY_WAIT
    assert published(decision) == []
    assert decision.commands[-1] == ScheduleTimer(
        Timer(TimerKind.STEP_RETRY, "reserve_inventory", 1), order.now + timedelta(milliseconds=200)
    )


def test_retry_timer_republishes_with_attempt_2_and_a_new_msg_id(order: Run) -> None:
    first = published(order.start())[0]
    order.fire(TimerKind.STEP_TIMEOUT, "reserve_inventory", 1)

    decision = order.fire(TimerKind.STEP_RETRY, "reserve_inventory", 1)

    again = published(decision)[0]
    assert again.subject == first.subject
    assert again.data == first.data
    assert again.headers[HEADER_ATTEMPT] == "2"
    assert again.msg_id != first.msg_id
    assert Timer(TimerKind.STEP_TIMEOUT, "reserve_inventory", 2) in scheduled(decision)


def test_success_after_a_retry_continues_the_saga(order: Run) -> None:
    order.start()
    order.fire(TimerKind.STEP_TIMEOUT, "reserve_inventory", 1)
    order.fire(TimerKind.STEP_RETRY, "reserve_inventory", 1)

    decision = order.ok("reserve_inventory")

    assert order.step("reserve_inventory").status is StepStatus.SUCCEEDED
    assert order.step("reserve_inventory").attempt == 2
    assert cancelled(decision) == [Timer(TimerKind.STEP_TIMEOUT, "reserve_inventory", 2)]
    assert subjects(decision) == ["payment.charge"]


def test_success_while_waiting_to_retry_cancels_the_retry(order: Run) -> None:
    order.start()
    order.fire(TimerKind.STEP_TIMEOUT, "reserve_inventory", 1)

    decision = order.ok("reserve_inventory")

    assert cancelled(decision) == [Timer(TimerKind.STEP_RETRY, "reserve_inventory", 1)]
    assert order.step("charge_payment").status is StepStatus.ACTIVE


def test_timeout_after_attempts_are_exhausted_compensates(order: Run) -> None:
    order_in_flight(order, "charge_payment")
    for attempt in (1, 2):
        order.fire(TimerKind.STEP_TIMEOUT, "charge_payment", attempt)
        order.fire(TimerKind.STEP_RETRY, "charge_payment", attempt)

    decision = order.fire(TimerKind.STEP_TIMEOUT, "charge_payment", 3)

    assert order.status is Status.COMPENSATING
    assert order.step("charge_payment").status is StepStatus.TIMED_OUT
    assert subjects(decision) == ["inventory.release"]


def test_failure_is_not_retried_without_on_failure(order: Run) -> None:
    order.start()

    order.send(StepFailed("reserve_inventory", "out of stock"))

    assert order.step("reserve_inventory").status is StepStatus.FAILED
    assert order.step("reserve_inventory").attempt == 1


def test_failure_is_retried_with_on_failure(shop: Run) -> None:
    shop.start({"sku": "A"})

    decision = shop.send(StepFailed("reserve", "busy"))

    assert shop.status is Status.RUNNING
    assert shop.step("reserve").status is StepStatus.RETRY_WAIT
    assert cancelled(decision) == [Timer(TimerKind.STEP_TIMEOUT, "reserve", 1)]
    assert scheduled(decision) == [Timer(TimerKind.STEP_RETRY, "reserve", 1)]


def test_failure_after_on_failure_attempts_are_exhausted_compensates(shop: Run) -> None:
    shop.start({"sku": "A"})
    shop.send(StepFailed("reserve", "busy"))
    shop.fire(TimerKind.STEP_RETRY, "reserve", 1)

    decision = shop.send(StepFailed("reserve", "still busy"))

    assert shop.step("reserve").status is StepStatus.FAILED
    assert finished(decision) == ["compensated"]


# -- compensation failures, parking and the operator -----------------------------------------


def test_compensation_timeout_is_retried(order: Run) -> None:
    order_compensating(order)

    order.fire(TimerKind.COMPENSATION_TIMEOUT, "charge_payment", 1)
    decision = order.fire(TimerKind.COMPENSATION_RETRY, "charge_payment", 1)

    refund = published(decision)[0]
    assert refund.subject == "payment.refund"
    assert refund.headers[HEADER_ATTEMPT] == "2"
    assert refund.headers[HEADER_KIND] == "compensation"


def test_compensation_timing_out_after_its_retries_parks(order: Run) -> None:
    order_compensating(order)
    for attempt in range(1, 5):
        order.fire(TimerKind.COMPENSATION_TIMEOUT, "charge_payment", attempt)
        order.fire(TimerKind.COMPENSATION_RETRY, "charge_payment", attempt)

    decision = order.fire(TimerKind.COMPENSATION_TIMEOUT, "charge_payment", 5)

    assert order.status is Status.PARKED
    assert (
        Parked("charge_payment", "compensation timed out after 5 attempt(s)") in decision.commands
    )
    assert order.step("charge_payment").compensation is CompensationStatus.FAILED


def test_compensation_failure_parks_when_failures_are_not_retried(shop: Run) -> None:
    shop.start({"sku": "A"})
    shop.ok("reserve")
    shop.send(StepFailed("charge", "declined"))

    decision = shop.send(CompensationFailed("reserve", "warehouse offline"))

    assert shop.status is Status.PARKED
    assert cancelled(decision) == [Timer(TimerKind.COMPENSATION_TIMEOUT, "reserve", 1)]
    assert Parked("reserve", "warehouse offline") in decision.commands


def test_compensation_failure_is_retried_with_on_failure(shop_retrying_undo: Run) -> None:
    run = shop_retrying_undo
    run.start({"sku": "A"})
    run.ok("reserve")
    run.send(StepFailed("charge", "declined"))

    decision = run.send(CompensationFailed("reserve", "busy"))

    assert run.status is Status.COMPENSATING
    assert run.step("reserve").compensation is CompensationStatus.RETRY_WAIT
    assert scheduled(decision) == [Timer(TimerKind.COMPENSATION_RETRY, "reserve", 1)]


def test_compensation_failing_after_its_retries_parks(shop_retrying_undo: Run) -> None:
    run = shop_retrying_undo
    run.start({"sku": "A"})
    run.ok("reserve")
    run.send(StepFailed("charge", "declined"))
    run.send(CompensationFailed("reserve", "busy"))
    run.fire(TimerKind.COMPENSATION_RETRY, "reserve", 1)

    decision = run.send(CompensationFailed("reserve", "still busy"))

    assert run.status is Status.PARKED
    assert Parked("reserve", "still busy") in decision.commands


def test_operator_retry_redrives_the_parked_compensation(order: Run) -> None:
    order_parked(order)

    decision = order.send(OperatorRetry())

    assert order.status is Status.COMPENSATING
    refund = published(decision)[0]
    assert refund.subject == "payment.refund"
    assert refund.headers[HEADER_ATTEMPT] == "6"
    assert Timer(TimerKind.COMPENSATION_TIMEOUT, "charge_payment", 6) in scheduled(decision)


def test_confirmation_after_operator_retry_continues_compensating(order: Run) -> None:
    order_parked(order)
    order.send(OperatorRetry())

    decision = order.send(CompensationSucceeded("charge_payment"))

    assert subjects(decision) == ["inventory.release"]
    assert order.step("charge_payment").compensation is CompensationStatus.DONE


def test_operator_resume_marks_the_parked_compensation_resolved_and_continues(order: Run) -> None:
    order_parked(order)

    decision = order.send(OperatorResume())

    assert order.status is Status.COMPENSATING
    assert order.step("charge_payment").compensation is CompensationStatus.RESOLVED
    assert subjects(decision) == ["inventory.release"]


def test_late_compensation_confirmation_while_parked_continues(order: Run) -> None:
    order_parked(order)

    decision = order.send(CompensationSucceeded("charge_payment"))

    assert order.status is Status.COMPENSATING
    assert order.step("charge_payment").compensation is CompensationStatus.DONE
    assert subjects(decision) == ["inventory.release"]


def test_parked_instance_finishes_compensated_after_resume_and_last_undo(order: Run) -> None:
    order_parked(order)
    order.send(OperatorResume())

    decision = order.send(CompensationSucceeded("reserve_inventory"))

    assert finished(decision) == ["compensated"]


# -- deadline and late replies ----------------------------------------------------------------


def test_deadline_abandons_the_in_flight_step_and_compensates(order: Run) -> None:
    order_in_flight(order, "charge_payment")

    decision = order.fire(TimerKind.DEADLINE)

    assert order.status is Status.COMPENSATING
    assert order.step("charge_payment").status is StepStatus.ABANDONED
    assert Timer(TimerKind.STEP_TIMEOUT, "charge_payment", 1) in cancelled(decision)
    assert subjects(decision) == ["inventory.release"]
    assert order.state is not None
    assert order.state.failure_reason == "deadline exceeded"


def test_deadline_abandons_a_step_waiting_to_retry(order: Run) -> None:
    order_in_flight(order, "charge_payment")
    order.fire(TimerKind.STEP_TIMEOUT, "charge_payment", 1)

    decision = order.fire(TimerKind.DEADLINE)

    assert Timer(TimerKind.STEP_RETRY, "charge_payment", 1) in cancelled(decision)
    assert order.step("charge_payment").status is StepStatus.ABANDONED


def test_late_success_of_an_abandoned_step_queues_its_compensation_next(order: Run) -> None:
    order_in_flight(order, "schedule_shipping")
    order.fire(TimerKind.DEADLINE)  # refund in progress, release queued

    late = order.ok("schedule_shipping")
    assert published(late) == []
    refund_done = order.send(CompensationSucceeded("charge_payment"))

    assert order.step("schedule_shipping").status is StepStatus.SUCCEEDED
    assert order.state is not None
    assert order.state.compensation_queue == ["reserve_inventory"]
    assert subjects(refund_done) == ["inventory.release"]


def test_late_success_of_an_abandoned_compensable_step_is_undone_before_older_ones(
    travel: Run,
) -> None:
    travel.start(TRIP)
    travel.ok("book_flight", {"booking_ref": "F1"})
    travel.fire(TimerKind.DEADLINE)  # hotel abandoned; flight cancel in progress

    travel.ok("book_hotel", {"reservation_ref": "H1"})

    assert travel.state is not None
    assert travel.state.compensation_queue == ["book_flight", "book_hotel"]
    decision = travel.send(CompensationSucceeded("book_flight"))
    hotel_cancel = published(decision)[0]
    assert hotel_cancel.subject == "travel.hotel.cancel"
    assert hotel_cancel.data == {"trip_id": "trip-1", "reservation_ref": "H1"}


def test_late_success_of_a_timed_out_step_queues_its_compensation(travel: Run) -> None:
    travel.start(TRIP)
    travel.ok("book_flight", {"booking_ref": "F1"})
    travel.fire(TimerKind.STEP_TIMEOUT, "book_hotel", 1)

    decision = travel.ok("book_hotel", {"reservation_ref": "H1"})

    assert decision.changed
    assert travel.step("book_hotel").compensation is CompensationStatus.QUEUED
    assert travel.state is not None
    assert travel.state.compensation_queue == ["book_flight", "book_hotel"]


def test_late_success_while_parked_is_undone_after_resume(travel: Run) -> None:
    travel.start(TRIP)
    travel.ok("book_flight", {"booking_ref": "F1"})
    travel.fire(TimerKind.DEADLINE)  # hotel abandoned; flight cancel in progress
    for attempt in range(1, 5):
        travel.fire(TimerKind.COMPENSATION_TIMEOUT, "book_flight", attempt)
        travel.fire(TimerKind.COMPENSATION_RETRY, "book_flight", attempt)
    travel.fire(TimerKind.COMPENSATION_TIMEOUT, "book_flight", 5)
    travel.ok("book_hotel", {"reservation_ref": "H1"})
    assert travel.status is Status.PARKED

    decision = travel.send(OperatorResume())

    assert subjects(decision) == ["travel.hotel.cancel"]


def test_late_failure_of_an_abandoned_step_is_recorded_and_not_undone(order: Run) -> None:
    order_in_flight(order, "charge_payment")
    order.fire(TimerKind.DEADLINE)

    decision = order.send(StepFailed("charge_payment", "declined"))

    assert decision.changed
    assert published(decision) == []
    assert order.step("charge_payment").status is StepStatus.FAILED
    assert order.step("charge_payment").compensation is CompensationStatus.NONE


def test_duplicate_step_reply_during_compensation_is_not_a_confirmation(order: Run) -> None:
    order_compensating(order)
    before = order.state

    decision = order.ok("charge_payment")

    assert_noop(decision, before)
    assert order.step("charge_payment").compensation is CompensationStatus.ACTIVE


def test_success_of_a_never_started_driven_step_during_compensation_is_stray(order: Run) -> None:
    order_in_flight(order, "charge_payment")
    order.send(StepFailed("charge_payment", "declined"))
    before = order.state

    decision = order.ok("schedule_shipping")

    assert_noop(decision, before)


def test_duplicate_confirmation_is_a_noop(order: Run) -> None:
    order_compensating(order)
    order.send(CompensationSucceeded("charge_payment"))
    before = order.state

    assert_noop(order.send(CompensationSucceeded("charge_payment")), before)


def test_confirmation_of_a_queued_compensation_is_a_noop(order: Run) -> None:
    order_compensating(order)
    before = order.state

    assert_noop(order.send(CompensationSucceeded("reserve_inventory")), before)


# -- observed steps ---------------------------------------------------------------------------


def test_observed_step_starts_without_a_command(travel: Run) -> None:
    travel.start(TRIP)

    decision = travel.ok("book_flight", {"booking_ref": "F1"})

    assert published(decision) == []
    assert travel.step("book_hotel").status is StepStatus.ACTIVE
    assert scheduled(decision) == [Timer(TimerKind.STEP_TIMEOUT, "book_hotel", 1)]


def test_observed_success_before_the_previous_step_is_buffered(travel: Run) -> None:
    travel.start(TRIP)

    decision = travel.ok("book_hotel", {"reservation_ref": "H1"})

    assert decision.changed
    assert decision.commands == []
    assert travel.step("book_hotel").status is StepStatus.PENDING
    assert travel.step("book_hotel").early is not None


def test_buffered_success_is_applied_when_the_observed_step_starts(travel: Run) -> None:
    travel.start(TRIP)
    travel.ok("book_hotel", {"reservation_ref": "H1"})

    decision = travel.ok("book_flight", {"booking_ref": "F1"})

    assert travel.step("book_hotel").status is StepStatus.SUCCEEDED
    assert travel.step("rent_car").status is StepStatus.ACTIVE
    assert subjects(decision) == ["travel.car.rent"]
    assert travel.state is not None
    assert travel.state.completed == ["book_flight", "book_hotel"]
    assert travel.state.context["steps"]["book_hotel"] == {"reservation_ref": "H1"}


def test_buffered_failure_is_applied_when_the_observed_step_starts(travel: Run) -> None:
    travel.start(TRIP)
    travel.send(StepFailed("book_hotel", "full"))

    decision = travel.ok("book_flight", {"booking_ref": "F1"})

    assert travel.status is Status.COMPENSATING
    assert travel.step("book_hotel").status is StepStatus.FAILED
    assert subjects(decision) == ["travel.flight.cancel"]


def test_buffered_success_is_undone_when_compensation_begins_first(travel: Run) -> None:
    travel.start(TRIP)
    travel.ok("book_hotel", {"reservation_ref": "H1"})

    decision = travel.send(StepFailed("book_flight", "unavailable"))

    assert travel.step("book_hotel").status is StepStatus.SUCCEEDED
    assert subjects(decision) == ["travel.hotel.cancel"]


def test_second_early_reply_is_a_noop(travel: Run) -> None:
    travel.start(TRIP)
    travel.ok("book_hotel", {"reservation_ref": "H1"})
    before = travel.state

    assert_noop(travel.send(StepFailed("book_hotel", "full")), before)


def test_a_repeated_early_success_is_a_noop_while_the_saga_waits_to_compensate() -> None:
    """Found by hypothesis: a branch failed while a parallel one still runs; an observed
    step's early success is held, and its repeat was then taken as a late success."""
    definition = SagaDefinition.model_validate(
        {
            "name": "p",
            "trigger": {"event": "p.start"},
            "steps": [
                {"name": "s0", "success": "s0.ok", "timeout": "100ms"},
                {"name": "s2", "success": "s2.ok"},
                {"name": "s3", "success": "s3.ok", "after": []},
            ],
        }
    )
    run = Run(definition)
    run.start({"x": 1})
    run.fire(TimerKind.STEP_TIMEOUT, "s0")  # failing, waiting for s3
    run.ok("s2", {"v": 0})
    assert run.step("s2").early is not None
    before = run.state

    assert_noop(run.ok("s2", {"v": 0}), before)


def test_early_reply_for_a_driven_step_is_a_noop(order: Run) -> None:
    order.start()
    before = order.state

    assert_noop(order.ok("charge_payment"), before)


# -- terminal states, stale timers, strays ----------------------------------------------------

ANY_EVENT: list[Event] = [
    StepSucceeded("schedule_shipping", SHIPPED),
    StepFailed("charge_payment", "declined"),
    CompensationSucceeded("charge_payment"),
    CompensationFailed("reserve_inventory", "broken"),
    TimerFired(Timer(TimerKind.DEADLINE)),
    TimerFired(Timer(TimerKind.STEP_TIMEOUT, "reserve_inventory", 1)),
    TimerFired(Timer(TimerKind.COMPENSATION_TIMEOUT, "reserve_inventory", 1)),
    OperatorAbort(),
    OperatorRetry(),
    OperatorResume(),
    SagaTriggered("o-1", ORDER),
]


@pytest.mark.parametrize("event", ANY_EVENT, ids=lambda e: type(e).__name__)
def test_completed_instance_absorbs_every_event(order: Run, event: Event) -> None:
    completed(order)
    before = order.state

    assert_noop(order.send(event), before)


@pytest.mark.parametrize("event", ANY_EVENT, ids=lambda e: type(e).__name__)
def test_compensated_instance_absorbs_every_event(order: Run, event: Event) -> None:
    compensated(order)
    before = order.state

    assert_noop(order.send(event), before)


def test_step_timeout_of_an_older_attempt_is_a_noop(order: Run) -> None:
    order.start()
    order.fire(TimerKind.STEP_TIMEOUT, "reserve_inventory", 1)
    order.fire(TimerKind.STEP_RETRY, "reserve_inventory", 1)
    before = order.state

    assert_noop(order.fire(TimerKind.STEP_TIMEOUT, "reserve_inventory", 1), before)


def test_retry_timer_fired_twice_is_a_noop(order: Run) -> None:
    order.start()
    order.fire(TimerKind.STEP_TIMEOUT, "reserve_inventory", 1)
    order.fire(TimerKind.STEP_RETRY, "reserve_inventory", 1)
    before = order.state

    assert_noop(order.fire(TimerKind.STEP_RETRY, "reserve_inventory", 1), before)


def test_compensation_timeout_of_an_older_attempt_is_a_noop(order: Run) -> None:
    order_compensating(order)
    order.fire(TimerKind.COMPENSATION_TIMEOUT, "charge_payment", 1)
    order.fire(TimerKind.COMPENSATION_RETRY, "charge_payment", 1)
    before = order.state

    assert_noop(order.fire(TimerKind.COMPENSATION_TIMEOUT, "charge_payment", 1), before)


def test_timeout_of_a_step_that_already_succeeded_is_a_noop(order: Run) -> None:
    order.start()
    order.ok("reserve_inventory")
    before = order.state

    assert_noop(order.fire(TimerKind.STEP_TIMEOUT, "reserve_inventory", 1), before)


def test_deadline_after_compensation_began_is_a_noop(order: Run) -> None:
    order_compensating(order)
    before = order.state

    assert_noop(order.fire(TimerKind.DEADLINE), before)


def test_timer_of_an_unknown_step_is_a_noop(order: Run) -> None:
    order.start()
    before = order.state

    assert_noop(order.fire(TimerKind.STEP_TIMEOUT, "no_such_step", 1), before)


def test_reply_of_an_unknown_step_is_a_noop(order: Run) -> None:
    order.start()
    before = order.state

    assert_noop(order.ok("no_such_step"), before)


def test_trigger_on_an_existing_instance_is_a_noop(order: Run) -> None:
    order.start()
    before = order.state

    decision = order.send(SagaTriggered("o-1", {"order_id": "o-1", "total": 1}))

    assert_noop(decision, before)
    assert decision.note == "instance already exists"


@pytest.mark.parametrize(
    "event",
    [StepSucceeded("reserve_inventory"), TimerFired(Timer(TimerKind.DEADLINE)), OperatorRetry()],
    ids=lambda e: type(e).__name__,
)
def test_event_without_an_instance_gives_no_state_and_a_note(
    definitions: dict[str, SagaDefinition], event: Event
) -> None:
    decision = decide(definitions["order-fulfilment"], None, event, T0)

    assert decision == Decision(None, note="no such instance")


def test_internal_error_becomes_a_result_and_keeps_the_state(order: Run) -> None:
    order.start()
    assert order.state is not None
    broken = order.state.model_copy(deep=True)
    broken.steps["ghost"] = StepState(status=StepStatus.ACTIVE)

    decision = decide(order.definition, broken, StepSucceeded("ghost"), order.now)

    assert decision.error is not None
    assert decision.state is broken
    assert decision.commands == []
    assert decision.changed is False


# -- operator actions -------------------------------------------------------------------------


def test_operator_abort_compensates_a_running_instance(order: Run) -> None:
    order_in_flight(order, "charge_payment")

    decision = order.send(OperatorAbort("customer called"))

    assert order.status is Status.COMPENSATING
    assert order.step("charge_payment").status is StepStatus.ABANDONED
    assert order.state is not None
    assert order.state.failure_reason == "customer called"
    assert subjects(decision) == ["inventory.release"]


def test_operator_retry_redrives_the_current_step_with_the_next_attempt(order: Run) -> None:
    order.start()

    decision = order.send(OperatorRetry())

    assert cancelled(decision) == [Timer(TimerKind.STEP_TIMEOUT, "reserve_inventory", 1)]
    assert published(decision)[0].headers[HEADER_ATTEMPT] == "2"
    assert order.step("reserve_inventory").attempt == 2


def test_operator_retry_of_a_step_waiting_to_retry_drives_it_now(order: Run) -> None:
    order.start()
    order.fire(TimerKind.STEP_TIMEOUT, "reserve_inventory", 1)

    decision = order.send(OperatorRetry())

    assert cancelled(decision) == [Timer(TimerKind.STEP_RETRY, "reserve_inventory", 1)]
    assert order.step("reserve_inventory").status is StepStatus.ACTIVE
    assert order.step("reserve_inventory").attempt == 2


GIVEN: dict[str, Callable[[Run], object]] = {
    "running": Run.start,
    "compensating": order_compensating,
    "parked": order_parked,
}


@pytest.mark.parametrize(
    ("given", "event", "note"),
    [
        ("compensating", OperatorAbort(), "cannot abort: instance is compensating"),
        ("parked", OperatorAbort(), "cannot abort: instance is parked"),
        ("running", OperatorResume(), "cannot resume: instance is running, not parked"),
        ("compensating", OperatorResume(), "cannot resume: instance is compensating, not parked"),
        ("compensating", OperatorRetry(), "cannot retry: instance is compensating"),
    ],
)
def test_operator_action_in_the_wrong_state_is_refused_with_a_note(
    order: Run, given: str, event: Event, note: str
) -> None:
    GIVEN[given](order)
    before = order.state

    decision = order.send(event)

    assert_noop(decision, before)
    assert decision.note is not None
    assert decision.note.startswith(note)


def test_operator_retry_of_an_observed_step_is_refused(travel: Run) -> None:
    travel.start(TRIP)
    travel.ok("book_flight", {"booking_ref": "F1"})
    before = travel.state

    decision = travel.send(OperatorRetry())

    assert_noop(decision, before)
    assert decision.note is not None
    assert "observed" in decision.note


# -- messages: ids, headers, payloads ---------------------------------------------------------


def test_msg_ids_are_deterministic(definitions: dict[str, SagaDefinition]) -> None:
    runs = [Run(definitions["order-fulfilment"]) for _ in range(2)]

    ids = [[p.msg_id for p in published(run.start())] for run in runs]

    assert ids[0] == ids[1] == ["order-fulfilment:o-1:reserve_inventory:step:1"]


def test_compensation_msg_id_names_kind_and_attempt(order: Run) -> None:
    order_compensating(order)
    order.fire(TimerKind.COMPENSATION_TIMEOUT, "charge_payment", 1)

    decision = order.fire(TimerKind.COMPENSATION_RETRY, "charge_payment", 1)

    assert published(decision)[0].msg_id == "order-fulfilment:o-1:charge_payment:compensation:2"


def test_step_command_carries_the_saga_headers(order: Run) -> None:
    command = published(order.start())[0]

    assert command.headers == {
        HEADER_SAGA_ID: "o-1",
        HEADER_SAGA_NAME: "order-fulfilment",
        HEADER_STEP: "reserve_inventory",
        HEADER_ATTEMPT: "1",
        HEADER_KIND: "step",
    }


def test_step_payload_is_rendered_from_the_trigger(order: Run) -> None:
    order.start()

    decision = order.ok("reserve_inventory")

    assert published(decision)[0].data == {
        "order_id": "o-1",
        "customer_id": "c-9",
        "amount": 42.5,
        "currency": "EUR",
    }


def test_compensation_payload_uses_the_kept_fields_of_earlier_steps(order: Run) -> None:
    decision = order_in_flight(order, "schedule_shipping").send(StepFailed("schedule_shipping"))

    assert published(decision)[0].data == {"order_id": "o-1", "payment_id": "p-1", "amount": 42.5}


def test_keep_stores_only_the_listed_fields(order: Run) -> None:
    order.start()

    order.ok("reserve_inventory", {"reservation_id": "r-1", "warehouse": "north"})

    assert order.state is not None
    assert order.state.context["steps"]["reserve_inventory"] == {"reservation_id": "r-1"}


def test_without_keep_the_whole_trigger_is_kept(order: Run) -> None:
    order.start()

    assert order.state is not None
    assert order.state.context["trigger"] == ORDER


def test_missing_field_renders_as_null(order: Run) -> None:
    order.start({"order_id": "o-1"})

    decision = order.ok("reserve_inventory", {})

    assert published(decision)[0].data["customer_id"] is None


def test_history_records_the_run(order: Run) -> None:
    completed(order)

    assert order.state is not None
    events = [h.event for h in order.state.history]
    assert events[0] == "saga.started"
    assert events[-1] == "saga.completed"
    assert events.count("step.succeeded") == 3


# -- classify ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("orders.placed", SagaTriggered("o-1", {"reason": "x"})),
        ("inventory.reserved", StepSucceeded("reserve_inventory", {"reason": "x"})),
        ("payment.declined", StepFailed("charge_payment", "x", {"reason": "x"})),
        ("payment.refunded", CompensationSucceeded("charge_payment", {"reason": "x"})),
        ("shipping.scheduled", StepSucceeded("schedule_shipping", {"reason": "x"})),
    ],
)
def test_classify_maps_subjects_to_typed_events(
    definitions: dict[str, SagaDefinition], subject: str, expected: Event
) -> None:
    event = classify(definitions["order-fulfilment"], subject, {"reason": "x"}, "o-1")

    assert event == expected


def test_classify_maps_compensation_failure(shop: Run) -> None:
    event = classify(shop.definition, "stock.release_failed", {"reason": 503}, "s-1")

    assert event == CompensationFailed("reserve", "503")


def test_classify_gives_a_default_failure_reason(definitions: dict[str, SagaDefinition]) -> None:
    event = classify(definitions["order-fulfilment"], "inventory.rejected", {}, "o-1")

    assert event == StepFailed("reserve_inventory", "failed", {})


@pytest.mark.parametrize("subject", ["inventory.reserve", "payment.refund", "unrelated.thing"])
def test_classify_ignores_commands_and_unknown_subjects(
    definitions: dict[str, SagaDefinition], subject: str
) -> None:
    assert classify(definitions["order-fulfilment"], subject, {}, "o-1") is None


# -- timers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "timer",
    [Timer(TimerKind.DEADLINE), Timer(TimerKind.COMPENSATION_RETRY, "charge_payment", 4)],
)
def test_timer_key_round_trips(timer: Timer) -> None:
    assert Timer.from_key(timer.key) == timer


def test_timer_key_refuses_malformed_text() -> None:
    with pytest.raises(ValueError, match="TimerKind"):
        Timer.from_key("sleep._.1")


# -- parallel branches and conditions -----------------------------------------------------


def test_fan_out_starts_both_branches_after_their_common_step(trip: Run) -> None:
    trip.start(TRIP)

    decision = trip.ok("book_flight", {"booking_ref": "F1"})

    assert [c.subject for c in published(decision)] == ["travel.car.rent"]
    assert trip.step("book_hotel").status is StepStatus.ACTIVE  # observed: no command
    assert trip.step("rent_car").status is StepStatus.ACTIVE


def test_saga_completes_when_every_branch_succeeded(trip: Run) -> None:
    trip.start(TRIP)
    trip.ok("book_flight", {"booking_ref": "F1"})
    trip.ok("rent_car", {"rental_ref": "C1"})
    assert trip.state is not None
    assert trip.state.status is Status.RUNNING

    decision = trip.ok("book_hotel", {"reservation_ref": "H1"})

    assert Finished("completed") in decision.commands


def test_a_false_condition_skips_the_step_and_it_is_never_compensated(trip: Run) -> None:
    trip.start({**TRIP, "no_car": True})
    decision = trip.ok("book_flight", {"booking_ref": "F1"})
    assert published(decision) == []
    assert trip.step("rent_car").status is StepStatus.SKIPPED

    trip.send(StepFailed("book_hotel", "hotel-full"))

    assert trip.step("rent_car").compensation is CompensationStatus.NONE
    assert trip.state is not None
    assert trip.state.compensation_queue == ["book_flight"]


def test_a_failed_branch_waits_for_the_other_then_undoes_newest_first(trip: Run) -> None:
    trip.start(TRIP)
    trip.ok("book_flight", {"booking_ref": "F1"})

    waiting = trip.send(StepFailed("rent_car", "no-cars"))

    assert published(waiting) == []  # the hotel is still in flight: nothing undone yet
    assert trip.state is not None
    assert trip.state.status is Status.RUNNING
    decision = trip.ok("book_hotel", {"reservation_ref": "H1"})
    assert [c.subject for c in published(decision)] == ["travel.hotel.cancel"]
    assert trip.state.compensation_queue == ["book_hotel", "book_flight"]
    assert trip.state.failure_step == "rent_car"


def test_abandon_mode_compensates_at_once(definitions: dict[str, SagaDefinition]) -> None:
    trip = Run(
        definitions["travel-booking"].model_copy(update={"branch_failure": "abandon"}),
        saga_id="trip-1",
    )
    trip.start(TRIP)
    trip.ok("book_flight", {"booking_ref": "F1"})

    decision = trip.send(StepFailed("rent_car", "no-cars"))

    assert [c.subject for c in published(decision)] == ["travel.flight.cancel"]
    assert trip.step("book_hotel").status is StepStatus.ABANDONED
    trip.ok("book_hotel", {"reservation_ref": "H1"})  # late: its undo is queued next
    assert trip.state is not None
    assert trip.state.compensation_queue == ["book_flight", "book_hotel"]


def test_a_timed_out_branch_that_succeeds_late_while_waiting_is_undone(trip: Run) -> None:
    trip.start(TRIP)
    trip.ok("book_flight", {"booking_ref": "F1"})
    trip.fire(TimerKind.STEP_TIMEOUT, "book_hotel", 1)  # fails; the car is still in flight

    late = trip.ok("book_hotel", {"reservation_ref": "H1"})
    assert late.changed
    decision = trip.ok("rent_car", {"rental_ref": "C1"})

    assert [c.subject for c in published(decision)] == ["travel.car.return"]
    assert trip.state is not None
    assert trip.state.compensation_queue == ["rent_car", "book_hotel", "book_flight"]
