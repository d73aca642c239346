"""Properties of the one timer slot per instance (``saga.core.wakeup``).

Random definitions (parallel branches included) and random event sequences, driven through
:func:`decide_slotted`; the simulation plays the server's side of the slot: the one
schedule it holds, replaced by each ``ScheduleTimer(WAKE)``, removed by a cancel or when
it fires. Fires come at the slot's time, early (a stale fire of a slot since replaced, or
a clock running ahead) or late (a busy engine). Checked after every decision: the slot
is never lost (while a timer is armed, the server holds a slot at or before the earliest
one); a fire acts on every armed timer that is due, exactly as :func:`decide` does when
those timers fire one by one in due order; a fire with nothing due changes nothing but the
slot; at most one timer command per decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from saga.core import (
    CancelTimer,
    Decision,
    Event,
    InstanceState,
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
from saga.core.wakeup import SLOT, decide_slotted
from saga.definition import SagaDefinition
from tests.unit.test_core_properties import QUIET, SETTLED, T0, Sim, definitions

WAKE = TimerFired(SLOT)


def comparable(state: InstanceState | None) -> dict[str, object] | None:
    """What the slot must not change: everything but its own bookkeeping."""
    if state is None:
        return None
    return state.model_dump(exclude={"timers", "wake_at", "updated_at"})


@dataclass
class SlotSim:
    definition: SagaDefinition
    state: InstanceState | None = None
    now: datetime = T0
    slot: datetime | None = None
    """The slot the server holds (None: none)."""
    decisions: list[Decision] = field(default_factory=list)

    def deliver(self, event: Event) -> Decision:
        before = self.state
        snapshot = before.model_dump() if before is not None else None
        decision = decide_slotted(self.definition, before, event, self.now)
        assert (before.model_dump() if before is not None else None) == snapshot
        assert decision.error is None, decision.error
        if decision.changed:
            self.carry_out(decision)
            self.state = decision.state
        self.check()
        return decision

    def carry_out(self, decision: Decision) -> None:
        timers = [c for c in decision.commands if isinstance(c, ScheduleTimer | CancelTimer)]
        assert len(timers) <= 1, f"more than one timer command: {timers}"
        for command in timers:
            assert command.timer == SLOT, f"a timer outside the slot: {command}"
            self.slot = command.fire_at if isinstance(command, ScheduleTimer) else None

    def check(self) -> None:
        """No wake-up is lost: every armed timer is covered by the slot the server holds."""
        state = self.state
        assert state is not None
        assert state.timers is not None
        if state.status.terminal:
            assert state.timers == {}
        if state.timers:
            assert self.slot is not None, "timers armed but no slot set"
            assert self.slot <= min(state.timers.values()), "the slot fires too late"
            assert state.wake_at == self.slot

    def fire_slot(self, late_ms: int = 0) -> Decision:
        """The server fires the slot it holds (and forgets it)."""
        assert self.slot is not None
        self.now = max(self.now, self.slot + timedelta(milliseconds=late_ms))
        self.slot = None
        return self.fire()

    def fire(self) -> Decision:
        """A slot fire now, checked against firing each due timer alone, in due order."""
        before = self.state
        assert before is not None
        assert before.timers is not None
        due = sorted((at, key) for key, at in before.timers.items() if at <= self.now)
        expected: InstanceState = before
        for _, key in due:
            if expected.status.terminal:
                break
            alone = decide(self.definition, expected, TimerFired(Timer.from_key(key)), self.now)
            assert alone.error is None
            if alone.changed and alone.state is not None:
                expected = alone.state
        decision = self.deliver(WAKE)
        after = self.state
        assert after is not None
        assert after.timers is not None
        assert comparable(after) == comparable(expected), "the slot fire acted differently"
        if after.timers:
            assert min(after.timers.values()) > self.now, "a due timer was left for later"
        if not due:
            assert comparable(after) == comparable(before), "a fire with nothing due acted"
            assert after.timers == before.timers
        return decision


def play_slotted(definition: SagaDefinition, data: st.DataObject) -> SlotSim:
    sim = SlotSim(definition)
    sim.deliver(SagaTriggered("id-1", {"x": 1}))
    replies = Sim(definition).any_reply()
    for _ in range(data.draw(st.integers(3, 40), label="events")):
        assert sim.state is not None
        if sim.state.status.terminal:
            break
        choice = data.draw(st.sampled_from(["reply", "slot", "early", "late"]), label="kind")
        sim.now += timedelta(milliseconds=data.draw(st.integers(0, 3000), label="after ms"))
        if choice == "reply":
            sim.deliver(data.draw(replies, label="reply"))
        elif choice == "early" or sim.slot is None:
            sim.fire()  # a stale or early fire: the server's slot stays
        else:
            sim.fire_slot(
                late_ms=data.draw(st.integers(0, 5000), label="late ms") * (choice == "late")
            )
    return sim


@settings(max_examples=300, deadline=None, suppress_health_check=QUIET)
@given(definition=definitions(), data=st.data())
def test_every_due_timer_is_acted_on_at_the_next_wake_up_and_none_is_lost(
    definition: SagaDefinition, data: st.DataObject
) -> None:
    play_slotted(definition, data)


@settings(max_examples=200, deadline=None, suppress_health_check=QUIET)
@given(definition=definitions(live=True), data=st.data())
def test_without_replies_a_live_saga_settles_by_its_slot_alone(
    definition: SagaDefinition, data: st.DataObject
) -> None:
    sim = play_slotted(definition, data)

    for _ in range(500):  # only the server's slot wakes it from here on
        if sim.slot is None:
            break
        sim.fire_slot()

    assert sim.state is not None
    assert sim.slot is None or sim.state.status.terminal
    assert sim.state.status in SETTLED, sim.state.status


def test_parallel_branches_share_one_slot_at_the_earliest_timeout() -> None:
    definition = SagaDefinition.model_validate(
        {
            "name": "par",
            "trigger": {"event": "go"},
            "steps": [
                {"name": "a", "publish": {"event": "a.do"}, "success": "a.ok", "timeout": "5s"},
                {
                    "name": "b",
                    "after": [],
                    "publish": {"event": "b.do"},
                    "success": "b.ok",
                    "timeout": "1s",
                },
                {"name": "c", "after": ["a", "b"], "success": "c.ok", "timeout": "30s"},
            ],
        }
    )
    sim = SlotSim(definition)

    started = sim.deliver(SagaTriggered("id-1", {}))

    assert [c for c in started.commands if isinstance(c, ScheduleTimer)] == [
        ScheduleTimer(SLOT, T0 + timedelta(seconds=1))
    ]
    assert sim.state is not None
    assert sim.state.timers is not None
    assert set(sim.state.timers) == {"step-timeout.a.1", "step-timeout.b.1"}
    # b times out at 1 s: the saga compensates, a's timeout (5 s) is given up with it
    sim.fire_slot()
    assert sim.state.steps["b"].status is StepStatus.TIMED_OUT
    assert sim.state.status is not Status.RUNNING or sim.slot == T0 + timedelta(seconds=5)


ONE_STEP = SagaDefinition.model_validate(
    {
        "name": "one",
        "trigger": {"event": "go"},
        "steps": [{"name": "a", "publish": {"event": "a.do"}, "success": "a.ok", "timeout": "5s"}],
    }
)
"""One step with a 5 s timeout."""


def test_a_fire_with_nothing_due_changes_nothing() -> None:
    sim = SlotSim(ONE_STEP)
    sim.deliver(SagaTriggered("id-1", {}))
    before = sim.state

    decision = sim.fire()  # a stale fire long before the slot

    assert not decision.changed
    assert decision.commands == []
    assert sim.state == before


def test_a_slot_firing_before_its_timers_by_our_clock_is_set_again() -> None:
    sim = SlotSim(ONE_STEP)
    sim.deliver(SagaTriggered("id-1", {}))
    sim.now = T0 + timedelta(seconds=5) - timedelta(milliseconds=3)  # the server runs ahead
    sim.slot = None

    decision = sim.fire()

    assert decision.commands == [ScheduleTimer(SLOT, T0 + timedelta(seconds=5))]
    assert sim.slot == T0 + timedelta(seconds=5)
    assert sim.state is not None
    assert sim.state.steps["a"].status is StepStatus.ACTIVE


def test_a_three_step_saga_writes_two_timer_messages() -> None:
    """Was eight: each step's timeout scheduled and cancelled, and the deadline."""
    definition = SagaDefinition.model_validate(
        {
            "name": "three",
            "trigger": {"event": "go"},
            "deadline": "1m",
            "steps": [
                {"name": n, "publish": {"event": f"{n}.do"}, "success": f"{n}.ok", "timeout": "5s"}
                for n in ("a", "b", "c")
            ],
        }
    )
    sim = SlotSim(definition)
    decisions = [sim.deliver(SagaTriggered("id-1", {}))]
    for n in ("a", "b", "c"):
        sim.now += timedelta(milliseconds=20)
        decisions.append(sim.deliver(_ok(n)))

    timer_commands = [
        c for d in decisions for c in d.commands if isinstance(c, ScheduleTimer | CancelTimer)
    ]
    assert timer_commands == [ScheduleTimer(SLOT, T0 + timedelta(seconds=5)), CancelTimer(SLOT)]
    assert sim.state is not None
    assert sim.state.status is Status.COMPLETED


def _ok(step: str) -> Event:
    return StepSucceeded(step, {})


def test_an_instance_from_before_the_slot_keeps_its_timers_one_by_one() -> None:
    definition = SagaDefinition.model_validate(
        {
            "name": "one",
            "trigger": {"event": "go"},
            "steps": [
                {"name": "a", "publish": {"event": "a.do"}, "success": "a.ok", "timeout": "5s"}
            ],
        }
    )
    legacy = decide(definition, None, SagaTriggered("id-1", {}), T0).state
    assert legacy is not None
    assert legacy.timers is None

    decision = decide_slotted(definition, legacy, _ok("a"), T0 + timedelta(seconds=1))

    assert CancelTimer(Timer(TimerKind.STEP_TIMEOUT, "a", 1)) in decision.commands
    assert decision.state is not None
    assert decision.state.timers is None
