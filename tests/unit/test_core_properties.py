"""Properties of ``decide`` over random valid definitions and random event sequences.

Each example builds a definition (1-5 steps, driven or observed, with or without timeout,
retry, compensation, confirmation and deadline), starts one instance and feeds it random
events: replies to random steps (early, late, stray, duplicated), compensation outcomes,
timers (the ones scheduled now, and stale ones that were fired or cancelled before), operator
actions, and repeats of the previous event. The simulation plays the adapters: it keeps the
pending timers from ``ScheduleTimer`` / ``CancelTimer`` and moves a clock that never goes back.
After every event the invariants of the state machine are checked (see :class:`Sim`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    Reopened,
    SagaTriggered,
    ScheduleTimer,
    Signal,
    Status,
    StepFailed,
    StepStarted,
    StepStatus,
    StepSucceeded,
    Timer,
    TimerFired,
    TimerKind,
    decide,
)
from saga.core.decide import signalled
from saga.definition import SagaDefinition
from saga.definition.checks import check_definition
from saga.protocol import HEADER_ATTEMPT, HEADER_KIND, HEADER_STEP, KIND_COMPENSATION, KIND_STEP

T0 = datetime(2025, 1, 1, tzinfo=UTC)
FIELDS = ("v", "w")
DURATIONS = ("100ms", "1s", "5s", "30s")
IN_FLIGHT = (StepStatus.ACTIVE, StepStatus.RETRY_WAIT)
NOT_STARTED_OR_GIVEN_UP = (StepStatus.PENDING, StepStatus.ABANDONED, StepStatus.TIMED_OUT)
SETTLED = (Status.COMPLETED, Status.COMPENSATED, Status.PARKED)
AFTER_FINISH = 3
"""Events still sent to a finished instance (each must change nothing)."""
QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
"""Examples are long event sequences by design."""

# -- random valid definitions -----------------------------------------------------------------


@st.composite
def retry_policies(draw: st.DrawFn, needs_on_failure: bool) -> dict[str, Any]:
    """A retry policy; ``needs_on_failure`` when there is no timeout for it to react to."""
    policy: dict[str, Any] = {
        "attempts": draw(st.integers(1, 3)),
        "backoff": draw(st.sampled_from(("100ms", "1s"))),
        "on_failure": needs_on_failure or draw(st.booleans()),
    }
    if draw(st.booleans()):
        policy["multiplier"] = draw(st.sampled_from((1.0, 1.5, 3.0)))
        policy["max_backoff"] = draw(st.sampled_from(("1s", "10s")))
    return policy


@st.composite
def templates(draw: st.DrawFn, readable: list[str]) -> dict[str, str] | None:
    """A payload template reading only what is visible when it is rendered."""
    sources = st.sampled_from(["saga.id", "saga.name", "'literal'", *readable])
    return draw(st.none() | st.dictionaries(st.sampled_from("abcd"), sources, max_size=3))


@st.composite
def compensations(
    draw: st.DrawFn, i: int, readable: list[str], live: bool
) -> dict[str, Any] | None:
    kind = draw(st.sampled_from(["none", "fire-and-forget", "confirmed", "confirmed"]))
    if kind == "none":
        return None
    comp: dict[str, Any] = {"publish": {"event": f"s{i}.undo"}}
    data = draw(templates(readable))
    if data is not None:
        comp["publish"]["data"] = data
    if kind == "fire-and-forget":
        return comp
    comp["success"] = f"s{i}.undone"
    if draw(st.booleans()):
        comp["failure"] = f"s{i}.undo_failed"
    if live or draw(st.booleans()):
        comp["timeout"] = draw(st.sampled_from(DURATIONS))
    if draw(st.booleans()):
        comp["retry"] = draw(retry_policies(needs_on_failure="timeout" not in comp))
    return comp


@st.composite
def steps(
    draw: st.DrawFn, i: int, readable: list[str], needs_timeout: bool, live: bool
) -> dict[str, Any]:
    if draw(st.integers(0, 5)) == 0:  # a durable sleep: ends by its timer alone
        return {"name": f"s{i}", "wait": draw(st.sampled_from(DURATIONS))}
    step: dict[str, Any] = {"name": f"s{i}", "success": f"s{i}.ok"}
    if draw(st.booleans()):
        step["failure"] = [f"s{i}.ko"]
    keep = draw(st.sampled_from([None, ["v"], ["w"], ["v", "w"]]))
    if keep is not None:
        step["keep"] = keep
    if needs_timeout or draw(st.booleans()):
        step["timeout"] = draw(st.sampled_from(DURATIONS))
    if draw(st.booleans()):  # driven
        step["publish"] = {"event": f"s{i}.do"}
        if draw(st.integers(0, 3)) == 0:
            step["queue_timeout"] = draw(st.sampled_from(DURATIONS))
        data = draw(templates(readable))
        if data is not None:
            step["publish"]["data"] = data
        if draw(st.booleans()):
            timed = "timeout" in step or "queue_timeout" in step
            step["retry"] = draw(retry_policies(needs_on_failure=not timed))
    own = [f"steps.s{i}.{f}" for f in (keep or FIELDS)]
    comp = draw(compensations(i, [*readable, *own], live))
    if comp is not None:
        step["compensate"] = comp
    return step


@st.composite
def definitions(draw: st.DrawFn, live: bool = False) -> SagaDefinition:
    """A random definition that the schema and every cross-field check accept.

    ``live``: nothing can wait for ever once replies stop. Every step has a timeout or the
    saga has a deadline, and every confirmed compensation has a timeout. The deadline does
    not bound compensation (it is cancelled when compensation begins), so a confirmed
    compensation without a timeout legitimately waits for its confirmation.
    """
    trigger_keep = draw(st.sampled_from([None, ["x"], ["x", "y"]]))
    trigger: dict[str, Any] = {"event": "prop.start"}
    if trigger_keep is not None:
        trigger["keep"] = trigger_keep
    raw: dict[str, Any] = {"name": "prop", "trigger": trigger, "steps": []}
    if draw(st.booleans()):
        raw["deadline"] = draw(st.sampled_from(("10s", "1m")))
    trigger_fields = [f"trigger.{f}" for f in (trigger_keep or ["x", "y"])]
    fields: dict[str, list[str]] = {}
    ancestors: dict[str, set[str]] = {}
    if draw(st.booleans()):
        raw["branch_failure"] = draw(st.sampled_from(("wait", "abandon")))
    for i in range(draw(st.integers(1, 5))):
        name = f"s{i}"
        after = draw(
            st.none() | st.lists(st.sampled_from(sorted(fields)), unique=True)
            if fields
            else st.none()
        )
        deps = after if after is not None else ([f"s{i - 1}"] if i else [])
        ancestors[name] = set(deps).union(*(ancestors[d] for d in deps))
        readable = trigger_fields + [f for a in sorted(ancestors[name]) for f in fields[a]]
        needs_timeout = live and "deadline" not in raw
        step = draw(steps(i, readable, needs_timeout, live))
        if after is not None:
            step["after"] = after
        if draw(st.integers(0, 3)) == 0:
            step["when"] = draw(st.sampled_from(("trigger.x", "`true`", "`false`")))
        raw["steps"].append(step)
        fields[name] = [f"steps.{name}.{f}" for f in step.get("keep", FIELDS)]
    definition = SagaDefinition.model_validate(raw)
    assert check_definition(definition) == []
    return definition


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
payloads = st.fixed_dictionaries(
    {"v": st.integers(0, 99)}, optional={"w": json_values, "extra": json_values}
)
trigger_payloads = st.fixed_dictionaries(
    {"x": json_values}, optional={"y": json_values, "z": st.text()}
)

# -- the simulation -----------------------------------------------------------------------------


def allowed_attempts(policy_attempts: int | None, operator_retries: int) -> int:
    return (policy_attempts or 1) + operator_retries


@dataclass
class Sim:
    """One instance, the adapters around it, and the record the invariants are checked on.

    After every event: no error; a finished instance absorbs it; a no-op has a note, no
    commands and the same state; a fired-before, cancelled or older-attempt timer and a
    repeat of the previous event are no-ops (an operator retry of a running step excepted);
    each msg id is published once; no step command after compensation began; attempts stay
    within the retry policy plus operator retries; an undo is published only for a step
    whose success was taken, whose command was sent (if driven), after every newer step's
    undo (a late success is newer than all); the pending timers are exactly those the state
    waits on; ``completed`` only grows; finished/parked commands match the status.
    """

    definition: SagaDefinition
    state: InstanceState | None = None
    now: datetime = T0
    pending: dict[Timer, datetime] = field(default_factory=dict)
    """Timers scheduled and neither fired nor cancelled."""
    gone: set[Timer] = field(default_factory=set)
    """Timers once scheduled, then fired or cancelled: firing them again must change nothing."""
    msg_ids: set[str] = field(default_factory=set)
    commanded: set[str] = field(default_factory=set)
    """Steps whose forward command was published."""
    accepted_ok: set[str] = field(default_factory=set)
    """Steps whose success reply changed the instance: applied, held as early, or late."""
    undone: list[str] = field(default_factory=list)
    """Steps whose compensation was published (first attempt), in order."""
    operator_retries: int = 0
    last: Event | None = None

    # -- driving ----------------------------------------------------------------------------

    def deliver(self, event: Event, after_ms: int = 0) -> Decision:
        self.now += timedelta(milliseconds=after_ms)
        stale = isinstance(event, TimerFired) and event.timer not in self.pending
        if isinstance(event, TimerFired) and not stale:
            self.now = max(self.now, self.pending.pop(event.timer))
            self.gone.add(event.timer)
        if isinstance(event, OperatorRetry):
            self.operator_retries += 1
        before = self.state
        snapshot = before.model_dump() if before is not None else None
        decision = decide(self.definition, before, event, self.now)
        assert (before.model_dump() if before is not None else None) == snapshot, (
            "decide changed its input"
        )
        if isinstance(event, StepSucceeded) and decision.changed:
            self.accepted_ok.add(event.step)
        answer = signalled(self.definition, event) if isinstance(event, Signal) else None
        if isinstance(answer, StepSucceeded) and decision.changed:
            self.accepted_ok.add(answer.step)
        self.check(before, event, decision)
        self.check_stale(before, event, decision)
        assert not (stale and decision.changed), f"stale {event} changed the instance"
        self.state, self.last = decision.state, event
        return decision

    def repeat_last(self, after_ms: int) -> None:
        assert self.last is not None
        assert self.state is not None
        operator_redrive = (
            isinstance(self.last, OperatorRetry) and self.state.status is Status.RUNNING
        )
        decision = self.deliver(self.last, after_ms)
        if not operator_redrive:  # an operator retry is a new request each time, not a duplicate
            assert not decision.changed, f"duplicate {self.last} changed the instance"

    def quiesce(self) -> None:
        """No more replies: fire every pending timer in fire order until none is left."""
        for _ in range(500):
            if not self.pending:
                return
            timer = min(self.pending, key=lambda t: (self.pending[t], t.key))
            self.deliver(TimerFired(timer))
        raise AssertionError("timers kept being scheduled: no quiescence after 500 firings")

    # -- invariants -------------------------------------------------------------------------

    def check(self, before: InstanceState | None, event: Event, decision: Decision) -> None:
        assert decision.error is None, decision.error
        assert decision.state is not None
        if before is not None and before.status.terminal and decision.changed:
            # The one exception: a compensated saga hears that a step it gave up on
            # succeeded after all, and reopens to undo just that step.
            assert before.status is Status.COMPENSATED, "a completed instance absorbs every event"
            assert isinstance(event, StepSucceeded), "a finished instance absorbs every event"
            step = self.definition.step(event.step)
            assert step.compensate is not None
            assert before.steps[event.step].status in (
                StepStatus.TIMED_OUT,
                StepStatus.ABANDONED,
                StepStatus.PENDING,
                StepStatus.FAILED,  # at a later attempt than the one this success answers
            )
            assert decision.state.compensation_queue[:1] == [event.step] or (
                decision.state.status is Status.COMPENSATED
            )
        if not decision.changed:
            assert decision.note, "a no-op says why"
            assert decision.commands == [], decision.commands
            assert decision.state == before
            return
        self.check_commands(before, decision)
        self.apply_timers(decision)
        self.check_state(before, decision.state, decision)
        self.check_timers(decision.state)

    def check_stale(self, before: InstanceState | None, event: Event, decision: Decision) -> None:
        """A failure of an older attempt than the current one changes no status: it says
        nothing about the newer attempt (at most it is recorded in the history)."""
        if before is None or decision.state is None:
            return
        if isinstance(event, StepFailed) and event.attempt is not None:
            old, new = before.steps[event.step], decision.state.steps[event.step]
            if event.attempt < old.attempt:
                assert new.status is old.status, f"stale {event} changed the step"
                assert decision.state.status is before.status, f"stale {event} moved the saga"
                assert decision.commands == []
        started = isinstance(event, StepStarted) and event.attempt is not None
        if started and event.attempt < before.steps[event.step].attempt:
            assert not decision.changed, f"stale {event} changed the instance"
        if isinstance(event, CompensationFailed) and event.attempt is not None:
            old, new = before.steps[event.step], decision.state.steps[event.step]
            if event.attempt < old.compensation_attempt:
                assert new.compensation is old.compensation, f"stale {event} changed the undo"
                assert decision.state.status is before.status, f"stale {event} moved the saga"
                assert decision.commands == []

    def check_commands(self, before: InstanceState | None, decision: Decision) -> None:
        assert decision.state is not None
        began = before is not None and before.status is not Status.RUNNING
        for command in decision.commands:
            if isinstance(command, ScheduleTimer):
                assert command.fire_at > self.now
            if not isinstance(command, PublishEvent):
                continue
            step = self.definition.step(command.headers[HEADER_STEP])
            attempt = int(command.headers[HEADER_ATTEMPT])
            kind = command.headers[HEADER_KIND]
            assert command.msg_id == f"prop:id-1:{step.name}:{kind}:{attempt}"
            assert command.msg_id not in self.msg_ids, f"{command.msg_id} published twice"
            self.msg_ids.add(command.msg_id)
            if kind == KIND_STEP:
                assert not began, f"step command {command.msg_id} after compensation began"
                assert step.publish is not None
                assert command.subject == step.publish.event
                policy = step.retry.attempts if step.retry else None
                assert attempt <= allowed_attempts(policy, self.operator_retries)
                self.commanded.add(step.name)
            else:
                assert kind == KIND_COMPENSATION
                began = True
                self.check_undo(step.name, attempt, decision.state)

    def check_undo(self, name: str, attempt: int, state: InstanceState) -> None:
        step = self.definition.step(name)
        assert step.compensate is not None
        assert state.status is not Status.RUNNING
        assert name in self.accepted_ok, f"undo of {name} that never succeeded"
        assert step.publish is None or name in self.commanded, f"undo of uncommanded {name}"
        assert state.steps[name].status is StepStatus.SUCCEEDED
        retry = step.compensate.retry
        assert attempt <= allowed_attempts(retry.attempts if retry else None, self.operator_retries)
        if attempt > 1:
            assert name in self.undone
            return
        assert name not in self.undone, f"compensation of {name} started twice"
        newer = state.completed[state.completed.index(name) + 1 :]
        for other in newer:
            if self.definition.step(other).compensate is not None:
                assert other in self.undone, f"{name} undone before newer {other}"
        self.undone.append(name)

    def apply_timers(self, decision: Decision) -> None:
        for command in decision.commands:
            if isinstance(command, ScheduleTimer):
                self.pending[command.timer] = command.fire_at
                self.gone.discard(command.timer)
            elif isinstance(command, CancelTimer) and command.timer in self.pending:
                del self.pending[command.timer]
                self.gone.add(command.timer)

    def check_state(
        self, before: InstanceState | None, after: InstanceState, decision: Decision
    ) -> None:
        old = before.completed if before else []
        assert after.completed[: len(old)] == old, "completed is append-only"
        succeeded = [n for n, s in after.steps.items() if s.status is StepStatus.SUCCEEDED]
        assert sorted(after.completed) == sorted(succeeded)
        assert len(set(after.compensation_queue)) == len(after.compensation_queue)
        assert set(after.compensation_queue) <= set(after.completed)
        if before is not None and before.status is not Status.RUNNING:
            assert after.status is not Status.RUNNING, "an instance never goes back to running"
        finished = [c.status for c in decision.commands if isinstance(c, Finished)]
        again = after.status is Status.COMPENSATED and after.reopened  # announced once
        assert finished == ([after.status.value] if after.status.terminal and not again else [])
        reopened = [c for c in decision.commands if isinstance(c, Reopened)]
        assert len(reopened) == (before is not None and before.status is Status.COMPENSATED)
        parked = [c for c in decision.commands if isinstance(c, Parked)]
        newly_parked = before is not None and before.status is not Status.PARKED
        assert len(parked) == (after.status is Status.PARKED and newly_parked)
        {
            Status.RUNNING: self.check_running,
            Status.COMPENSATING: self.check_compensating,
            Status.PARKED: self.check_parked,
            Status.COMPLETED: self.check_completed,
            Status.COMPENSATED: self.check_compensated,
        }[after.status](after)

    def check_running(self, state: InstanceState) -> None:
        """Steps start only after their dependencies; none that could start is left pending;
        after a failure (waiting for parallel steps) something is still in flight."""
        done = (StepStatus.SUCCEEDED, StepStatus.SKIPPED)
        failing = state.failure_reason is not None
        in_flight = [n for n, s in state.steps.items() if s.status in IN_FLIGHT]
        for step in self.definition.steps:
            s = state.steps[step.name]
            ready = all(
                state.steps[d].status in done for d in self.definition.dependencies(step.name)
            )
            # An observed step's service may act on its own: while failing, its unasked-for
            # success is recorded (to be undone with the others) whatever its dependencies.
            late = any(
                h.event == "step.late-success" and h.step == step.name for h in state.history
            )
            if s.status is not StepStatus.PENDING and not (failing and late and not step.driven):
                assert ready, f"{step.name} ran before its dependencies"
            elif not failing:
                assert not ready, f"{step.name} could start but is still pending"
            if s.status is StepStatus.SKIPPED:
                assert step.when is not None
        assert in_flight or not failing, "failing with nothing in flight"
        if failing:
            assert self.definition.branch_failure == "wait"
        assert state.compensation_queue == []

    def check_compensating(self, state: InstanceState) -> None:
        assert state.compensation_queue, "compensating with nothing to compensate"
        current = state.steps[state.compensation_queue[0]].compensation
        assert current in (CompensationStatus.ACTIVE, CompensationStatus.RETRY_WAIT)
        assert not any(s.status in IN_FLIGHT for s in state.steps.values())

    def check_parked(self, state: InstanceState) -> None:
        assert state.compensation_queue
        current = state.steps[state.compensation_queue[0]].compensation
        assert current is CompensationStatus.FAILED

    def check_completed(self, state: InstanceState) -> None:
        ran = [
            s.name
            for s in self.definition.steps
            if state.steps[s.name].status is not StepStatus.SKIPPED
        ]
        assert sorted(state.completed) == sorted(ran)
        assert all(
            state.steps[n].status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED) for n in state.steps
        )
        assert self.undone == []

    def check_compensated(self, state: InstanceState) -> None:
        """Every success the instance took note of (even early or late) has been undone."""
        assert state.compensation_queue == []
        for name in sorted(self.accepted_ok | set(state.completed)):
            if self.definition.step(name).compensate is not None:
                done = (CompensationStatus.DONE, CompensationStatus.RESOLVED)
                assert state.steps[name].compensation in done, f"{name} was never undone"

    def check_timers(self, state: InstanceState) -> None:
        """The pending timers are exactly the ones the state waits on."""
        assert set(self.pending) == set(self.expected_timers(state))

    def expected_timers(self, state: InstanceState) -> list[Timer]:
        if state.status is Status.RUNNING:
            timers = [Timer(TimerKind.DEADLINE)] if self.definition.deadline else []
            for step in self.definition.steps:
                s = state.steps[step.name]
                queued = step.queue_timeout is not None and s.running_since is None
                if s.status is StepStatus.ACTIVE and step.wait is not None:
                    timers.append(Timer(TimerKind.WAIT, step.name, s.attempt))
                elif s.status is StepStatus.ACTIVE and step.driven and queued:
                    timers.append(Timer(TimerKind.QUEUE_TIMEOUT, step.name, s.attempt))
                elif s.status is StepStatus.ACTIVE and step.timeout is not None:
                    timers.append(Timer(TimerKind.STEP_TIMEOUT, step.name, s.attempt))
                if s.status is StepStatus.RETRY_WAIT:
                    timers.append(Timer(TimerKind.STEP_RETRY, step.name, s.attempt))
            return timers
        if state.status is Status.COMPENSATING:
            name = state.compensation_queue[0]
            s, comp = state.steps[name], self.definition.step(name).compensate
            assert comp is not None
            if s.compensation is CompensationStatus.ACTIVE and comp.timeout is not None:
                return [Timer(TimerKind.COMPENSATION_TIMEOUT, name, s.compensation_attempt)]
            if s.compensation is CompensationStatus.RETRY_WAIT:
                return [Timer(TimerKind.COMPENSATION_RETRY, name, s.compensation_attempt)]
        return []

    # -- what may happen next ---------------------------------------------------------------

    def events(self) -> st.SearchStrategy[Event | None]:
        """Any event the outside world could send now; ``None`` repeats the previous one.

        Weighted so that runs get far: mostly answers while running, more late replies,
        timers and operator actions once compensation began.
        """
        table: dict[str, st.SearchStrategy[Event | None] | None] = {
            "answer": self.answers(),
            "timer": self.timers(self.pending),
            "stale timer": self.timers(self.gone | set(self.older_timers())),
            "early or late reply": self.replies_of(NOT_STARTED_OR_GIVEN_UP),
            "repeated reply": self.replies_of((StepStatus.SUCCEEDED, StepStatus.FAILED)),
            "any reply": self.any_reply(),
            "operator": st.sampled_from([OperatorAbort("op"), OperatorRetry(), OperatorResume()]),
            "signal": self.signals(),
            "older attempt": self.older_replies(),
            "repeat": st.none() if self.last is not None else None,
        }
        assert self.state is not None
        if self.state.status is Status.RUNNING:
            weights = {"answer": 5, "timer": 2, "early or late reply": 2, "any reply": 2}
        else:
            weights = {"answer": 2, "timer": 2, "early or late reply": 4, "operator": 2}
        weights["older attempt"] = 2
        weights["signal"] = 2
        available = {k: strategy for k, strategy in table.items() if strategy is not None}
        weighted = [k for k in available for _ in range(weights.get(k, 1))]
        return st.sampled_from(weighted).flatmap(available.__getitem__)

    def answers(self) -> st.SearchStrategy[Event] | None:
        """Replies to what the instance waits on now (mostly good news)."""
        state = self.state
        assert state is not None
        waited: list[Event] = []
        for step in self.definition.steps:
            s = state.steps[step.name]
            if s.status in IN_FLIGHT and step.queue_timeout is not None:
                waited += [StepStarted(step.name, s.attempt)] * 2
            if s.status in IN_FLIGHT:
                waited += [StepSucceeded(step.name, {"v": 1, "w": "x"}, s.attempt)] * 2
                waited += [StepSucceeded(step.name, {"v": 1, "w": "x"})]
                waited += [StepFailed(step.name, "no", {}, s.attempt)] if step.failure else []
        if state.compensation_queue:
            name = state.compensation_queue[0]
            comp = self.definition.step(name).compensate
            assert comp is not None
            attempt = state.steps[name].compensation_attempt
            waited += [CompensationSucceeded(name)] if comp.success else []
            waited += [CompensationFailed(name, "no", attempt)] if comp.failure else []
        return st.sampled_from(waited) if waited else None

    def signals(self) -> st.SearchStrategy[Event] | None:
        """``saga emit`` of any subject a step answers to (the core refuses driven steps')."""
        subjects = [x for s in self.definition.steps for x in (*s.success, *s.failure)]
        if not subjects:
            return None
        return st.builds(Signal, st.sampled_from([*subjects, "nobody.listens"]), payloads)

    def replies_of(self, statuses: tuple[StepStatus, ...]) -> st.SearchStrategy[Event] | None:
        """Replies of the steps now in one of ``statuses``."""
        state = self.state
        assert state is not None
        names = [n for n, s in state.steps.items() if s.status in statuses]
        if not names:
            return None
        failing = [n for n in names if self.definition.step(n).failure]
        replies: st.SearchStrategy[Event] = st.builds(
            StepSucceeded, st.sampled_from(names), payloads
        )
        if failing:
            replies |= st.builds(StepFailed, st.sampled_from(failing), st.just("late"))
        return replies

    def older_replies(self) -> st.SearchStrategy[Event] | None:
        """Replies that answer an attempt older than the current one (a retry overtook
        them): failures must be ignored, a success still counts."""
        state = self.state
        assert state is not None
        replies: list[Event] = []
        for step in self.definition.steps:
            s = state.steps[step.name]
            for attempt in range(1, s.attempt):
                replies += [StepFailed(step.name, "stale", {}, attempt)] if step.failure else []
                replies += [StepStarted(step.name, attempt)] if step.queue_timeout else []
                replies += [StepSucceeded(step.name, {"v": 2}, attempt)]
            comp = step.compensate
            if comp is not None and comp.failure:
                for attempt in range(1, s.compensation_attempt):
                    replies += [CompensationFailed(step.name, "stale", attempt)]
        return st.sampled_from(replies) if replies else None

    def any_reply(self) -> st.SearchStrategy[Event]:
        defn = self.definition
        names = [s.name for s in defn.steps]
        failing = [s.name for s in defn.steps if s.failure]
        confirmed = [s.name for s in defn.steps if s.compensate and s.compensate.success]
        refused = [s.name for s in defn.steps if s.compensate and s.compensate.failure]
        replies: st.SearchStrategy[Event] = st.builds(
            StepSucceeded, st.sampled_from(names), payloads
        )
        if failing:
            replies |= st.builds(StepFailed, st.sampled_from(failing), st.just("no"))
        if confirmed:
            replies |= st.builds(CompensationSucceeded, st.sampled_from(confirmed))
        if refused:
            replies |= st.builds(CompensationFailed, st.sampled_from(refused))
        return replies

    def older_timers(self) -> list[Timer]:
        """Timers of attempts older than the current one, whether scheduled or not."""
        assert self.state is not None
        older: list[Timer] = []
        for name, s in self.state.steps.items():
            for attempt in range(s.attempt):
                older += [Timer(TimerKind.STEP_TIMEOUT, name, attempt)]
                older += [Timer(TimerKind.QUEUE_TIMEOUT, name, attempt)]
                older += [Timer(TimerKind.STEP_RETRY, name, attempt)]
            for attempt in range(s.compensation_attempt):
                older += [Timer(TimerKind.COMPENSATION_TIMEOUT, name, attempt)]
                older += [Timer(TimerKind.COMPENSATION_RETRY, name, attempt)]
        return [t for t in older if t not in self.pending]

    @staticmethod
    def timers(timers: Any) -> st.SearchStrategy[Event] | None:
        if not timers:
            return None
        return st.sampled_from(sorted(timers, key=lambda t: t.key)).map(TimerFired)


def play(definition: SagaDefinition, data: st.DataObject, trigger: dict[str, Any]) -> Sim:
    """Start an instance and feed it a random sequence of events, checking every decision.

    Begins with the first ``forward`` steps succeeding (so that there is something to
    compensate), and stops a few events after the instance finished: those only test that
    it absorbs them.
    """
    sim = Sim(definition)
    sim.deliver(SagaTriggered("id-1", trigger))
    for step in definition.steps[: data.draw(st.integers(0, len(definition.steps)), "forward")]:
        sim.deliver(StepSucceeded(step.name, {"v": 0, "w": step.name}))
    after_finish = AFTER_FINISH
    for _ in range(data.draw(st.integers(3, 60), label="events")):
        assert sim.state is not None
        after_finish -= sim.state.status.terminal
        if after_finish < 0:
            break
        event = data.draw(sim.events(), label="event")
        after_ms = data.draw(st.integers(0, 3000), label="after ms")
        if event is None:
            sim.repeat_last(after_ms)
        else:
            sim.deliver(event, after_ms)
    return sim


# -- the properties -----------------------------------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=QUIET)
@given(definition=definitions(), data=st.data())
def test_every_decision_keeps_the_invariants(
    definition: SagaDefinition, data: st.DataObject
) -> None:
    sim = play(definition, data, {"x": 1, "y": "two"})

    sim.quiesce()

    assert sim.state is not None
    if sim.state.status is Status.RUNNING:  # only a step without timeout nor deadline waits
        current = next(s for s in definition.steps if sim.state.steps[s.name].status in IN_FLIGHT)
        assert current.timeout is None
        assert definition.deadline is None
        assert sim.state.steps[current.name].status is StepStatus.ACTIVE
    if sim.state.status is Status.COMPENSATING:  # only an undo without timeout waits
        name = sim.state.compensation_queue[0]
        comp = definition.step(name).compensate
        assert comp is not None
        assert comp.timeout is None
        assert sim.state.steps[name].compensation is CompensationStatus.ACTIVE


@settings(max_examples=250, deadline=None, suppress_health_check=QUIET)
@given(definition=definitions(live=True), data=st.data())
def test_without_replies_a_live_saga_always_settles(
    definition: SagaDefinition, data: st.DataObject
) -> None:
    sim = play(definition, data, {"x": 1})

    sim.quiesce()

    assert sim.state is not None
    assert sim.state.status in SETTLED, sim.state.status


@settings(max_examples=100, deadline=None, suppress_health_check=QUIET)
@given(definition=definitions(live=True))
def test_a_saga_nobody_answers_settles_compensated(definition: SagaDefinition) -> None:
    sim = Sim(definition)
    sim.deliver(SagaTriggered("id-1", {"x": 1}))

    sim.quiesce()

    assert sim.state is not None
    skipped = [s.status is StepStatus.SKIPPED for s in sim.state.steps.values()]
    if all(skipped):  # nothing had to run: nothing to wait for
        assert sim.state.status is Status.COMPLETED
        return
    waits = [
        s.wait is not None or sim.state.steps[s.name].status is StepStatus.SKIPPED
        for s in definition.steps
    ]
    if all(waits):  # only sleeps: done unless the deadline came first
        assert sim.state.status in (Status.COMPLETED, Status.COMPENSATED)
        return
    assert sim.state.status is Status.COMPENSATED
    assert sim.undone == []


@settings(max_examples=100, deadline=None, suppress_health_check=QUIET)
@given(definition=definitions(), data=st.data(), trigger=trigger_payloads)
def test_state_survives_a_json_round_trip(
    definition: SagaDefinition, data: st.DataObject, trigger: dict[str, Any]
) -> None:
    sim = play(definition, data, trigger)

    assert sim.state is not None
    text = sim.state.model_dump_json()
    assert InstanceState.model_validate_json(text) == sim.state


@settings(max_examples=100, deadline=None, suppress_health_check=QUIET)
@given(definition=definitions(), data=st.data())
def test_a_signal_decides_as_the_event_it_stands_for(
    definition: SagaDefinition, data: st.DataObject
) -> None:
    """``saga emit`` of an observed step's event moves the instance exactly as the event
    from its service would, plus one ``operator.signal`` history entry with the actor;
    of a driven step's event, of a subject nobody answers to, or to a finished saga (no
    reopening by hand), it changes nothing."""
    sim = play(definition, data, {"x": 1})
    assert sim.state is not None
    subjects = [x for s in definition.steps for x in (*s.success, *s.failure)]
    subject = data.draw(st.sampled_from([*subjects, "nobody.listens"]), label="subject")
    payload = data.draw(payloads, label="payload")
    signal = Signal(subject, payload, reason="approved by hand", actor="cli:ann")
    by_signal = decide(definition, sim.state, signal, sim.now)
    answer = signalled(definition, signal)
    assert by_signal.error is None
    if isinstance(answer, str) or sim.state.status.terminal:  # a finished saga is not reopened
        assert not by_signal.changed
        assert by_signal.note is not None
        assert by_signal.state == sim.state
        return
    direct = decide(definition, sim.state, answer, sim.now)
    assert by_signal.changed == direct.changed
    assert by_signal.commands == direct.commands
    if not direct.changed:
        assert by_signal.state == sim.state
        return
    assert by_signal.state is not None
    assert direct.state is not None
    history = list(by_signal.state.history)
    entry = history.pop(len(sim.state.history))
    assert (entry.event, entry.step, entry.actor) == ("operator.signal", answer.step, "cli:ann")
    assert entry.detail == f"{subject}: approved by hand"
    assert by_signal.state.model_copy(update={"history": history}) == direct.state
