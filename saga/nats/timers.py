"""Durable timers kept by the server, never in an engine's memory.

Native mode (nats-server 2.12+ message schedules): a timer is a message on
``saga.timer.at.<instance>.<timer>`` with ``Nats-Schedule: @at <time>``; at that
time the server publishes it to ``saga.timer.fire.<instance>.<timer>``, which the
engine consumes. Publishing the same schedule again replaces it; purging cancels it.

Fallback mode (any JetStream server): the timer is published straight to its fire
subject with a ``Saga-Timer-Due`` header; the engine naks it with the remaining
delay until it is due. The stream keeps one message per subject, so re-publishing
replaces it, and purging the fire subject cancels it.

Either way timers survive engine restarts and move between replicas.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext

from saga.core.events import Timer
from saga.nats.topology import timer_fire_subject, timer_schedule_subject
from saga.protocol import HEADER_SAGA_ID, HEADER_SAGA_NAME

HEADER_TIMER = "Saga-Timer"
HEADER_DUE = "Saga-Timer-Due"
HEADER_SCHEDULE = "Nats-Schedule"
HEADER_SCHEDULE_TARGET = "Nats-Schedule-Target"


def schedule_time(at: datetime) -> str:
    return "@at " + at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def due_at(headers: dict[str, str] | None) -> datetime | None:
    """The due time of a fallback-mode timer message (None for native ones or bad headers)."""
    text = (headers or {}).get(HEADER_DUE)
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


class BrokerTimers:
    def __init__(self, js: JetStreamContext, stream: str, native: bool = True) -> None:
        self.js = js
        self.stream = stream
        self.native = native

    async def schedule(
        self,
        saga_name: str,
        saga_id: str,
        timer: Timer,
        at: datetime,
        extra_headers: dict[str, str] | None = None,
    ) -> Awaitable[Any]:
        """Send the timer; returns its publish ack to wait for. ``extra_headers`` (trace
        context) travel with the timer and come back when it fires."""
        fire = timer_fire_subject(saga_name, saga_id, timer.key)
        headers = {
            **(extra_headers or {}),
            HEADER_SAGA_ID: saga_id,
            HEADER_SAGA_NAME: saga_name,
            HEADER_TIMER: timer.key,
        }
        if not self.native:
            headers[HEADER_DUE] = at.astimezone(UTC).isoformat()
            return await self.js.publish_async(fire, b"", headers=headers, stream=self.stream)
        headers[HEADER_SCHEDULE] = schedule_time(at)
        headers[HEADER_SCHEDULE_TARGET] = fire
        subject = timer_schedule_subject(saga_name, saga_id, timer.key)
        return await self.js.publish_async(subject, b"", headers=headers, stream=self.stream)

    async def cancel(self, saga_name: str, saga_id: str, timer: Timer) -> None:
        if self.native:
            subject = timer_schedule_subject(saga_name, saga_id, timer.key)
        else:
            subject = timer_fire_subject(saga_name, saga_id, timer.key)
        await self.js.purge_stream(self.stream, subject=subject)

    async def forget_fired(self, sequence: int) -> None:
        """Delete a fired timer message once handled, so the timer stream does not grow."""
        await self.js.delete_msg(self.stream, sequence)
