"""Control-flow exceptions a handler raises to say how its message ends.

    Exception
    └── HandlerOutcome
        ├── Reject     business failure: publish the step's failure event
        ├── Retry      try again later: redeliver after ``delay`` (counts as a delivery)
        └── NoReply    handled, but say nothing: ack without a reply

Returning a dict (or None) publishes the success event; returning anything else is
a bug in the handler, dead-lettered at once as ``handler-bug``. Any other exception is treated
like ``Retry`` with the consumer's backoff, and dead-lettered at the last delivery.
They are exceptions (not return values) so a helper deep in the handler can end
it, the way ``arq`` and ``faststream`` do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class HandlerOutcome(Exception):
    """Base of the outcomes a handler may raise on purpose."""


class Reject(HandlerOutcome):
    """The step failed for a business reason; the engine compensates (or retries on failure).

    The failure event's payload is ``{"reason": reason, **data}``.
    """

    def __init__(self, reason: str, data: Mapping[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.data: dict[str, Any] = dict(data or {})

    def payload(self) -> dict[str, Any]:
        extra = {k: v for k, v in self.data.items() if k != "reason"}
        return {"reason": self.reason, **extra}


class Retry(HandlerOutcome):
    """Not now: have the message redelivered after ``delay`` seconds (backoff when None)."""

    def __init__(self, reason: str = "retry requested", delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class NoReply(HandlerOutcome):
    """Ack the command without publishing anything (the engine's step timeout will act)."""

    def __init__(self, reason: str = "no reply") -> None:
        super().__init__(reason)
        self.reason = reason
