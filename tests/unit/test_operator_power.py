"""Terminate and redrive in the pure core, property-tested on the random sagas of
``test_core_properties`` (any definition, any history of replies and timers)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from saga.core import (
    CancelTimer,
    CompensationFailed,
    CompensationStatus,
    Finished,
    OperatorRedrive,
    OperatorTerminate,
    PublishEvent,
    SagaTriggered,
    ScheduleTimer,
    Status,
    StepStatus,
    StepSucceeded,
    Timer,
    TimerFired,
    TimerKind,
    decide,
)
from saga.core.decide import REDRIVABLE, STANDING
from saga.definition import SagaDefinition
from saga.protocol import HEADER_RUN
from tests.unit.test_core_properties import QUIET, Sim, definitions, play


@settings(max_examples=100, deadline=None, suppress_health_check=QUIET)
@given(definition=definitions(), data=st.data())
def test_terminate_ends_any_unfinished_saga_without_compensating(
    definition: SagaDefinition, data: st.DataObject
) -> None:
    sim = play(definition, data, {"x": 1})
    before = sim.state
    assert before is not None
    decision = decide(definition, before, OperatorTerminate("stuck", "cli:alice"), sim.now)

    assert decision.error is None
    if before.status.terminal:
        assert not decision.changed
        assert decision.note
        assert decision.note.startswith("cannot terminate")
        return
    after = decision.state
    assert after is not None
    assert after.status is Status.TERMINATED
    assert after.finished_at
    assert not [c for c in decision.commands if isinstance(c, PublishEvent | ScheduleTimer)]
    assert [c.status for c in decision.commands if isinstance(c, Finished)] == ["terminated"]
    sim.apply_timers(decision)
    assert not sim.pending, f"timers left running: {sim.pending}"
    entry = after.history[-2]
    assert (entry.event, entry.detail, entry.actor) == ("operator.terminate", "stuck", "cli:alice")
    assert all(
        s.status not in (StepStatus.ACTIVE, StepStatus.RETRY_WAIT) for s in after.steps.values()
    )
    # what the steps did stays: no undo is sent, an undo in flight counts as not done
    assert after.compensation_queue == []
    for name, s in after.steps.items():
        was = before.steps[name].compensation
        assert s.compensation is was or (
            name == before.compensation_queue[0] and s.compensation is CompensationStatus.FAILED
        )


@settings(max_examples=100, deadline=None, suppress_health_check=QUIET)
@given(definition=definitions(), data=st.data(), terminate=st.booleans())
def test_redrive_runs_again_from_the_failed_step_with_the_same_data(
    definition: SagaDefinition, data: st.DataObject, terminate: bool
) -> None:
    sim = play(definition, data, {"x": 1, "y": "two"})
    state = sim.state
    assert state is not None
    if terminate and not state.status.terminal:
        state = decide(definition, state, OperatorTerminate(), sim.now).state
        assert state is not None
    now = sim.now + timedelta(seconds=5)
    decision = decide(definition, state, OperatorRedrive("fixed", "cli:bob"), now)

    assert decision.error is None
    if state.status not in REDRIVABLE:
        assert not decision.changed
        assert decision.note
        assert "cannot redrive" in decision.note
        return
    after = decision.state
    assert after is not None
    assert decision.changed
    assert after.run == state.run + 1
    assert after.context["trigger"] == state.context["trigger"]
    assert after.status in (Status.RUNNING, Status.COMPLETED) or after.failure_reason
    redrive = next(h for h in after.history if h.event == "operator.redrive")
    assert (redrive.actor, redrive.step) == ("cli:bob", state.failure_step)
    for name, s in state.steps.items():
        stands = s.status is StepStatus.SUCCEEDED and s.compensation in STANDING
        if stands:  # its effect is still there: it is not run again
            assert after.steps[name].status is StepStatus.SUCCEEDED
    for command in decision.commands:
        if isinstance(command, PublishEvent):  # a new run: participants handle it afresh
            assert command.headers[HEADER_RUN] == str(after.run)
            assert f":run{after.run}:" in command.msg_id
            assert command.msg_id not in sim.msg_ids
        assert not isinstance(command, CancelTimer)


@settings(max_examples=50, deadline=None, suppress_health_check=QUIET)
@given(definition=definitions(live=True), data=st.data())
def test_a_redriven_saga_settles_again(definition: SagaDefinition, data: st.DataObject) -> None:
    """With nobody answering, a redriven run ends (compensated, parked or completed) like any."""
    sim = play(definition, data, {"x": 1})
    sim.quiesce()
    state = sim.state
    assert state is not None
    if state.status not in REDRIVABLE:
        return
    decision = decide(definition, state, OperatorRedrive(), sim.now)
    assert decision.changed
    assert decision.state is not None
    sim.state = decision.state
    sim.pending = {c.timer: c.fire_at for c in decision.commands if isinstance(c, ScheduleTimer)}
    sim.msg_ids = set()
    sim.commanded, sim.accepted_ok, sim.undone = set(), set(), []
    for _ in range(500):
        if not sim.pending:
            break
        timer = min(sim.pending, key=lambda t: (sim.pending[t], t.key))
        d = decide(definition, sim.state, TimerFired(timer), sim.pending.pop(timer))
        assert d.error is None
        assert d.state is not None
        sim.state = d.state
        sim.apply_timers(d)
    assert (
        sim.state.status is not Status.COMPENSATING
        or not sim.state.compensation_queue
        or (
            definition.step(sim.state.compensation_queue[0]).compensate.timeout is None  # type: ignore[union-attr]
        )
    )


def test_a_redriven_run_that_fails_at_once_arms_no_deadline() -> None:
    """Found by hypothesis: a parked saga whose last step had answered late is redriven; the
    new run completes at once, so its deadline was scheduled and cancelled in one transition.
    The decision must carry neither (a timer the new run never armed)."""
    definition = SagaDefinition.model_validate(
        {
            "name": "prop",
            "trigger": {"event": "prop.start"},
            "deadline": "10s",
            "steps": [
                {"name": "s0", "success": "s0.ok"},
                {"name": "s1", "success": "s1.ok", "when": "trigger.x"},
                {
                    "name": "s2",
                    "success": "s2.ok",
                    "compensate": {
                        "publish": {"event": "s2.undo"},
                        "success": "s2.undone",
                        "failure": "s2.undo_failed",
                    },
                },
                {"name": "s3", "success": "s3.ok", "timeout": "100ms", "when": "trigger.x"},
            ],
        }
    )
    sim = Sim(definition)
    sim.deliver(SagaTriggered("id-1", {"x": 1, "y": "two"}))
    for step in ("s0", "s1", "s2"):
        sim.deliver(StepSucceeded(step, {"v": 1}))
    sim.deliver(TimerFired(Timer(TimerKind.DEADLINE)))
    for _ in range(3):
        sim.deliver(CompensationFailed("s2", "no", attempt=1))
    sim.deliver(StepSucceeded("s3", {"v": 0}))
    assert sim.state is not None
    assert sim.state.status in REDRIVABLE

    decision = decide(definition, sim.state, OperatorRedrive(), sim.now + timedelta(seconds=5))

    assert decision.changed
    assert decision.state is not None
    assert decision.state.status is Status.COMPLETED
    timers = [c for c in decision.commands if isinstance(c, ScheduleTimer | CancelTimer)]
    assert not [c for c in timers if c.timer.kind is TimerKind.DEADLINE]
