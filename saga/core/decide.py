"""The saga state machine: ``decide(definition, state, event, now) -> Decision``.

Pure: no I/O, no clock, no randomness, and no exception escapes (an internal
error becomes ``Decision.error``). The rules it keeps:

- steps run in order; compensation undoes the steps that succeeded, newest first;
- once compensation begins no forward step is driven; late replies are recorded,
  and a late *success* of a step whose outcome was unknown (abandoned, timed out,
  or observed and not yet started) queues its undo next; a reply to a driven step
  that was never commanded is stray;
- a failure answers only its own attempt (``Saga-Attempt``): one of an older attempt than
  the one in flight is recorded as stale and changes nothing else, while a success of any
  attempt wins; a success of an older attempt of a step that then failed is undone;
- a driven step with ``queue_timeout`` starts its run ``timeout`` only when the participant
  reports the start (:class:`StepStarted`); until then its queue timer runs;
- a duplicate, stale or late event changes nothing (``Decision.changed`` is False);
- a success whose payload breaks the step's ``schema`` counts as the step failing
  (reason ``schema-violation: ...``);
- a ``wait`` step succeeds when its timer fires, and no event answers it;
- a :class:`Signal` is decided as the step event it stands for (an operator answering an
  observed step), and recorded with its actor;
- :class:`OperatorTerminate` ends a running, compensating or parked instance without
  compensating (status ``terminated``), cancelling its timers;
- :class:`OperatorRedrive` runs a compensated, parked or terminated instance again from its
  failed step with the same trigger data: steps whose effect stands stay done, the others
  run again in a new run (``InstanceState.run``);
- a child saga (``Step.saga``) reports its end to its parent's step; a completed one
  reopens when its parent asks it to undo itself (:class:`UndoRequested`);
- completed, compensated and terminated instances absorb every other event but a redrive;
- a compensation that cannot succeed parks the instance for an operator.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from saga.core.commands import (
    CancelTimer,
    Command,
    Finished,
    Parked,
    PublishEvent,
    ReleaseSlot,
    Reopened,
    ScheduleTimer,
    net_commands,
)
from saga.core.events import (
    CommandAdmitted,
    CompensationFailed,
    CompensationSucceeded,
    Event,
    OperatorAbort,
    OperatorRedrive,
    OperatorResume,
    OperatorRetry,
    OperatorTerminate,
    SagaTriggered,
    Signal,
    StepFailed,
    StepStarted,
    StepSucceeded,
    Timer,
    TimerFired,
    TimerKind,
    UndoRequested,
    timer_key,
)
from saga.core.state import (
    CompensationStatus,
    HistoryEntry,
    InstanceState,
    Outcome,
    ParentLink,
    Status,
    StepState,
    StepStatus,
)
from saga.definition.contracts import success_violation
from saga.definition.expressions import render
from saga.definition.model import Publish, RetryPolicy, SagaDefinition, Step
from saga.protocol import (
    CHILD_COMPLETED,
    CHILD_FAILED,
    CHILD_UNDO_FAILED,
    CHILD_UNDONE,
    HEADER_ATTEMPT,
    HEADER_KIND,
    HEADER_PARENT_ID,
    HEADER_PARENT_NAME,
    HEADER_REPORT_START,
    HEADER_RUN,
    HEADER_SAGA_ID,
    HEADER_SAGA_NAME,
    HEADER_STEP,
    HEADER_TARGET,
    KIND_COMPENSATION,
    KIND_STEP,
    SCHEMA_VIOLATION,
    admit_subject,
    child_outcome_subject,
    child_saga_id,
    command_message_id,
    trigger_message_id,
)

# The enum members the transitions test, as module names: on Python 3.11 a member read
# from its class (``StepStatus.ACTIVE``) takes the slow path of ``EnumType.__getattr__``'s
# hook (~150 ns; a module name ~10 ns), and a transition reads dozens of them.
PENDING = StepStatus.PENDING
ACTIVE = StepStatus.ACTIVE
RETRY_WAIT = StepStatus.RETRY_WAIT
SUCCEEDED = StepStatus.SUCCEEDED
FAILED = StepStatus.FAILED
TIMED_OUT = StepStatus.TIMED_OUT
ABANDONED = StepStatus.ABANDONED
SKIPPED = StepStatus.SKIPPED
RUNNING = Status.RUNNING
COMPENSATING = Status.COMPENSATING
COMPLETED = Status.COMPLETED
COMPENSATED = Status.COMPENSATED
PARKED = Status.PARKED
TERMINATED = Status.TERMINATED
UNDO_NONE = CompensationStatus.NONE
UNDO_QUEUED = CompensationStatus.QUEUED
UNDO_ACTIVE = CompensationStatus.ACTIVE
UNDO_RETRY_WAIT = CompensationStatus.RETRY_WAIT
UNDO_DONE = CompensationStatus.DONE
UNDO_FAILED = CompensationStatus.FAILED
UNDO_RESOLVED = CompensationStatus.RESOLVED
STEP_TIMEOUT = TimerKind.STEP_TIMEOUT
QUEUE_TIMEOUT = TimerKind.QUEUE_TIMEOUT
STEP_RETRY = TimerKind.STEP_RETRY
COMPENSATION_TIMEOUT = TimerKind.COMPENSATION_TIMEOUT
COMPENSATION_RETRY = TimerKind.COMPENSATION_RETRY
DEADLINE = TimerKind.DEADLINE
WAIT = TimerKind.WAIT

UNKNOWN_OUTCOME = (ABANDONED, TIMED_OUT)
"""Started, then given up on: a late reply still tells what happened."""
IN_FLIGHT = (ACTIVE, RETRY_WAIT)
REDRIVABLE = (COMPENSATED, PARKED, TERMINATED)
STANDING = (UNDO_NONE, UNDO_QUEUED, UNDO_FAILED)
"""A succeeded step whose undo is one of these still stands (its undo did not run or failed):
a redrive keeps it done."""
DONE = (SUCCEEDED, SKIPPED)
"""A dependency in one of these states lets the steps after it start."""


@dataclass(frozen=True)
class Decision:
    """The new state (``None`` only when there is still no instance) and what to do."""

    state: InstanceState | None
    commands: list[Command] = field(default_factory=list)
    changed: bool = False
    """False when the event was a no-op: nothing to persist."""
    note: str | None = None
    """Why nothing happened (duplicate, stale, refused operator action)."""
    error: str | None = None
    """An internal error; the state is unchanged."""


def changed_decision(state: InstanceState, commands: list[Command]) -> Decision:
    """``Decision(state, commands, changed=True)`` (see :func:`_made`): a transition makes one."""
    return _made(
        Decision,
        {"state": state, "commands": commands, "changed": True, "note": None, "error": None},
    )


_D = TypeVar("_D")


def _made(cls: type[_D], fields: dict[str, Any]) -> _D:
    """An instance of the (frozen) dataclass ``cls`` holding ``fields`` (every field, by
    name, in order), as its ``__init__`` would make it without one ``object.__setattr__``
    per field: a third of the time (``tests/unit/test_decide_copy.py``)."""
    made = _new(cls)
    _set(made, "__dict__", fields)
    return made


def decide(
    definition: SagaDefinition, state: InstanceState | None, event: Event, now: datetime
) -> Decision:
    """Apply one event to one instance."""
    return decide_armed(definition, state, event, now, None)


def decide_armed(
    definition: SagaDefinition,
    state: InstanceState | None,
    event: Event,
    now: datetime,
    armed: dict[str, datetime] | None,
) -> Decision:
    """:func:`decide`; with ``armed`` (timer keys to due times, this call's to change), the
    timers the decision schedules and cancels are set in and removed from ``armed`` in
    order instead of being commands: what :func:`saga.core.wakeup.settle` would make of
    those commands, without making them. Not for :class:`OperatorRedrive`, whose timer
    commands are netted (:func:`net_commands`) before they count."""
    try:
        event = _checked(definition, event)
        if state is None:
            if isinstance(event, SagaTriggered):
                return _Transition.start(definition, event, now, armed)
            return Decision(None, note="no such instance")
        if isinstance(event, SagaTriggered):
            return Decision(state, note="instance already exists")
        if isinstance(event, UndoRequested):  # reopens a completed child
            return _Transition(definition, state, now, armed).undo(event)
        if state.status is COMPENSATED and isinstance(event, StepSucceeded):
            reopened = _Transition(definition, state, now, armed).reopen(event)
            if reopened is not None:
                return reopened
        if isinstance(event, OperatorRedrive) and state.status in REDRIVABLE:
            assert armed is None, "a redrive's timer commands are netted first"
            return _Transition(definition, state, now, armed).apply(event)
        if state.status.terminal:
            verb = _OPERATOR_VERBS.get(type(event))
            prefix = f"cannot {verb}: " if verb else ""
            return Decision(state, note=f"{prefix}instance is {state.status.value}")
        return _Transition(definition, state, now, armed).apply(event)
    except Exception as exc:  # the core never raises: an error is a result
        return Decision(state, error=f"{type(exc).__name__}: {exc}")


class _Transition:
    """One decision in progress: a working copy of the state and the commands so far."""

    def __init__(
        self,
        definition: SagaDefinition,
        state: InstanceState,
        now: datetime,
        armed: dict[str, datetime] | None,
        *,
        own: bool = False,
    ) -> None:
        """``own``: ``state`` was made for this transition, so it needs no working copy.
        ``armed``: see :func:`decide_armed`."""
        self.definition = definition
        self.by_name = definition.by_name
        self.armed = armed
        self.state = state if own else working_copy(state)
        self.inputs: dict[str, StepState] = _NO_STEPS if own else state.steps
        """The input's step states (read-only): :meth:`own` copies one still in use."""
        self.now = now
        self.commands: list[Command] = []

    # -- entry points -------------------------------------------------------

    @classmethod
    def start(
        cls,
        definition: SagaDefinition,
        event: SagaTriggered,
        now: datetime,
        armed: dict[str, datetime] | None,
    ) -> Decision:
        # The kept fields in a dict of their own; their values are the event's, as a step's
        # kept payload is (neither is changed in place, by the core or its adapters).
        state = new_instance(
            event.saga_id,
            definition,
            now,
            _kept(event.data, definition.trigger.keep),
            event.parent,
        )
        t = cls(definition, state, now, armed, own=True)
        parent = event.parent
        where = f"child of {parent.saga} {parent.saga_id} step {parent.step}" if parent else None
        t.record("saga.started", detail=where)
        if definition.deadline is not None:
            t.schedule(now + definition.deadline, DEADLINE)
        t.advance()
        return t.done()

    def reopen(self, event: StepSucceeded) -> Decision | None:
        """A compensated saga hears that a step it gave up on succeeded after all: undo it too.

        The one exception to "a finished instance absorbs everything": otherwise the
        step's effect would stay behind under an instance that reports itself compensated.
        """
        s = self.own_get(event.step)
        step = self.by_name[event.step] if s is not None else None
        if (
            s is None
            or step is None
            or step.compensate is None
            or not _outcome_unknown(step, s, event.attempt)
        ):
            return None
        self.state.status, self.state.finished_at = COMPENSATING, None
        self.record("saga.reopened", event.step, detail="late success of a step given up on")
        self.commands.append(Reopened(event.step))
        self.mark_succeeded(step, s, event.data)
        self.record("step.late-success", event.step)
        self.state.compensation_queue = []
        self.queue_next(step.name)
        return self.done()

    def undo(self, event: UndoRequested) -> Decision:
        """The parent compensates the step that started this child: a completed child runs
        its compensations (as an operator's abort would, had it still been running)."""
        state = self.state
        if state.undo_requested:
            return Decision(state, note="undo already requested: duplicate")
        self.record("saga.undo-requested", detail=event.reason)
        if state.status is COMPLETED:
            state.status, state.finished_at = COMPENSATING, None
            self.begin_compensation(None, event.reason)
        elif state.status is COMPENSATED:
            self.tell_parent(CHILD_UNDONE, {"reason": state.failure_reason})
        elif state.status is RUNNING:
            self.abandon_in_flight()
            self.begin_compensation(
                self.state.failure_step, self.state.failure_reason or event.reason
            )
        return self.done()  # compensating or parked: reports undone when compensated

    def apply(self, event: Event) -> Decision:
        handler = _HANDLERS.get(type(event))
        if handler is None:
            return Decision(self.state, note=f"unexpected event {type(event).__name__}")
        note = handler(self, event)
        if note is not None:
            return Decision(self.state, note=note)
        return self.done()

    def own(self, name: str) -> StepState:
        """Step ``name``'s state, to change: copied from the input's on first use (a
        transition copies only the steps it touches; the rest stay shared, unchanged)."""
        s = self.state.steps[name]
        if s is self.inputs.get(name):
            s = self.state.steps[name] = _step_copy(s)
        return s

    def own_get(self, name: str) -> StepState | None:
        """:meth:`own` for a name from an event: None when there is no such step."""
        return self.own(name) if name in self.state.steps else None

    def done(self) -> Decision:
        self.state.updated_at = self.now
        return changed_decision(self.state, self.commands)

    # -- helpers ------------------------------------------------------------

    def record(
        self,
        event: str,
        step: str | None = None,
        attempt: int | None = None,
        detail: str | None = None,
        actor: str | None = None,
    ) -> None:
        self.state.history.append(history_entry(self.now, event, step, attempt, detail, actor))

    def schedule(
        self, at: datetime, kind: TimerKind, step: str | None = None, attempt: int = 1
    ) -> None:
        if self.armed is None:
            self.commands.append(ScheduleTimer(Timer(kind, step, attempt), at))
        else:
            self.armed[timer_key(kind, step, attempt)] = at

    def cancel(self, kind: TimerKind, step: str | None = None, attempt: int = 1) -> None:
        if self.armed is None:
            self.commands.append(CancelTimer(Timer(kind, step, attempt)))
        else:
            self.armed.pop(timer_key(kind, step, attempt), None)

    def publish(self, spec: Publish, step: str, attempt: int, kind: str) -> None:
        data = spec.payload(self.state.template_context())
        self.commands.append(self.command(spec.event, data, step, attempt, kind))

    def command(self, subject: str, data: Any, step: str, attempt: int, kind: str) -> PublishEvent:
        """A step's (or undo's) command for one attempt: its headers and message id."""
        sid = self.state.saga_id
        headers = {
            HEADER_SAGA_ID: sid,
            HEADER_SAGA_NAME: self.definition.name,
            HEADER_STEP: step,
            HEADER_ATTEMPT: str(attempt),
            HEADER_KIND: kind,
        }
        run = self.state.run
        if run:
            headers[HEADER_RUN] = str(run)
        msg_id = command_message_id(self.definition.name, sid, step, kind, attempt, run)
        declared = self.by_name[step]
        if kind == KIND_STEP and declared.queue_timeout is not None:
            headers[HEADER_REPORT_START] = "1"  # its queue time ends with the start report
        child = declared.saga
        if child is not None:  # addressed to the child instance; Saga-Step/-Attempt stay ours
            child_id = child_saga_id(sid, step)
            headers[HEADER_SAGA_ID], headers[HEADER_SAGA_NAME] = child_id, child
            headers[HEADER_PARENT_NAME], headers[HEADER_PARENT_ID] = self.definition.name, sid
            if kind == KIND_STEP:  # the child's trigger: deduped like any trigger
                msg_id = trigger_message_id(child, child_id)
        return _made(
            PublishEvent, {"subject": subject, "data": data, "headers": headers, "msg_id": msg_id}
        )

    def tell_parent(self, outcome: str, data: dict[str, Any]) -> None:
        """A child saga's outcome, published for the parent's step that started it."""
        parent = self.state.parent
        if parent is None:
            return
        headers = {HEADER_SAGA_ID: parent.saga_id, HEADER_SAGA_NAME: parent.saga}
        if outcome in (CHILD_COMPLETED, CHILD_FAILED):  # answers the step's attempt
            headers[HEADER_ATTEMPT] = str(parent.attempt)
        subject = child_outcome_subject(parent.saga, parent.step, outcome)
        me = f"{self.state.saga_name}:{self.state.saga_id}"
        msg_id = f"{me}:outcome:{outcome}:{len(self.state.history)}"
        payload = {"id": self.state.saga_id, "saga": self.state.saga_name, **data}
        self.commands.append(PublishEvent(subject, payload, headers, msg_id))

    def cancel_step_timers(self, name: str, s: StepState) -> None:
        step = self.by_name[name]
        held_back = _held_back(step, s)
        self.release(s)
        if held_back:
            return  # its command waits for a slot: no timer was armed
        if s.status is ACTIVE and step.wait is not None:
            self.cancel(WAIT, name, s.attempt)
        elif s.status is ACTIVE and _queued(step, s):
            self.cancel(QUEUE_TIMEOUT, name, s.attempt)
        elif s.status is ACTIVE and step.timeout is not None:
            self.cancel(STEP_TIMEOUT, name, s.attempt)
        if s.status is RETRY_WAIT:
            self.cancel(STEP_RETRY, name, s.attempt)

    def cancel_compensation_timers(self, name: str, s: StepState) -> None:
        comp = self.by_name[name].compensate
        if s.compensation is UNDO_ACTIVE and comp and comp.timeout is not None:
            self.cancel(COMPENSATION_TIMEOUT, name, s.compensation_attempt)
        if s.compensation is UNDO_RETRY_WAIT:
            self.cancel(COMPENSATION_RETRY, name, s.compensation_attempt)

    def finish(self, status: Status) -> None:
        self.state.status = status
        self.state.finished_at = self.now
        if status is COMPLETED and self.definition.deadline is not None:
            self.cancel(DEADLINE)
        again = status is COMPENSATED and self.state.reopened
        self.record(f"saga.{status.value}")
        if not again:  # announced once per instance: a reopened saga was announced already
            self.commands.append(Finished(status.value))
        if status is COMPLETED:
            if self.state.parent is not None:
                self.tell_parent(CHILD_COMPLETED, _json_copy(self.state.context))
        elif again:  # the parent heard this instance's end already
            pass
        elif self.state.undo_requested:
            self.tell_parent(CHILD_UNDONE, {"reason": self.state.failure_reason})
        else:
            self.tell_parent(CHILD_FAILED, {"reason": self.state.failure_reason or "failed"})

    # -- forward ------------------------------------------------------------

    @property
    def failing(self) -> bool:
        """A step failed but parallel steps are still in flight (``branch_failure: wait``)."""
        return self.state.status is RUNNING and self.state.failure_reason is not None

    def advance(self) -> None:
        """Start every step whose dependencies are done (skipping those whose condition is
        false); complete the saga when every step succeeded or was skipped."""
        state = self.state
        steps = state.steps
        # Redriven, a step kept done may follow one that runs again: look at all ancestors.
        waits_for = None if state.run else self.definition.waits_for
        progressed = True
        while progressed and state.status is RUNNING and state.failure_reason is None:
            progressed = False
            for step in self.definition.steps:
                name = step.name
                if steps[name].status is not PENDING:
                    continue
                deps = self.definition.ancestors(name) if waits_for is None else waits_for[name]
                if not _all_done(steps, deps):
                    continue
                progressed = True
                s = self.own(name)
                # An observed step whose service already answered did run: its outcome
                # wins over the condition.
                if (
                    step.when is not None
                    and s.early is None
                    and not _truthy(render(step.when, state.template_context()))
                ):
                    s.status, s.finished_at = SKIPPED, self.now
                    self.record("step.skipped", name, detail=f"condition false: {step.when}")
                    continue
                self.start_step(step, s)
                if state.status is not RUNNING or state.failure_reason is not None:
                    return  # failing: a step failed at once (an early failure)
        if state.status is RUNNING and state.failure_reason is None and _all_done(steps, steps):
            self.finish(COMPLETED)

    def after_outcome(self) -> None:
        """A step ended: go forward, or, if a branch failed, compensate once none is in flight."""
        if not self.failing:
            self.advance()
        elif not any(s.status in IN_FLIGHT for s in self.state.steps.values()):
            self.begin_compensation(self.state.failure_step, self.state.failure_reason or "failed")

    def fail(self, step: str, reason: str) -> None:
        """A step failed for good: compensate now, or first wait for the parallel steps."""
        if self.state.failure_reason is None:
            self.state.failure_step, self.state.failure_reason = step, reason
        if self.definition.branch_failure == "abandon":
            self.abandon_in_flight()
        in_flight = [n for n, s in self.state.steps.items() if s.status in IN_FLIGHT]
        if in_flight:
            self.record("saga.failing", step, detail="waiting for " + ", ".join(in_flight))
        self.after_outcome()

    def start_step(self, step: Step, s: StepState) -> None:
        s.started_at = self.now  # drive makes it active
        early, s.early = s.early, None
        self.drive(step, s, attempt=1)
        if early is not None:
            self.record("step.early-reply-applied", step.name)
            if early.succeeded:
                self.step_succeeded(StepSucceeded(step.name, early.data))
            else:
                self.step_failed(StepFailed(step.name, early.reason or "failed", early.data))

    def drive(self, step: Step, s: StepState, attempt: int) -> None:
        s.status = ACTIVE
        s.attempt = attempt
        s.running_since = None
        self.record("step.started" if attempt == 1 else "step.retried", step.name, attempt)
        if step.publish is not None:
            self.publish(step.publish, step.name, attempt, KIND_STEP)
            if _gated(step):
                self.hold_back(step.name)
                return  # the timers start when the command is sent (command_admitted)
        self.arm(step, s, attempt)

    def hold_back(self, step: str) -> None:
        """Send the command just decided to wait for a ``max_in_flight`` slot instead."""
        command = self.commands.pop()
        assert isinstance(command, PublishEvent)
        headers = {**command.headers, HEADER_TARGET: command.subject}
        subject = admit_subject(self.definition.name, step)
        self.commands.append(
            PublishEvent(subject, command.data, headers, f"{command.msg_id}:admit")
        )

    def command_admitted(self, event: CommandAdmitted) -> str | None:
        """A held-back command got its slot: send it, and start the step's timers now."""
        s = self.own_get(event.step)
        if s is None:
            return f"unknown step {event.step!r}"
        step = self.by_name[event.step]
        current = s.status is ACTIVE and event.attempt == s.attempt
        if self.state.status is not RUNNING or not current or not _gated(step):
            return f"step {event.step!r} is {s.status.value}: its held-back command is dropped"
        if s.slot is not None:
            return f"the command of step {event.step!r} attempt {s.attempt} was sent already"
        assert step.publish is not None
        s.slot = event.slot
        data = {} if event.data is None else event.data
        self.commands.append(
            self.command(step.publish.event, data, step.name, s.attempt, KIND_STEP)
        )
        self.record("step.sent", step.name, s.attempt)
        self.arm(step, s, s.attempt)
        return None

    def release(self, s: StepState) -> None:
        """The attempt holding a ``max_in_flight`` slot ended: give the slot back."""
        if s.slot is not None:
            self.commands.append(ReleaseSlot(s.slot))
            s.slot = None

    def arm(self, step: Step, s: StepState, attempt: int) -> None:
        """The step's timers, once its command is out (or it has none)."""
        if step.wait is not None:
            self.schedule(self.now + step.wait, WAIT, step.name, attempt)
        elif _queued(step, s):
            assert step.queue_timeout is not None
            at = self.now + step.queue_timeout
            self.schedule(at, QUEUE_TIMEOUT, step.name, attempt)
        elif step.timeout is not None:
            self.schedule(self.now + step.timeout, STEP_TIMEOUT, step.name, attempt)

    def step_started(self, event: StepStarted) -> str | None:
        """The participant took the command out of its queue: the run ``timeout`` starts."""
        s = self.own_get(event.step)
        if s is None:
            return f"unknown step {event.step!r}"
        step = self.by_name[event.step]
        current = event.attempt is None or event.attempt == s.attempt
        waiting = s.status is ACTIVE and _queued(step, s) and not _held_back(step, s)
        if self.state.status is not RUNNING or not waiting or not current:
            return f"step {event.step!r} is {s.status.value}: start report ignored"
        self.cancel(QUEUE_TIMEOUT, step.name, s.attempt)
        s.running_since = self.now
        self.record("step.running", step.name, s.attempt)
        if step.timeout is not None:
            self.schedule(self.now + step.timeout, STEP_TIMEOUT, step.name, s.attempt)
        return None

    def wait_to_retry(self, step: str, s: StepState, policy: RetryPolicy, why: str) -> None:
        self.cancel_step_timers(step, s)
        s.status = RETRY_WAIT
        self.record("step.retry-scheduled", step, s.attempt, why)
        self.schedule(self.now + policy.delay(s.attempt), STEP_RETRY, step, s.attempt)

    def step_succeeded(self, event: StepSucceeded) -> str | None:
        s = self.own_get(event.step)
        if s is None:
            return f"unknown step {event.step!r}"
        step = self.by_name[event.step]
        if step.wait is not None:
            return f"step {event.step!r} is a wait: only its timer ends it"
        if self.state.status is RUNNING:
            if s.status in IN_FLIGHT:
                self.cancel_step_timers(event.step, s)
                self.mark_succeeded(step, s, event.data)
                self.after_outcome()
                return None
            if s.status is PENDING and not step.driven:
                if s.early is None:
                    s.early = Outcome(succeeded=True, data=event.data)
                    self.record("step.early-reply", event.step, detail="success")
                    return None
                if s.early.succeeded:  # held already: compensation will undo it if need be
                    return f"step {event.step!r} has an early success held already: duplicate"
            if self.failing and _outcome_unknown(step, s, event.attempt):
                self.mark_succeeded(step, s, event.data)  # compensated with the others
                self.record("step.late-success", event.step)
                self.after_outcome()
                return None
            return f"step {event.step!r} is {s.status.value}: duplicate or stray reply"
        if _outcome_unknown(step, s, event.attempt):
            self.mark_succeeded(step, s, event.data)
            self.record("step.late-success", event.step)
            if step.compensate is not None:
                self.queue_next(step.name)
            return None
        return f"step {event.step!r} is {s.status.value}: late reply ignored"

    def mark_succeeded(self, step: Step, s: StepState, data: dict[str, Any]) -> None:
        s.status = SUCCEEDED
        s.finished_at = self.now
        self.state.context["steps"][step.name] = _kept(data, step.keep)
        self.state.completed.append(step.name)
        self.record("step.succeeded", step.name, s.attempt)

    def step_failed(self, event: StepFailed) -> str | None:
        s = self.own_get(event.step)
        if s is None:
            return f"unknown step {event.step!r}"
        step = self.by_name[event.step]
        if step.wait is not None:
            return f"step {event.step!r} is a wait: only its timer ends it"
        waiting = s.status is ACTIVE and self.state.status is RUNNING
        if waiting or s.status in UNKNOWN_OUTCOME:
            if _older(event.attempt, s.attempt):
                return self.stale("step.stale-failure", event.step, event.attempt, s.attempt)
            if event.attempt is not None and event.attempt > s.attempt:
                return f"failure of attempt {event.attempt} of {event.step!r}, never sent: stray"
        if self.state.status is RUNNING:
            if s.status is ACTIVE:
                policy = step.retry
                if policy and policy.on_failure and s.attempt < policy.attempts:
                    self.wait_to_retry(event.step, s, policy, f"failed: {event.reason}")
                    return None
                self.cancel_step_timers(event.step, s)
                s.status, s.reason, s.finished_at = FAILED, event.reason, self.now
                self.record("step.failed", event.step, s.attempt, event.reason)
                self.fail(event.step, event.reason)
                return None
            if s.status is PENDING and not step.driven and s.early is None:
                s.early = Outcome(succeeded=False, data=event.data, reason=event.reason)
                self.record("step.early-reply", event.step, detail=f"failure: {event.reason}")
                return None
            return f"step {event.step!r} is {s.status.value}: duplicate or stray reply"
        if s.status in UNKNOWN_OUTCOME:
            s.status, s.reason = FAILED, event.reason
            self.record("step.late-failure", event.step, detail=event.reason)
            return None
        return f"step {event.step!r} is {s.status.value}: late reply ignored"

    def stale(self, event: str, step: str, attempt: int | None, current: int) -> str | None:
        """A failure that answers an older attempt than the one in flight: it says nothing
        about the newer attempt, so it is recorded (once) and changes nothing else."""
        note = f"failure of attempt {attempt} of {step!r} while attempt {current} runs: stale"
        if any(
            h.event == event and h.step == step and h.attempt == attempt for h in self.state.history
        ):
            return note
        self.record(event, step, attempt, f"attempt {current} is in flight")
        return None

    # -- timers ---------------------------------------------------------------

    def timer_fired(self, event: TimerFired) -> str | None:
        timer = event.timer
        if timer.kind is DEADLINE:
            if self.state.status is not RUNNING:
                return "deadline passed after the forward path ended"
            self.abandon_in_flight()
            self.record("saga.deadline-exceeded")
            self.begin_compensation(
                self.state.failure_step, self.state.failure_reason or "deadline exceeded"
            )
            return None
        s = self.own_get(timer.step or "")
        if s is None or timer.step is None:
            return f"timer for unknown step {timer.step!r}"
        if timer.kind in _STEP_TIMERS:
            return self.step_timer(timer, timer.step, s)
        return self.compensation_timer(timer, timer.step, s)

    def step_timer(self, timer: Timer, name: str, s: StepState) -> str | None:
        if self.state.status is not RUNNING or timer.attempt != s.attempt:
            return "stale timer"
        step = self.by_name[name]
        if timer.kind is WAIT:
            if s.status is not ACTIVE or step.wait is None:
                return "stale timer"
            self.mark_succeeded(step, s, {})
            self.after_outcome()
            return None
        queued = timer.kind is QUEUE_TIMEOUT
        timeouts = (STEP_TIMEOUT, QUEUE_TIMEOUT)
        if timer.kind in timeouts and s.status is ACTIVE and queued == _queued(step, s):
            why = "not started in time" if queued else "timed out"
            policy = step.retry
            if policy and step.driven and s.attempt < policy.attempts:
                self.wait_to_retry(name, s, policy, why)
                return None
            self.release(s)
            s.status, s.finished_at = TIMED_OUT, self.now
            s.reason = f"{why} after {s.attempt} attempt(s)"
            self.record("step.timed-out", name, s.attempt, "in the queue" if queued else None)
            self.fail(name, s.reason)
            return None
        if timer.kind is STEP_RETRY and s.status is RETRY_WAIT:
            self.drive(step, s, s.attempt + 1)
            return None
        return "stale timer"

    def compensation_timer(self, timer: Timer, name: str, s: StepState) -> str | None:
        queue = self.state.compensation_queue
        current = queue[0] if queue else None
        if (
            self.state.status is not COMPENSATING
            or current != name
            or timer.attempt != s.compensation_attempt
        ):
            return "stale timer"
        comp = self.by_name[name].compensate
        assert comp is not None
        if timer.kind is COMPENSATION_TIMEOUT and s.compensation is UNDO_ACTIVE:
            policy = comp.retry
            if policy and s.compensation_attempt < policy.attempts:
                self.compensation_wait(name, s, policy, "timed out")
                return None
            self.park(name, s, f"compensation timed out after {s.compensation_attempt} attempt(s)")
            return None
        if timer.kind is COMPENSATION_RETRY and s.compensation is UNDO_RETRY_WAIT:
            self.drive_compensation(name, s, s.compensation_attempt + 1)
            return None
        return "stale timer"

    # -- compensation ---------------------------------------------------------

    def abandon_in_flight(self) -> None:
        for name, s in self.state.steps.items():
            if s.status in IN_FLIGHT:
                s = self.own(name)
                self.cancel_step_timers(name, s)
                s.status = ABANDONED
                self.record("step.abandoned", name, s.attempt)

    def begin_compensation(self, step: str | None, reason: str) -> None:
        self.state.status = COMPENSATING
        self.state.failure_step, self.state.failure_reason = step, reason
        if self.definition.deadline is not None:
            self.cancel(DEADLINE)
        self.record("saga.compensating", step, detail=reason)
        for name, s in self.state.steps.items():
            if s.status is PENDING and s.early is not None and s.early.succeeded:
                s = self.own(name)
                assert s.early is not None  # a copy of the one just checked
                self.mark_succeeded(self.by_name[name], s, s.early.data)
                s.early = None
        queue = [n for n in reversed(self.state.completed) if self.by_name[n].compensate]
        for name in queue:
            self.own(name).compensation = UNDO_QUEUED
        self.state.compensation_queue = queue
        self.next_compensation()

    def queue_next(self, name: str) -> None:
        """Put a late-succeeded step's undo right after the one in progress."""
        queue = self.state.compensation_queue
        self.own(name).compensation = UNDO_QUEUED
        queue.insert(1 if queue else 0, name)
        if len(queue) == 1 and self.state.status is COMPENSATING:
            self.next_compensation()

    def next_compensation(self) -> None:
        queue = self.state.compensation_queue
        while queue:
            name = queue[0]
            s = self.own(name)
            s.compensation_started_at = self.now
            self.drive_compensation(name, s, 1)
            if s.compensation is not UNDO_DONE:
                return
            queue.pop(0)
        self.finish(COMPENSATED)

    def drive_compensation(self, name: str, s: StepState, attempt: int) -> None:
        comp = self.by_name[name].compensate
        assert comp is not None
        s.compensation = UNDO_ACTIVE
        s.compensation_attempt = attempt
        self.record(
            "compensation.started" if attempt == 1 else "compensation.retried", name, attempt
        )
        self.publish(comp.publish, name, attempt, KIND_COMPENSATION)
        if comp.success is None:
            s.compensation = UNDO_DONE
            s.compensation_finished_at = self.now
            self.record("compensation.sent", name, attempt)
        elif comp.timeout is not None:
            self.schedule(self.now + comp.timeout, COMPENSATION_TIMEOUT, name, attempt)

    def compensation_wait(self, name: str, s: StepState, policy: RetryPolicy, why: str) -> None:
        self.cancel_compensation_timers(name, s)
        s.compensation = UNDO_RETRY_WAIT
        self.record("compensation.retry-scheduled", name, s.compensation_attempt, why)
        at = self.now + policy.delay(s.compensation_attempt)
        self.schedule(at, COMPENSATION_RETRY, name, s.compensation_attempt)

    def park(self, name: str, s: StepState, reason: str) -> None:
        self.cancel_compensation_timers(name, s)
        s.compensation, s.compensation_reason = UNDO_FAILED, reason
        self.state.status = PARKED
        self.record("saga.parked", name, s.compensation_attempt, reason)
        self.commands.append(Parked(name, reason))
        if self.state.undo_requested:
            self.tell_parent(CHILD_UNDO_FAILED, {"reason": f"{name}: {reason}"})

    def current_compensation(self, name: str) -> StepState | None:
        queue = self.state.compensation_queue
        if queue and queue[0] == name:
            return self.own(name)
        return None

    def compensation_succeeded(self, event: CompensationSucceeded) -> str | None:
        s = self.current_compensation(event.step)
        active = (
            UNDO_ACTIVE,
            UNDO_RETRY_WAIT,
            UNDO_FAILED,
        )
        if s is None or s.compensation not in active:
            return f"no compensation of {event.step!r} in progress: duplicate or stray confirmation"
        self.cancel_compensation_timers(event.step, s)
        s.compensation, s.compensation_finished_at = UNDO_DONE, self.now
        self.record("compensation.succeeded", event.step, s.compensation_attempt)
        self.state.status = COMPENSATING
        self.state.compensation_queue.pop(0)
        self.next_compensation()
        return None

    def compensation_failed(self, event: CompensationFailed) -> str | None:
        s = self.current_compensation(event.step)
        if s is None or s.compensation is not UNDO_ACTIVE:
            return f"no compensation of {event.step!r} in progress: duplicate or stray failure"
        if _older(event.attempt, s.compensation_attempt):
            return self.stale(
                "compensation.stale-failure", event.step, event.attempt, s.compensation_attempt
            )
        self.record("compensation.failed", event.step, s.compensation_attempt, event.reason)
        comp = self.by_name[event.step].compensate
        policy = comp.retry if comp else None
        if policy and policy.on_failure and s.compensation_attempt < policy.attempts:
            self.compensation_wait(event.step, s, policy, f"failed: {event.reason}")
        else:
            self.park(event.step, s, event.reason)
        return None

    # -- operator -------------------------------------------------------------

    def operator_abort(self, event: OperatorAbort) -> str | None:
        if self.state.status is not RUNNING:
            return f"cannot abort: instance is {self.state.status.value}"
        self.abandon_in_flight()
        self.record("operator.abort", detail=event.reason, actor=event.actor)
        if self.failing:
            self.begin_compensation(self.state.failure_step, self.state.failure_reason or "")
        else:
            self.begin_compensation(None, event.reason)
        return None

    def operator_retry(self, event: OperatorRetry) -> str | None:
        if self.state.status is PARKED:
            name = self.state.compensation_queue[0]
            s = self.own(name)
            self.state.status = COMPENSATING
            self.record("operator.retry", name, detail=event.reason, actor=event.actor)
            self.drive_compensation(name, s, s.compensation_attempt + 1)
            if s.compensation is UNDO_DONE:
                self.state.compensation_queue.pop(0)
                self.next_compensation()
            return None
        if self.state.status is RUNNING:
            for step in self.definition.steps:
                s = self.state.steps[step.name]
                if s.status in IN_FLIGHT:
                    if step.wait is not None:
                        return f"cannot retry: step {step.name!r} is a wait; its timer ends it"
                    if not step.driven:
                        return f"cannot retry: step {step.name!r} is observed, the engine does not drive it"
                    if step.saga is not None:  # one child per step: a second would be deduped
                        return (
                            f"cannot retry: step {step.name!r} runs the child saga "
                            f"{step.saga!r}; act on the child instead"
                        )
                    s = self.own(step.name)
                    self.cancel_step_timers(step.name, s)
                    self.record("operator.retry", step.name, detail=event.reason, actor=event.actor)
                    self.drive(step, s, s.attempt + 1)
                    return None
        return f"cannot retry: instance is {self.state.status.value} with nothing to re-drive"

    def operator_terminate(self, event: OperatorTerminate) -> str | None:
        """End now without compensating: what the steps did stays, the operator owns it."""
        if self.state.status is RUNNING:
            self.abandon_in_flight()
            if self.definition.deadline is not None:
                self.cancel(DEADLINE)
        queue = self.state.compensation_queue
        if queue:  # an undo in flight counts as not done: a redrive keeps its step done
            head = self.own(queue[0])
            self.cancel_compensation_timers(queue[0], head)
            if head.compensation is not UNDO_FAILED:
                head.compensation, head.compensation_reason = (
                    UNDO_FAILED,
                    "terminated",
                )
        self.state.compensation_queue = []
        self.record("operator.terminate", detail=event.reason, actor=event.actor)
        self.state.failure_reason = self.state.failure_reason or event.reason
        self.finish(TERMINATED)
        return None

    def operator_redrive(self, event: OperatorRedrive) -> str | None:
        """Run again from the failed step with the same trigger data, in a new run."""
        if self.state.status not in REDRIVABLE:
            return f"cannot redrive: instance is {self.state.status.value}"
        for step in self.definition.steps:
            s = self.state.steps[step.name]
            standing = s.status is SUCCEEDED and s.compensation in STANDING
            if step.saga is not None and s.attempt and not standing:
                # one child per parent step: its id is taken, a new trigger would start nothing
                return (
                    f"cannot redrive: step {step.name!r} would start child saga {step.saga!r} "
                    "again, and a parent's step starts its child once"
                )
        queue = self.state.compensation_queue
        if queue:
            self.cancel_compensation_timers(queue[0], self.own(queue[0]))
        failed = self.state.failure_step
        self.state.run += 1
        for name, s in self.state.steps.items():
            if s.status is SUCCEEDED and s.compensation in STANDING:
                self.own(name).compensation = UNDO_NONE
                continue
            self.state.steps[name] = StepState()
            self.state.context["steps"].pop(name, None)
        self.state.completed = [
            n for n in self.state.completed if self.state.steps[n].status is SUCCEEDED
        ]
        self.state.compensation_queue = []
        self.state.failure_step = self.state.failure_reason = None
        self.state.status, self.state.finished_at = RUNNING, None
        why = f"run {self.state.run}" + (f": {event.reason}" if event.reason else "")
        self.record("operator.redrive", failed, detail=why, actor=event.actor)
        if self.definition.deadline is not None:
            self.schedule(self.now + self.definition.deadline, DEADLINE)
        self.advance()
        # Nothing of the old run is armed: a timer this run set and already cancelled (its
        # deadline, when it ended at once) was never armed either.
        self.commands = net_commands(self.commands)
        return None

    def signal(self, event: Signal) -> str | None:
        """An operator delivers a success or failure event of an observed step: decided as
        if the step's service had sent it, and recorded with who sent it and why."""
        answer = signalled(self.definition, event)
        if isinstance(answer, str):
            return f"cannot emit: {answer}"
        if isinstance(answer, StepSucceeded):
            broken = success_violation(self.definition, answer.step, answer.data)
            if broken is not None:  # an operator's typo is refused, not a failed step
                return f"cannot emit: {SCHEMA_VIOLATION} {broken}"
        why = f": {event.reason}" if event.reason else ""
        mark = len(self.state.history)
        self.record("operator.signal", answer.step, detail=event.subject + why, actor=event.actor)
        note: str | None = _HANDLERS[type(answer)](self, answer)
        if note is None:
            return None
        del self.state.history[mark:]  # refused: the state stays as it was
        return f"cannot emit: {note}"

    def operator_resume(self, event: OperatorResume) -> str | None:
        if self.state.status is not PARKED:
            return f"cannot resume: instance is {self.state.status.value}, not parked"
        name = self.state.compensation_queue.pop(0)
        s = self.own(name)
        s.compensation, s.compensation_finished_at = UNDO_RESOLVED, self.now
        self.state.status = COMPENSATING
        self.record("operator.resume", name, detail=event.reason, actor=event.actor)
        self.next_compensation()
        return None


_STEP_TIMERS = (
    STEP_TIMEOUT,
    QUEUE_TIMEOUT,
    STEP_RETRY,
    WAIT,
)


_HANDLERS: dict[type, Any] = {
    CommandAdmitted: _Transition.command_admitted,
    StepStarted: _Transition.step_started,
    StepSucceeded: _Transition.step_succeeded,
    StepFailed: _Transition.step_failed,
    TimerFired: _Transition.timer_fired,
    CompensationSucceeded: _Transition.compensation_succeeded,
    CompensationFailed: _Transition.compensation_failed,
    OperatorAbort: _Transition.operator_abort,
    OperatorRetry: _Transition.operator_retry,
    OperatorResume: _Transition.operator_resume,
    OperatorTerminate: _Transition.operator_terminate,
    OperatorRedrive: _Transition.operator_redrive,
    Signal: _Transition.signal,
}
# UndoRequested is decided by _Transition.undo: it reopens completed instances too.


def signalled(definition: SagaDefinition, signal: Signal) -> StepSucceeded | StepFailed | str:
    """The step event a signal stands for, or why no observed step answers to its subject."""
    for step in definition.steps:
        if signal.subject in (*step.success, *step.failure) and step.driven:
            return (
                f"{signal.subject!r} answers step {step.name!r}, which is driven: its "
                "participant answers it (use retry or abort)"
            )
        if signal.subject in step.success:
            return StepSucceeded(step.name, signal.data)
        if signal.subject in step.failure:
            reason = signal.data.get("reason", signal.reason or "failed")
            return StepFailed(step.name, str(reason), signal.data)
    observed = [x for s in definition.steps if not s.driven for x in (*s.success, *s.failure)]
    return (
        f"no observed step of {definition.name!r} answers to {signal.subject!r} "
        f"(events: {', '.join(observed) or 'none'})"
    )


def _checked(definition: SagaDefinition, event: Event) -> Event:
    """A success whose payload breaks the step's ``schema`` is the step failing: the saga
    cannot go on with results it does not understand, and must not stall waiting."""
    if isinstance(event, StepSucceeded):
        why = success_violation(definition, event.step, event.data)
        if why is not None:
            return StepFailed(event.step, f"{SCHEMA_VIOLATION}: {why}", event.data, event.attempt)
    return event


def _outcome_unknown(step: Step, s: StepState, attempt: int | None = None) -> bool:
    """Whether a success reply may be true news: the step was started and given up on, or it
    is observed and its service may have started it on its own, or it failed at a later
    attempt than the one this success answers (that earlier attempt did take effect). A
    driven step still pending was never commanded, so a reply to it is stray."""
    if s.status is PENDING:
        return not step.driven
    if s.status is FAILED and _older(attempt, s.attempt):
        return True
    return s.status in UNKNOWN_OUTCOME


def _all_done(steps: dict[str, StepState], names: Iterable[str]) -> bool:
    """Every step of ``names`` succeeded or was skipped."""
    for name in names:  # noqa: SIM110 - all() over a generator: slower here
        if steps[name].status not in DONE:
            return False
    return True


def _gated(step: Step) -> bool:
    """A driven step whose commands wait for one of ``max_in_flight`` slots."""
    return step.publish is not None and step.max_in_flight is not None


def _held_back(step: Step, s: StepState) -> bool:
    """The current attempt's command waits for its slot: no timer of it is armed yet."""
    return _gated(step) and s.status is ACTIVE and s.slot is None


def _queued(step: Step, s: StepState) -> bool:
    """A driven step with a ``queue_timeout`` whose current attempt is not reported started:
    its queue timer runs, not its run timer."""
    return step.driven and step.queue_timeout is not None and s.running_since is None


def _older(attempt: int | None, current: int) -> bool:
    """A reply's attempt is known and older than the current one."""
    return attempt is not None and attempt < current


_OPERATOR_VERBS: dict[type, str] = {
    Signal: "emit",
    OperatorAbort: "abort",
    OperatorRetry: "retry",
    OperatorResume: "resume",
    OperatorTerminate: "terminate",
    OperatorRedrive: "redrive",
}


def working_copy(state: InstanceState) -> InstanceState:
    """A copy of ``state`` for one transition to change: the input stays as it was.

    Only what a transition changes in place is copied: the lists, the dict of steps, the
    context and its ``steps`` dict. Shared with the input: scalars, enums, datetimes, the
    frozen history entries, the step states (:meth:`_Transition.own` copies one before
    changing it), the armed timers (only :func:`saga.core.wakeup.settle` sets them, anew)
    and the context's JSON values. A transition never changes a
    value in the context in place: it sets or removes a whole entry of ``context["steps"]``,
    and the trigger's data is written once, when the instance starts. A deep copy of the
    context was 15% of a transition's CPU. ``tests/unit/test_decide_copy.py`` fails when a
    field is added that this misses.
    """
    context = dict(state.context)
    steps = context.get("steps")
    if isinstance(steps, dict):
        context["steps"] = dict(steps)
    return _model_copy(
        state,
        {
            "context": context,
            "steps": dict(state.steps),
            "completed": list(state.completed),
            "compensation_queue": list(state.compensation_queue),
            "history": list(state.history),
        },
    )


def _step_copy(s: StepState) -> StepState:
    if s.early is None:
        return _model_copy(s)
    early = _model_copy(s.early, {"data": _json_copy(s.early.data)})
    return _model_copy(s, {"early": early})


_M = TypeVar("_M", bound=BaseModel)
_new = object.__new__
_set = object.__setattr__


def _model_copy(model: _M, update: dict[str, Any] | None = None) -> _M:
    """``model.model_copy(update=update)``, done as pydantic's own ``__copy__`` does but
    without its generic dispatch (about 2x faster). Only for the core's state models, which
    have no extra fields and no private attributes (``tests/unit/test_decide_copy.py``)."""
    copied = _new(type(model))
    values = model.__dict__.copy()
    fields_set = model.__pydantic_fields_set__.copy()
    if update:
        values.update(update)
        fields_set.update(update)
    _set(copied, "__dict__", values)
    _set(copied, "__pydantic_fields_set__", fields_set)
    _set(copied, "__pydantic_extra__", None)
    _set(copied, "__pydantic_private__", None)
    return copied


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NO_STEPS: dict[str, StepState] = {}
"""The input steps of a transition that made its state itself (never changed)."""
_PENDING = StepState()
"""A new step's state, copied (``_model_copy``) for each step of a new instance."""
_ENTRY_FIELDS = set(HistoryEntry.model_fields)
"""Every entry's set fields: one set shared by all, as a history entry is frozen (nothing
adds to its fields; pydantic's copies copy the set)."""


def history_entry(
    at: datetime,
    event: str,
    step: str | None,
    attempt: int | None,
    detail: str | None,
    actor: str | None,
) -> HistoryEntry:
    """``HistoryEntry(at=at, event=event, ...)`` with every field given, without pydantic's
    validation (about 3x faster): the core passes values of the declared types only.
    ``tests/unit/test_decide_copy.py`` checks it equals the validated construction."""
    entry = _new(HistoryEntry)
    _set(
        entry,
        "__dict__",
        {
            "at": at,
            "event": event,
            "step": step,
            "attempt": attempt,
            "detail": detail,
            "actor": actor,
        },
    )
    _set(entry, "__pydantic_fields_set__", _ENTRY_FIELDS)
    _set(entry, "__pydantic_extra__", None)
    _set(entry, "__pydantic_private__", None)
    return entry


_BLANK = InstanceState(
    saga_id="", saga_name="", saga_version=1, started_at=_EPOCH, updated_at=_EPOCH
)
_GIVEN = ("saga_id", "saga_name", "saga_version", "started_at", "updated_at", "steps", "parent")


def new_instance(
    saga_id: str,
    definition: SagaDefinition,
    now: datetime,
    trigger: dict[str, Any],
    parent: ParentLink | None,
) -> InstanceState:
    """A new instance's state, as ``InstanceState(saga_id=..., ..., steps=...)`` with its
    context's trigger and its parent then set, without pydantic's validation: the values
    are the core's own (``tests/unit/test_decide_copy.py`` checks it equals the validated
    construction)."""
    values = _BLANK.__dict__.copy()
    values.update(
        saga_id=saga_id,
        saga_name=definition.name,
        saga_version=definition.version,
        started_at=now,
        updated_at=now,
        steps={s.name: _model_copy(_PENDING) for s in definition.steps},
        context={"trigger": trigger, "steps": {}},
        completed=[],
        compensation_queue=[],
        history=[],
        parent=parent,
    )
    state = _new(InstanceState)
    _set(state, "__dict__", values)
    _set(state, "__pydantic_fields_set__", set(_GIVEN))
    _set(state, "__pydantic_extra__", None)
    _set(state, "__pydantic_private__", None)
    return state


_CONTAINERS = (dict, list)
"""A tuple, not ``dict | list``: that union is built again at every evaluation (8x slower)."""


def _json_copy(value: Any) -> Any:
    """A copy of JSON-like data: new dicts and lists all the way down, leaves shared (and
    not passed to a call of their own: most values are leaves)."""
    if isinstance(value, dict):
        return {k: _json_copy(v) if isinstance(v, _CONTAINERS) else v for k, v in value.items()}
    if isinstance(value, list):
        return [_json_copy(v) if isinstance(v, _CONTAINERS) else v for v in value]
    return value


def _truthy(value: Any) -> bool:
    """JMESPath truth: false, null and empty strings, lists and objects are false."""
    if value is None or value is False:
        return False
    return not (isinstance(value, str | list | dict) and not value)


def _kept(data: dict[str, Any], keep: list[str] | None) -> dict[str, Any]:
    if not isinstance(data, dict):
        return {}
    if keep is None:
        return dict(data)
    return {k: data[k] for k in keep if k in data}
