"""Waiting out a JetStream that does not answer: transient errors retried, others raised."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import ServiceUnavailableError

from saga.errors import ConnectionFailed
from saga.nats.outage import until_available

log = logging.getLogger("test.outage")


def failing(*errors: Exception) -> tuple[list[int], Callable[[], Awaitable[int]]]:
    """An action raising ``errors`` one call at a time, then returning the call count."""
    calls: list[int] = []

    async def action() -> int:
        calls.append(len(calls) + 1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return len(calls)

    return calls, action


async def test_timeouts_and_503s_are_retried_with_backoff_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    unavailable = ServiceUnavailableError(
        code=503, err_code=10008, description="JetStream system temporarily unavailable"
    )
    _, action = failing(NatsTimeoutError(), unavailable, NatsTimeoutError())
    caplog.set_level(logging.WARNING, "test.outage")
    result = await until_available(action, "svc", asyncio.Event(), log, first=0.1, most=0.3)
    assert result == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "svc: JetStream is not answering (nats: timeout); trying again in 0.1s",
        "svc: JetStream is not answering (JetStream system temporarily unavailable); "
        "trying again in 0.2s",
        "svc: JetStream is not answering (nats: timeout); trying again in 0.3s",
    ]


async def test_a_real_error_ends_at_once() -> None:
    calls, action = failing(ConnectionFailed("authorization violation"))
    with pytest.raises(ConnectionFailed):
        await until_available(action, "svc", asyncio.Event(), log, first=0.01)
    assert calls == [1]


async def test_a_stop_ends_the_wait_and_patience_raises_the_last_error() -> None:
    stop = asyncio.Event()
    stop.set()
    calls, action = failing(*[NatsTimeoutError()] * 100)
    assert await until_available(action, "svc", stop, log) is None
    assert calls == []
    with pytest.raises(NatsTimeoutError):
        await until_available(action, "svc", asyncio.Event(), log, first=0.01, patience=0.05)
    assert 2 <= len(calls) < 100
