"""The durable state of one saga instance: plain data, serialised as JSON by the store."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Status(StrEnum):
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    PARKED = "parked"
    """A compensation could not succeed; waits for an operator (retry or resume)."""
    TERMINATED = "terminated"
    """Ended by an operator without compensating (``saga terminate``); what its steps did
    stays as it is. An operator may still redrive it."""

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset((Status.COMPLETED, Status.COMPENSATED, Status.TERMINATED))
"""A set of the members, made once: ``self in (Status.A, ...)`` looks each member up anew."""


class StepStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    RETRY_WAIT = "retry-wait"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed-out"
    ABANDONED = "abandoned"
    """Was in flight when compensation began; its outcome is unknown until a late reply."""
    SKIPPED = "skipped"
    """Its ``when`` condition was false: it never ran and is never compensated."""


class CompensationStatus(StrEnum):
    NONE = "none"
    QUEUED = "queued"
    ACTIVE = "active"
    RETRY_WAIT = "retry-wait"
    DONE = "done"
    FAILED = "failed"
    RESOLVED = "resolved"
    """Marked done by an operator (``saga resume``)."""


class Outcome(BaseModel):
    """An observed step's reply that arrived before the step began (held until it does)."""

    succeeded: bool
    data: dict[str, Any] = Field(default_factory=dict)
    reason: str | None = None


class ParentLink(BaseModel):
    """The parent step attempt that started this instance as a child saga."""

    model_config = ConfigDict(frozen=True)

    saga: str
    saga_id: str
    step: str
    attempt: int = 1


class _Changed(BaseModel):
    """A model the core changes field by field, as a transition goes.

    Assigning a declared field does what pydantic's own ``__setattr__`` does for a model
    that neither is frozen nor validates assignments (store the value, count the field as
    set), without its per-assignment dispatch: twice as fast, and a transition makes about
    ten. Anything else goes to pydantic (``tests/unit/test_decide_copy.py``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        values = self.__dict__  # the fields, and nothing else: these models keep no extras
        if name in values:
            values[name] = value
            self.__pydantic_fields_set__.add(name)
        else:
            super().__setattr__(name, value)


class StepState(_Changed):
    status: StepStatus = StepStatus.PENDING
    attempt: int = 0
    started_at: datetime | None = None
    running_since: datetime | None = None
    """When the participant reported it started the current attempt (steps with a
    ``queue_timeout``); None while the command waits in its queue."""
    finished_at: datetime | None = None
    reason: str | None = None
    slot: str | None = None
    """A step with ``max_in_flight``: what holds the current attempt's slot (opaque to the
    core; an ack subject), set when its command was sent, given back when the attempt ends.
    None while the command waits to be admitted."""
    early: Outcome | None = None
    compensation: CompensationStatus = CompensationStatus.NONE
    compensation_attempt: int = 0
    compensation_started_at: datetime | None = None
    compensation_finished_at: datetime | None = None
    compensation_reason: str | None = None


class HistoryEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    at: datetime
    event: str
    step: str | None = None
    attempt: int | None = None
    detail: str | None = None
    actor: str | None = None
    """Who caused it, for operator actions (``cli:alice via nats``, ``http``)."""


class InstanceState(_Changed):
    saga_id: str
    saga_name: str
    saga_version: int
    status: Status = Status.RUNNING
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    context: dict[str, Any] = Field(default_factory=lambda: {"trigger": {}, "steps": {}})
    """Kept payload fields: ``trigger`` and ``steps.<name>``, read by payload templates."""
    steps: dict[str, StepState] = Field(default_factory=dict)
    completed: list[str] = Field(default_factory=list)
    """Steps in the order they succeeded: compensation runs this backwards."""
    compensation_queue: list[str] = Field(default_factory=list)
    """Steps still to compensate; the first is the one being compensated."""
    failure_step: str | None = None
    failure_reason: str | None = None
    run: int = 0
    """How many times an operator redrove the instance: commands of run ``n > 0`` carry
    ``Saga-Run: n``, so a participant handles a step run again afresh."""
    history: list[HistoryEntry] = Field(default_factory=list)
    timers: dict[str, datetime] | None = None
    """Armed timers (``Timer.key`` -> due time) behind the instance's one wake-up slot
    (``saga.core.wakeup``); None: an instance from before the slot, whose timers are each
    a message of their own."""
    wake_at: datetime | None = None
    """When the slot is set to fire (at or before the earliest armed timer); None: not set."""
    parent: ParentLink | None = None
    """Set on a child saga: the parent's step it answers (see ``Step.saga``)."""

    @property
    def undo_requested(self) -> bool:
        """A child whose parent asked it to undo itself (its outcome is then ``undone``)."""
        return _recorded(self.history, "saga.undo-requested")

    @property
    def reopened(self) -> bool:
        """Compensated once, then reopened to undo a late success (announced only once)."""
        return _recorded(self.history, "saga.reopened")

    def template_context(self) -> dict[str, Any]:
        saga = {"id": self.saga_id, "name": self.saga_name, "version": self.saga_version}
        return {"saga": saga, **self.context}


def _recorded(history: list[HistoryEntry], event: str) -> bool:
    for entry in history:  # noqa: SIM110 - any() over a generator: slower on every finish
        if entry.event == event:
            return True
    return False
