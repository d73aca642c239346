"""A reply answers one attempt: a failure of an older attempt is not charged to the newer one.

Found by an outside participant (issue 12, defect 3): with ``retry: {attempts: 2,
on_failure: true}``, attempt 1 timed out and attempt 2 was sent; then attempt 1's
``failure`` arrived and was recorded as "step.failed #2", the saga compensated, and the
attempt-2 success that followed was silently ignored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from saga.core import (
    CompensationFailed,
    Event,
    InstanceState,
    PublishEvent,
    SagaTriggered,
    Status,
    StepFailed,
    StepStatus,
    StepSucceeded,
    Timer,
    TimerFired,
    TimerKind,
    decide,
)
from saga.definition import parse_definition
from saga.engine.intake import Intake, Work
from saga.nats.settle import Term
from saga.participant.envelope import Envelope, reply_headers

SHOP = parse_definition(
    """
name: shop
trigger: {event: shop.ordered, id: {field: id}}
steps:
  - name: reserve
    publish: {event: stock.reserve}
    success: stock.reserved
    compensate: {publish: {event: stock.release}}
  - name: charge
    publish: {event: pay.charge}
    success: pay.charged
    failure: pay.declined
    timeout: 5s
    retry: {attempts: 2, backoff: 1s, on_failure: true}
    compensate:
      publish: {event: pay.refund}
      success: pay.refunded
      failure: pay.refund_failed
      timeout: 5s
      retry: {attempts: 2, backoff: 1s, on_failure: true}
  - name: ship
    publish: {event: ship.go}
    success: ship.done
    failure: ship.failed
"""
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def run(*events: Event, state: InstanceState | None = None) -> InstanceState:
    for i, event in enumerate(events):
        decision = decide(SHOP, state, event, T0 + timedelta(seconds=10 * i))
        assert decision.error is None
        state = decision.state
    assert state is not None
    return state


def attempt_two_sent() -> InstanceState:
    state = run(
        SagaTriggered("o-1", {"id": "o-1"}),
        StepSucceeded("reserve", attempt=1),
        TimerFired(Timer(TimerKind.STEP_TIMEOUT, "charge", 1)),
        TimerFired(Timer(TimerKind.STEP_RETRY, "charge", 1)),
    )
    assert state.steps["charge"].attempt == 2
    assert state.steps["charge"].status is StepStatus.ACTIVE
    return state


def test_a_failure_of_attempt_1_after_attempt_2_was_sent_is_stale_and_attempt_2_wins() -> None:
    sent = attempt_two_sent()

    stale = decide(SHOP, sent, StepFailed("charge", "declined", attempt=1), T0 + timedelta(60))
    assert stale.state is not None
    assert stale.commands == []
    assert stale.state.status is Status.RUNNING
    assert stale.state.steps["charge"].status is StepStatus.ACTIVE
    entry = stale.state.history[-1]
    assert (entry.event, entry.step, entry.attempt) == ("step.stale-failure", "charge", 1)
    again = decide(SHOP, stale.state, StepFailed("charge", "declined", attempt=1), T0)
    assert not again.changed, "a repeated stale failure is recorded once"

    done = run(StepSucceeded("charge", {"payment_id": "p-1"}, attempt=2), state=stale.state)
    assert done.status is Status.RUNNING
    assert done.steps["charge"].status is StepStatus.SUCCEEDED
    assert done.steps["ship"].status is StepStatus.ACTIVE


def test_a_failure_of_the_current_attempt_still_fails_the_step() -> None:
    failed = run(StepFailed("charge", "declined", attempt=2), state=attempt_two_sent())
    assert failed.status is Status.COMPENSATED
    assert failed.steps["charge"].status is StepStatus.FAILED


def test_a_failure_without_an_attempt_is_charged_to_the_current_one_as_before() -> None:
    failed = run(StepFailed("charge", "declined"), state=attempt_two_sent())
    assert failed.steps["charge"].status is StepStatus.FAILED


def test_a_success_of_an_older_attempt_wins_while_the_step_is_in_flight() -> None:
    done = run(StepSucceeded("charge", attempt=1), state=attempt_two_sent())
    assert done.steps["charge"].status is StepStatus.SUCCEEDED
    assert done.steps["ship"].status is StepStatus.ACTIVE


def test_a_success_of_an_older_attempt_after_the_newer_one_failed_is_undone() -> None:
    """Attempt 1 timed out but did take effect; attempt 2 was declined. The charge of
    attempt 1 must be refunded, not ignored."""
    failed = run(StepFailed("charge", "declined", attempt=2), state=attempt_two_sent())
    assert failed.status is Status.COMPENSATED  # the reserve's undo needs no confirmation
    late = decide(SHOP, failed, StepSucceeded("charge", {"payment_id": "p-1"}, attempt=1), T0)
    assert late.state is not None
    assert late.state.status is Status.COMPENSATING
    assert late.state.steps["charge"].status is StepStatus.SUCCEEDED
    assert [c.subject for c in late.commands if isinstance(c, PublishEvent)] == ["pay.refund"]


def test_a_stale_compensation_failure_is_not_charged_to_the_newer_undo_attempt() -> None:
    refunding = run(
        SagaTriggered("o-4", {"id": "o-4"}),
        StepSucceeded("reserve"),
        StepSucceeded("charge", attempt=1),
        StepFailed("ship", "no courier", attempt=1),
        TimerFired(Timer(TimerKind.COMPENSATION_TIMEOUT, "charge", 1)),
        TimerFired(Timer(TimerKind.COMPENSATION_RETRY, "charge", 1)),
    )
    assert refunding.steps["charge"].compensation_attempt == 2

    stale = run(CompensationFailed("charge", "gateway down", attempt=1), state=refunding)
    assert stale.status is Status.COMPENSATING
    assert stale.history[-1].event == "compensation.stale-failure"
    failed = run(CompensationFailed("charge", "gateway down", attempt=2), state=stale)
    assert failed.status is Status.PARKED


def test_the_engine_reads_saga_attempt_from_the_reply() -> None:
    intake = Intake({"shop": SHOP})
    headers = {"Saga-Id": "o-1", "Saga-Attempt": "1"}
    work = intake.parse("pay.declined", b'{"reason": "no"}', headers, "S", 1)
    assert isinstance(work, Work)
    assert work.event == StepFailed("charge", "no", {"reason": "no"}, attempt=1)
    bad = intake.parse("pay.declined", b"{}", {**headers, "Saga-Attempt": "two"}, "S", 2)
    assert isinstance(bad, Term)
    assert bad.code.value == "malformed"
    assert "Saga-Attempt" in bad.reason


def test_the_sdk_echoes_the_attempt_on_its_reply() -> None:
    envelope = Envelope("o-1", "shop", "charge", "step", 2)
    assert reply_headers(envelope, {})["Saga-Attempt"] == "2"
