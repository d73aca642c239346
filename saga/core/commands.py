"""What the core asks the adapters to do: the outputs of :func:`saga.core.decide`."""

from __future__ import annotations

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


Command = PublishEvent | ScheduleTimer | CancelTimer | Finished | Parked
