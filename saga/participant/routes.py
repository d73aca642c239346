"""What a participant listens to and how it answers: one ``Route`` per subject.

Steps, compensations, observed-step reactions and plain listeners are the same
thing with different answers, so they share this one record and one dispatcher.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from saga.participant.context import Context

Payload = dict[str, Any]
Handler = Callable[["Context", Payload], Awaitable[Payload | None]]
"""``async def handler(ctx, payload) -> dict | None``; ``None`` replies ``{}``."""

_SUBJECT = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


class RouteKind(StrEnum):
    STEP = "step"
    """A step command published by the engine."""
    COMPENSATION = "compensation"
    """An undo command published by the engine."""
    REACTION = "reaction"
    """An event this service reacts to by running an observed step."""
    LISTENER = "listener"
    """An event this service only takes note of (no reply, no saga headers needed)."""


@dataclass(frozen=True)
class Route:
    subject: str
    handler: Handler
    kind: RouteKind
    success: str | None = None
    failure: str | None = None
    step: str | None = None
    """Step name: required for a reaction, a fallback for commands without ``Saga-Step``."""

    @property
    def replies(self) -> bool:
        return self.kind is not RouteKind.LISTENER

    def problems(self) -> list[str]:
        """Everything wrong with this route, reported together at registration."""
        found = [
            f"{label} {value!r} is not a literal NATS subject (no wildcards)"
            for label, value in (
                ("subject", self.subject),
                ("success", self.success),
                ("failure", self.failure),
            )
            if value is not None and not _SUBJECT.match(value)
        ]
        if self.replies and self.success is None:
            found.append(f"{self.subject}: a {self.kind.value} handler needs a success subject")
        if self.kind is RouteKind.REACTION and not self.step:
            found.append(f"{self.subject}: a reaction needs step= (the observed step's name)")
        return found
