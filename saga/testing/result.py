"""What a scenario produced for one saga: its final state and its traffic, in wire order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from saga.core.state import InstanceState, Status, StepState
from saga.definition.subjects import SENT, Role
from saga.testing.wire import DeadLettered, Message

ANSWERS = (Role.SUCCESS, Role.FAILURE, Role.COMPENSATED, Role.COMPENSATION_FAILED)


@dataclass(frozen=True)
class SagaResult:
    """A snapshot of one instance; ``str(result)`` prints the transcript for a failing test."""

    saga_id: str
    state: InstanceState | None
    """``None`` when the trigger started nothing (e.g. it was dead-lettered)."""
    messages: tuple[Message, ...]
    """Every message of this saga on the wire: trigger, commands, answers, lifecycle events."""
    dead_letters: tuple[DeadLettered, ...] = ()

    @property
    def status(self) -> Status | None:
        """``running``, ``compensating``, ``completed``, ``compensated`` or ``parked``.

        A ``StrEnum``: compare it with the plain text.
        """
        return self.state.status if self.state is not None else None

    @property
    def commands(self) -> list[Message]:
        """What the engine published to participants, step commands and undos, in order."""
        return [m for m in self.messages if m.role in SENT]

    @property
    def published_subjects(self) -> list[str]:
        """The subjects of :attr:`commands`: the shape of the run at a glance."""
        return [m.subject for m in self.commands]

    @property
    def answers(self) -> list[Message]:
        """Successes, failures and undo confirmations that reached the engine, in order."""
        return [m for m in self.messages if m.role in ANSWERS]

    @property
    def status_events(self) -> list[Message]:
        """Lifecycle events on ``saga.status.<saga>.<status>``."""
        return [m for m in self.messages if m.role is Role.STATUS]

    @property
    def failure_step(self) -> str | None:
        return self.state.failure_step if self.state else None

    @property
    def failure_reason(self) -> str | None:
        return self.state.failure_reason if self.state else None

    @property
    def context(self) -> dict[str, Any]:
        """What payload templates read: ``trigger`` and ``steps.<name>`` kept fields."""
        return self.state.context if self.state else {}

    def step(self, name: str) -> StepState:
        """One step's status, attempts, reason and compensation."""
        if self.state is None:
            raise KeyError(f"saga {self.saga_id} was never started")
        return self.state.steps[name]

    def __str__(self) -> str:
        status = self.status.value if self.status else "not started"
        why = f" ({self.failure_step}: {self.failure_reason})" if self.failure_reason else ""
        lines = [f"saga {self.saga_id}: {status}{why}"]
        start = self.messages[0].at if self.messages else None
        for m in self.messages:
            offset = (m.at - start).total_seconds() if m.at and start else 0.0
            lines.append(f"  {offset:>9.3f}s  {m}")
        lines += [f"  dead letter {d.code}: {d.reason}: {d.message}" for d in self.dead_letters]
        return "\n".join(lines)
