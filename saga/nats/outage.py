"""A JetStream that does not answer yet is an outage to wait out, not a reason to exit.

While a cluster elects a leader (a node killed, no quorum yet), JetStream API requests
time out or answer 503; they succeed again once it is back. Start-up code retries such
errors with backoff, logging at WARNING; anything else (a refused credential, a bad
configuration) still ends the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError

T = TypeVar("T")

TRANSIENT: tuple[type[Exception], ...] = (
    NatsTimeoutError,
    NoRespondersError,
    NoStreamResponseError,
    ServiceUnavailableError,
    TimeoutError,
)
"""Errors of a server or cluster that is up but not ready (no JetStream leader yet)."""


async def until_available(
    action: Callable[[], Awaitable[T]],
    what: str,
    stop: asyncio.Event,
    log: logging.Logger,
    first: float = 0.5,
    most: float = 5.0,
    patience: float | None = None,
) -> T | None:
    """``action()``, tried again after a transient error, waiting ``first`` seconds and
    doubling up to ``most``; None once ``stop`` is set. ``patience``: seconds after which
    the last transient error is raised (never, when None)."""
    deadline = None if patience is None else time.monotonic() + patience
    delay = first
    while not stop.is_set():
        try:
            return await action()
        except TRANSIENT as exc:
            if deadline is not None and time.monotonic() + delay > deadline:
                raise
            log.warning(
                "%s: JetStream is not answering (%s); trying again in %.1fs",
                what,
                describe(exc),
                delay,
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, most)
    return None


def describe(exc: BaseException) -> str:
    """What the server said (``JetStream system temporarily unavailable``), else the error's
    text (``nats: timeout``), else its type."""
    text = getattr(exc, "description", None) or str(exc).strip()
    return str(text) or type(exc).__name__
