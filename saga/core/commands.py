"""What the core asks the adapters to do: the outputs of :func:`saga.core.decide`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from saga.core.events import Timer


@dataclass(frozen=True)
class PublishEvent:
    """Publish ``data`` as JSON on ``subject``; ``msg_id`` is deterministic so a republish dedupes."""

    subject: str
    data: Any
    headers: dict[str, str] = field(default_factory=dict)
    msg_id: str = ""


@dataclass(frozen=True)
class ScheduleTimer:
    timer: Timer
    fire_at: datetime


@dataclass(frozen=True)
class CancelTimer:
    timer: Timer


@dataclass(frozen=True)
class Finished:
    """The instance reached a terminal state (completed or compensated)."""

    status: str


@dataclass(frozen=True)
class Parked:
    """A compensation cannot succeed: an operator must act (retry or resume)."""

    step: str
    reason: str


@dataclass(frozen=True)
class Reopened:
    """A compensated instance heard that ``step`` succeeded after all and undoes it.

    Announced as ``saga.status.<saga>.reopened``; when that undo is done the instance is
    compensated again without a second ``compensated`` announcement (one per instance)."""

    step: str

    @property
    def reason(self) -> str:
        return f"late success of {self.step}: undoing it"


@dataclass(frozen=True)
class ReleaseSlot:
    """Give back a ``max_in_flight`` slot (:attr:`saga.core.state.StepState.slot`): the
    step's attempt ended, the next waiting command may be sent."""

    slot: str


Command = PublishEvent | ScheduleTimer | CancelTimer | Finished | Parked | Reopened | ReleaseSlot


def net_commands(commands: Sequence[Command]) -> list[Command]:
    """Drop a timer scheduled and then cancelled in the same decision: run concurrently, the
    cancel could overtake the schedule and leave a (harmless but useless) timer behind; and
    a decision that arms nothing new should not say it does (see ``operator_redrive``)."""
    result: list[Command] = []
    for command in commands:
        if isinstance(command, CancelTimer):
            scheduled = next(
                (c for c in result if isinstance(c, ScheduleTimer) and c.timer == command.timer),
                None,
            )
            if scheduled is not None:
                result.remove(scheduled)
                continue
        result.append(command)
    return result


def command_to_json(command: Command) -> dict[str, Any]:
    """A JSON-ready form, so the store can keep a transition's commands (its outbox)."""
    if isinstance(command, PublishEvent):
        return {
            "type": "publish",
            "subject": command.subject,
            "data": command.data,
            "headers": command.headers,
            "msg_id": command.msg_id,
        }
    if isinstance(command, ScheduleTimer):
        return {
            "type": "schedule",
            "timer": command.timer.key,
            "fire_at": command.fire_at.isoformat(),
        }
    if isinstance(command, CancelTimer):
        return {"type": "cancel", "timer": command.timer.key}
    if isinstance(command, Finished):
        return {"type": "finished", "status": command.status}
    if isinstance(command, Reopened):
        return {"type": "reopened", "step": command.step}
    if isinstance(command, ReleaseSlot):
        return {"type": "release", "slot": command.slot}
    return {"type": "parked", "step": command.step, "reason": command.reason}


def command_from_json(data: dict[str, Any]) -> Command:
    """Inverse of :func:`command_to_json`; raises ``KeyError``/``ValueError`` on bad input."""
    kind = data["type"]
    if kind == "publish":
        return PublishEvent(data["subject"], data["data"], dict(data["headers"]), data["msg_id"])
    if kind == "schedule":
        return ScheduleTimer(Timer.from_key(data["timer"]), datetime.fromisoformat(data["fire_at"]))
    if kind == "cancel":
        return CancelTimer(Timer.from_key(data["timer"]))
    if kind == "finished":
        return Finished(data["status"])
    if kind == "parked":
        return Parked(data["step"], data["reason"])
    if kind == "reopened":
        return Reopened(data["step"])
    if kind == "release":
        return ReleaseSlot(data["slot"])
    raise ValueError(f"unknown command type {kind!r}")
