"""Durable timers kept by the server, never in an engine's memory.

Native mode (nats-server 2.12+ message schedules): a timer is a message on
``saga.timer.at.<instance>.<timer>`` with ``Nats-Schedule: @at <time>``; at that
time the server publishes it to ``saga.timer.fire.<instance>.<timer>``, which the
engine consumes. Publishing the same schedule again replaces it. Cancelling replaces
it too, with a plain message (no schedule headers) that the server drops after
``CANCEL_TTL`` (``Nats-TTL``; the stream allows per-message TTLs): the stream keeps one
message per subject, so the schedule is gone and never fires. That is a pipelined
publish, not an API request; a purge of the subject is the fallback when the stream
does not allow per-message TTLs.

Fallback mode (any JetStream server): the timer is published straight to its fire
subject with a ``Saga-Timer-Due`` header; the engine naks it with the remaining
delay until it is due. The stream keeps one message per subject, so re-publishing
replaces it, and purging the fire subject cancels it.

Either way timers survive engine restarts and move between replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client

from saga.core.events import Timer
from saga.nats.acks import AckGroup, acks_for
from saga.nats.topology import timer_fire_subject, timer_schedule_subject
from saga.protocol import (
    HEADER_EXPECTED_STREAM,
    HEADER_SAGA_ID,
    HEADER_SAGA_NAME,
    HEADER_SCHEDULE,
    HEADER_SCHEDULE_TARGET,
    HEADER_TIMER,
    HEADER_TIMER_DUE,
    HEADER_TTL,
    TIMER_FIRE_PREFIX,
)

CANCEL_TTL = 1
"""Seconds a cancelled timer's replacement message stays (per-message TTLs are whole
seconds, at least 1)."""

log = logging.getLogger("saga.timers")


def schedule_time(at: datetime) -> str:
    """``@at 2026-12-03T09:00:10.000000Z``: the server's schedule, to the microsecond, in UTC.
    ``isoformat`` (its offset always ``+00:00`` here) writes what ``strftime`` with
    ``%Y-%m-%dT%H:%M:%S.%fZ`` did, in half the time (one per armed timer)."""
    return "@at " + at.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def due_at(headers: dict[str, str] | None) -> datetime | None:
    """The due time of a fallback-mode timer message (None for native ones or bad headers)."""
    text = (headers or {}).get(HEADER_TIMER_DUE)
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


class BrokerTimers:
    def __init__(self, nc: Client, stream: str, native: bool = True) -> None:
        self.js = nc.jetstream()
        self.stream = stream
        self.native = native
        self.acks = acks_for(nc)
        self.replace_to_cancel: bool | None = None
        """Cancel a native timer by replacing its schedule (see the module docstring), else
        by a purge. None: not known yet; the first cancel asks whether the stream allows
        per-message TTLs (provisioning turns them on; a stream it could not update does not)."""
        self._checking = asyncio.Lock()
        self._swept = 0
        """The ack floor the last sweep purged up to."""

    async def schedule(
        self,
        saga_name: str,
        saga_id: str,
        timer: Timer,
        at: datetime,
        extra_headers: dict[str, str] | None = None,
        group: AckGroup | None = None,
    ) -> Awaitable[Any] | None:
        """Send the timer; returns its publish ack to wait for (None: it counts towards
        ``group``). ``extra_headers`` (trace context) travel with the timer and come back
        when it fires."""
        fire = timer_fire_subject(saga_name, saga_id, timer.key)
        headers = {
            **(extra_headers or {}),
            HEADER_SAGA_ID: saga_id,
            HEADER_SAGA_NAME: saga_name,
            HEADER_TIMER: timer.key,
        }
        headers[HEADER_EXPECTED_STREAM] = self.stream
        if not self.native:
            headers[HEADER_TIMER_DUE] = at.astimezone(UTC).isoformat()
            return await self._send(fire, headers, group)
        headers[HEADER_SCHEDULE] = schedule_time(at)
        headers[HEADER_SCHEDULE_TARGET] = fire
        subject = timer_schedule_subject(saga_name, saga_id, timer.key)
        return await self._send(subject, headers, group)

    async def _send(
        self, subject: str, headers: dict[str, str], group: AckGroup | None
    ) -> Awaitable[Any] | None:
        if group is None:
            return await self.acks.send(subject, b"", headers)
        await self.acks.send_in(group, subject, b"", headers)
        return None

    async def cancel(
        self, saga_name: str, saga_id: str, timer: Timer, group: AckGroup | None = None
    ) -> Awaitable[Any] | None:
        """Cancel the timer; returns what to wait for, None when it counts towards ``group``
        (a replacement is sent in order with the other publishes of the transition, so a
        schedule that follows it wins)."""
        if not self.native:
            return self._purge(timer_fire_subject(saga_name, saga_id, timer.key))
        subject = timer_schedule_subject(saga_name, saga_id, timer.key)
        if self.replace_to_cancel is None:
            await self._check_ttl()
        if not self.replace_to_cancel:
            return self._purge(subject)
        headers = {
            HEADER_TTL: str(CANCEL_TTL),
            HEADER_TIMER: timer.key,
            HEADER_EXPECTED_STREAM: self.stream,
        }
        return await self._send(subject, headers, group)

    def _purge(self, subject: str) -> Awaitable[Any]:
        return asyncio.ensure_future(self.js.purge_stream(self.stream, subject=subject))

    async def _check_ttl(self) -> None:
        async with self._checking:
            if self.replace_to_cancel is not None:
                return
            info = await self.js.stream_info(self.stream)
            self.replace_to_cancel = bool(info.config.allow_msg_ttl)
        if not self.replace_to_cancel:
            log.warning(
                "stream %s does not allow per-message TTLs: cancelled timers are purged one "
                "by one (an API request each); set allow_msg_ttl on it",
                self.stream,
            )

    async def forget_fired(self, sequence: int) -> None:
        """Delete a fired timer message once handled, so the timer stream does not grow.

        Fallback mode only: there, a message above the ack floor may be a timer not due
        yet (held back by naks), so fired ones are deleted one by one."""
        await self.js.delete_msg(self.stream, sequence)

    async def sweep(self, consumer: str) -> None:
        """Native mode: remove the fired timer messages ``consumer`` has acknowledged, with
        one purge up to its ack floor.

        Deleting each fired message (an API request each, awaited before the fetch batch
        was done) made timers late under load: the server answers API requests one at a
        time, so with 2,000 timeouts due at once each delete took ~0.7 s and fired timers
        were handled over 13 s instead of 2 (``bench/timers.py``)."""
        info = await self.js.consumer_info(self.stream, consumer)
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        if floor and floor > self._swept:
            await self.js.purge_stream(self.stream, seq=floor + 1, subject=f"{TIMER_FIRE_PREFIX}.>")
            self._swept = floor

    async def keep_swept(self, consumer: str, stopping: asyncio.Event, interval: float) -> None:
        """:meth:`sweep` every ``interval`` seconds until ``stopping`` is set."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)
            try:
                await self.sweep(consumer)
            except Exception as exc:  # the next sweep takes what this one left
                log.warning("could not remove fired timers: %s: %s", type(exc).__name__, exc)
