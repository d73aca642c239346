"""Durable timers as broker-side message schedules (nats-server 2.12+).

A timer is one message on ``saga.timer.at.<instance>.<timer key>`` carrying
``Nats-Schedule: @at <time>``; at that time the server publishes it to
``saga.timer.fire.<instance>``, which the engine consumes. No timer lives in an
engine's memory, so timers survive engine restarts and move between replicas.
Publishing the same schedule subject again replaces the timer; purging it cancels.
"""

from __future__ import annotations

from datetime import UTC, datetime

from nats.js import JetStreamContext

from saga.core.events import Timer
from saga.nats.topology import timer_fire_subject, timer_schedule_subject
from saga.protocol import HEADER_SAGA_ID, HEADER_SAGA_NAME

HEADER_TIMER = "Saga-Timer"
HEADER_SCHEDULE = "Nats-Schedule"
HEADER_SCHEDULE_TARGET = "Nats-Schedule-Target"


def schedule_time(at: datetime) -> str:
    return "@at " + at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class BrokerTimers:
    def __init__(self, js: JetStreamContext, stream: str) -> None:
        self.js = js
        self.stream = stream

    async def schedule(self, saga_name: str, saga_id: str, timer: Timer, at: datetime) -> None:
        headers = {
            HEADER_SCHEDULE: schedule_time(at),
            HEADER_SCHEDULE_TARGET: timer_fire_subject(saga_name, saga_id),
            HEADER_SAGA_ID: saga_id,
            HEADER_SAGA_NAME: saga_name,
            HEADER_TIMER: timer.key,
        }
        subject = timer_schedule_subject(saga_name, saga_id, timer.key)
        await self.js.publish(subject, b"", headers=headers, stream=self.stream)

    async def cancel(self, saga_name: str, saga_id: str, timer: Timer) -> None:
        subject = timer_schedule_subject(saga_name, saga_id, timer.key)
        await self.js.purge_stream(self.stream, subject=subject)

    async def forget_fired(self, sequence: int) -> None:
        """Delete a fired timer message once handled, so the timer stream does not grow."""
        await self.js.delete_msg(self.stream, sequence)
