"""What can happen to a saga instance: the inputs of :func:`saga.core.decide`."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from saga.core.state import ParentLink
from saga.definition.model import SagaDefinition
from saga.definition.subjects import Role


class TimerKind(StrEnum):
    STEP_TIMEOUT = "step-timeout"
    QUEUE_TIMEOUT = "queue-timeout"
    """A driven step with ``queue_timeout`` was not reported started in time."""
    STEP_RETRY = "step-retry"
    COMPENSATION_TIMEOUT = "compensation-timeout"
    COMPENSATION_RETRY = "compensation-retry"
    DEADLINE = "deadline"
    WAIT = "wait"
    """A ``wait`` step's sleep is over: the step succeeds."""
    WAKE = "wake"
    """The instance's one timer slot (``saga.core.wakeup``): act on every armed timer due."""


_KEYS = {kind: kind.value for kind in TimerKind}
"""Each kind's value, looked up faster than the member's own."""


@dataclass(frozen=True)
class Timer:
    """Identity of a timer inside one instance; stale timers (older attempt) are no-ops."""

    kind: TimerKind
    step: str | None = None
    attempt: int = 1

    @property
    def key(self) -> str:
        """Unique within an instance, made of subject-safe tokens."""
        return timer_key(self.kind, self.step, self.attempt)

    @classmethod
    def from_key(cls, key: str) -> Timer:
        """Inverse of :attr:`key`; raises ``ValueError`` on a malformed key."""
        kind, step, attempt = key.split(".")
        return cls(TimerKind(kind), None if step == "_" else step, int(attempt))


def timer_key(kind: TimerKind, step: str | None, attempt: int) -> str:
    """:attr:`Timer.key` of ``Timer(kind, step, attempt)``, without making the timer."""
    return f"{_KEYS[kind]}.{step or '_'}.{attempt}"


@dataclass(frozen=True)
class SagaTriggered:
    saga_id: str
    data: dict[str, Any] = field(default_factory=dict)
    parent: ParentLink | None = None
    """Set when a parent's step started this instance as a child saga."""


@dataclass(frozen=True)
class UndoRequested:
    """The parent of this child saga compensates the step that started it: a completed
    child runs its compensations, and reports ``undone`` (or ``undo-failed``) to it."""

    reason: str = "undone by its parent"


@dataclass(frozen=True)
class StepSucceeded:
    step: str
    data: dict[str, Any] = field(default_factory=dict)
    attempt: int | None = None
    """The reply's ``Saga-Attempt``; None when the participant did not say."""


@dataclass(frozen=True)
class StepStarted:
    """The participant began the work of a step's command (``saga.started.<saga>.<step>``)."""

    step: str
    attempt: int | None = None


@dataclass(frozen=True)
class CommandAdmitted:
    """A step's command held back by ``max_in_flight`` got a slot: send it now (``data``: its
    payload as rendered when the step was driven) and start the step's timers. ``slot`` is
    opaque to the core and given back by :class:`saga.core.commands.ReleaseSlot`."""

    step: str
    attempt: int
    slot: str
    data: Any = None


@dataclass(frozen=True)
class StepFailed:
    step: str
    reason: str = "failed"
    data: dict[str, Any] = field(default_factory=dict)
    attempt: int | None = None
    """The reply's ``Saga-Attempt``: a failure answers only its own attempt. None when the
    participant did not say (then it is charged to the current attempt)."""


@dataclass(frozen=True)
class CompensationSucceeded:
    step: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CompensationFailed:
    step: str
    reason: str = "failed"
    attempt: int | None = None
    """The reply's ``Saga-Attempt`` (see :attr:`StepFailed.attempt`)."""


@dataclass(frozen=True)
class TimerFired:
    timer: Timer


@dataclass(frozen=True)
class OperatorAbort:
    reason: str = "aborted by operator"
    actor: str | None = None
    """Who asked (recorded in the history), as the adapter authenticated them."""


@dataclass(frozen=True)
class OperatorRetry:
    """Re-drive the current step, or the compensation that parked the instance."""

    reason: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class OperatorResume:
    """Mark the parked compensation as resolved by hand and go on compensating."""

    reason: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class OperatorTerminate:
    """End the instance now without compensating (status ``terminated``): the operator
    takes over what its steps did. Timers are cancelled; late replies are absorbed."""

    reason: str = "terminated by operator"
    actor: str | None = None


@dataclass(frozen=True)
class OperatorRedrive:
    """Run a compensated, parked or terminated instance again from its failed step, with
    the same trigger data: steps whose effect stands stay done, every other step runs again
    in a new run (``Saga-Run``), so participants handle it afresh."""

    reason: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class Signal:
    """An operator delivers ``subject`` (a success or failure event of an observed step) to
    one instance, as the step's service would (``saga emit``): e.g. a manual approval."""

    subject: str
    data: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    actor: str | None = None


Event = (
    SagaTriggered
    | CommandAdmitted
    | StepStarted
    | StepSucceeded
    | StepFailed
    | CompensationSucceeded
    | CompensationFailed
    | TimerFired
    | OperatorAbort
    | OperatorRetry
    | OperatorResume
    | OperatorTerminate
    | OperatorRedrive
    | Signal
    | UndoRequested
)


def classify(
    definition: SagaDefinition,
    subject: str,
    payload: dict[str, Any],
    saga_id: str,
    attempt: int | None = None,
) -> Event | None:
    """Turn a consumed message into a typed event by its subject; ``None`` when it means nothing here.

    ``attempt``: the reply's ``Saga-Attempt`` header, if it had one. What the subject means
    comes from the definition's subject index (:mod:`saga.definition.subjects`)."""
    use = definition.subjects.consumed.get(subject)
    if use is None:
        return None
    step = use.step
    if use.role is Role.CHILD_UNDO:
        return UndoRequested()
    if step is None:  # the trigger: the one subject the engine consumes that names no step
        return SagaTriggered(saga_id, payload)
    reason = payload.get("reason")
    reason_text = str(reason) if reason is not None else "failed"
    match use.role:
        case Role.STARTED:
            return StepStarted(step, attempt)
        case Role.SUCCESS:
            return StepSucceeded(step, payload, attempt)
        case Role.FAILURE:
            return StepFailed(step, reason_text, payload, attempt)
        case Role.COMPENSATED:
            return CompensationSucceeded(step, payload)
        case Role.COMPENSATION_FAILED:
            return CompensationFailed(step, reason_text, attempt)
    return None
