"""A step's run timeout can exclude the time its command waits at the participant.

Issue 12, defect 11: 2,000 triggers in 0.4 s left commands queued at the participant
longer than the step's timeout, so 30 % of the sagas were compensated by timeouts while
the participant was healthy, only busy. With ``queue_timeout`` the wait in the queue
has its own bound, and ``timeout`` counts from the participant's start report.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from saga.core import (
    CancelTimer,
    Event,
    InstanceState,
    PublishEvent,
    SagaTriggered,
    ScheduleTimer,
    Status,
    StepFailed,
    StepStarted,
    StepStatus,
    StepSucceeded,
    Timer,
    TimerFired,
    TimerKind,
    classify,
    decide,
)
from saga.definition import SagaDefinition, parse_definition
from saga.engine.intake import Intake, Work
from saga.errors import DefinitionError
from saga.protocol import HEADER_ATTEMPT, HEADER_REPORT_START, STARTED_PREFIX, wants_start_report
from saga.testing import SagaHarness, reply

QUEUED = """
name: signup
trigger: {event: signup.requested, id: {field: id}}
steps:
  - name: create_account
    publish: {event: account.create}
    success: account.created
    timeout: 2s
    queue_timeout: 30s
    retry: {attempts: 2, backoff: 1s}
"""
SIGNUP = parse_definition(QUEUED)
PLAIN = parse_definition(QUEUED.replace("    queue_timeout: 30s\n", ""))
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def play(definition: SagaDefinition, *events: tuple[float, Event]) -> InstanceState:
    state = decide(definition, None, SagaTriggered("u-1", {"id": "u-1"}), T0).state
    for seconds, event in events:
        decision = decide(definition, state, event, at(seconds))
        assert decision.error is None
        state = decision.state
    assert state is not None
    return state


def test_a_command_queued_longer_than_the_run_timeout_still_completes() -> None:
    """Queued 4 s, then 1 s of work: within ``timeout: 2s`` of its start."""
    state = play(
        SIGNUP,
        (4, StepStarted("create_account", 1)),
        (5, StepSucceeded("create_account", {}, 1)),
    )
    assert state.status is Status.COMPLETED


def test_without_queue_timeout_the_same_wait_times_the_step_out() -> None:
    """Today's meaning of ``timeout``: from when the command was sent, queueing included."""
    sent = decide(PLAIN, None, SagaTriggered("u-1", {"id": "u-1"}), T0)
    [timer] = [c for c in sent.commands if isinstance(c, ScheduleTimer)]
    assert timer == ScheduleTimer(Timer(TimerKind.STEP_TIMEOUT, "create_account", 1), at(2))


def test_the_queue_timer_runs_until_the_start_report_then_the_run_timer() -> None:
    sent = decide(SIGNUP, None, SagaTriggered("u-1", {"id": "u-1"}), T0)
    queue = Timer(TimerKind.QUEUE_TIMEOUT, "create_account", 1)
    assert [c for c in sent.commands if isinstance(c, ScheduleTimer)] == [
        ScheduleTimer(queue, at(30))
    ]
    assert sent.state is not None
    started = decide(SIGNUP, sent.state, StepStarted("create_account", 1), at(4))
    assert started.commands == [
        CancelTimer(queue),
        ScheduleTimer(Timer(TimerKind.STEP_TIMEOUT, "create_account", 1), at(6)),
    ]
    assert started.state is not None
    assert started.state.steps["create_account"].running_since == at(4)
    again = decide(SIGNUP, started.state, StepStarted("create_account", 1), at(5))
    assert not again.changed, "a second report (a redelivery) changes nothing"


def test_a_command_never_started_is_retried_then_times_out_in_the_queue() -> None:
    state = play(
        SIGNUP,
        (30, TimerFired(Timer(TimerKind.QUEUE_TIMEOUT, "create_account", 1))),
        (31, TimerFired(Timer(TimerKind.STEP_RETRY, "create_account", 1))),
        (61, TimerFired(Timer(TimerKind.QUEUE_TIMEOUT, "create_account", 2))),
    )
    step = state.steps["create_account"]
    assert step.status is StepStatus.TIMED_OUT
    assert step.reason == "not started in time after 2 attempt(s)"
    assert state.history[-1].event == "saga.compensated"


def test_a_start_report_of_an_older_attempt_is_ignored() -> None:
    state = play(
        SIGNUP,
        (30, TimerFired(Timer(TimerKind.QUEUE_TIMEOUT, "create_account", 1))),
        (31, TimerFired(Timer(TimerKind.STEP_RETRY, "create_account", 1))),
    )
    stale = decide(SIGNUP, state, StepStarted("create_account", 1), at(32))
    assert not stale.changed


def test_the_engine_listens_for_start_reports_of_queued_steps_only() -> None:
    assert "saga.started.signup.create_account" in SIGNUP.subjects.listened
    assert not any(s.startswith("saga.started.") for s in PLAIN.subjects.listened)
    event = classify(SIGNUP, "saga.started.signup.create_account", {}, "u-1", 2)
    assert event == StepStarted("create_account", 2)
    work = Intake({"signup": SIGNUP}).parse(
        "saga.started.signup.create_account",
        b"",
        {"Saga-Id": "u-1", "Saga-Attempt": "1"},
        "SAGA_EVENTS",
        7,
    )
    assert isinstance(work, Work)
    assert work.event == StepStarted("create_account", 1)


def test_an_observed_step_cannot_have_a_queue_timeout() -> None:
    text = """
name: watch
trigger: {event: w.start}
steps:
  - {name: seen, success: w.seen, queue_timeout: 5s}
"""
    with pytest.raises(DefinitionError, match=r"queue_timeout: an observed step has no command"):
        parse_definition(text)


async def test_the_harness_participants_report_starts_as_the_sdk_does() -> None:
    """A scripted participant starts each command at once and says so; its answer 1 s
    later is within the run ``timeout`` of 2 s."""
    h = SagaHarness(SIGNUP)
    h.on("account.create", reply("account.created").after(1))

    result = await h.run({"id": "u-1"})

    assert result.status == "completed"
    assert [m.subject for m in result.messages][:3] == [
        "signup.requested",
        "account.create",
        "saga.started.signup.create_account",
    ]
    assert result.step("create_account").running_since is not None


def commands_of(definition: SagaDefinition, *events: tuple[float, Event]) -> list[PublishEvent]:
    """The publishes decided from the trigger on, through ``events``."""
    decision = decide(definition, None, SagaTriggered("u-1", {"id": "u-1"}), T0)
    sent = [c for c in decision.commands if isinstance(c, PublishEvent)]
    for seconds, event in events:
        decision = decide(definition, decision.state, event, at(seconds))
        sent += [c for c in decision.commands if isinstance(c, PublishEvent)]
    return sent


def test_only_the_commands_of_a_queued_step_ask_for_a_start_report() -> None:
    undoable = QUEUED.replace(
        "    retry: {attempts: 2, backoff: 1s}\n",
        "    compensate: {publish: {event: account.delete}}\n"
        "  - name: welcome\n"
        "    publish: {event: mail.send}\n"
        "    success: mail.sent\n"
        "    failure: mail.failed\n",
    )
    sent = commands_of(
        parse_definition(undoable),
        (1, StepSucceeded("create_account", {}, 1)),
        (2, StepFailed("welcome", attempt=1)),
    )

    asks = {c.subject: wants_start_report(c.headers) for c in sent}
    assert asks == {"account.create": True, "mail.send": False, "account.delete": False}
    create = next(c for c in sent if c.subject == "account.create")
    assert create.headers[HEADER_REPORT_START] == "1"


def test_a_retried_command_asks_again_and_a_plain_step_never() -> None:
    timed_out = TimerFired(Timer(TimerKind.QUEUE_TIMEOUT, "create_account", 1))
    retry = TimerFired(Timer(TimerKind.STEP_RETRY, "create_account", 1))
    sent = commands_of(SIGNUP, (30, timed_out), (31, retry))
    assert [c.headers[HEADER_ATTEMPT] for c in sent] == ["1", "2"]
    assert all(wants_start_report(c.headers) for c in sent)

    assert not any(wants_start_report(c.headers) for c in commands_of(PLAIN))


async def test_the_harness_participants_report_no_start_unasked() -> None:
    h = SagaHarness(PLAIN)
    h.on("account.create", reply("account.created").after(1))

    result = await h.run({"id": "u-1"})

    assert result.status == "completed"
    assert not [m for m in result.messages if m.subject.startswith(STARTED_PREFIX)]
