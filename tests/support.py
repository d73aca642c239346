"""Helpers for tests: waiting on conditions with deadlines (never sleep-and-hope)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig


async def wait_for(
    condition: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float = 15.0,
    interval: float = 0.05,
    message: str = "condition",
) -> None:
    """Poll ``condition`` until true; fail with ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)


# -- a scripted participant for engine tests -----------------------------------------------


Reply = tuple[str, dict[str, Any]] | None
Rule = Callable[[dict[str, Any], dict[str, str]], Reply]


@dataclass
class Received:
    subject: str
    payload: dict[str, Any]
    headers: dict[str, str]


@dataclass
class ScriptedParticipant:
    """Consumes commands from the events stream like a real service and replies by rule.

    A rule returns ``(subject, payload)`` to reply, or ``None`` to stay silent (a timeout).
    """

    nc: Client
    rules: dict[str, Rule]
    name: str = "scripted"
    received: list[Received] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _sub: Any = None
    _stopping: bool = False

    async def start(self, stream: str = "SAGA_EVENTS") -> ScriptedParticipant:
        js = self.nc.jetstream()
        await wait_for(lambda: _stream_exists(js, stream), message=f"stream {stream}")
        config = ConsumerConfig(
            durable_name=self.name,
            ack_policy=AckPolicy.EXPLICIT,
            filter_subjects=sorted(self.rules),
            ack_wait=2,
        )
        await js.add_consumer(stream, config)
        sub = await js.pull_subscribe_bind(durable=self.name, stream=stream)
        self._sub = sub
        self._task = asyncio.create_task(self._loop(sub))
        return self

    async def _loop(self, sub: Any) -> None:
        js = self.nc.jetstream()
        while not self._stopping:
            try:
                msgs = await sub.fetch(64, timeout=0.2)
            except (TimeoutError, NatsTimeoutError):
                continue
            except ConnectionClosedError:
                return
            for msg in msgs:
                await self._handle(js, msg)

    async def _handle(self, js: Any, msg: Msg) -> None:
        payload = json.loads(msg.data or b"{}")
        headers = dict(msg.headers or {})
        self.received.append(Received(msg.subject, payload, headers))
        reply = self.rules[msg.subject](payload, headers)
        if reply is not None:
            subject, data = reply
            out = {k: v for k, v in headers.items() if k.startswith("Saga-")}
            await js.publish(subject, json.dumps(data).encode(), headers=out)
        await msg.ack()

    async def stop(self) -> None:
        """Stop fetching; returns once the loop has ended (nats-py swallows task cancellation)."""
        self._stopping = True
        if self._task is not None:
            await self._task
            # A pull subscription left open makes the connection's drain wait out its 30 s
            # timeout (nats-py's fetch never marks its queue's items done).
            if self._sub is not None:
                await self._sub.unsubscribe()

    def commands(self, saga_id: str) -> list[tuple[str, str]]:
        """``(subject, Saga-Kind)`` of every command received for one saga, in order."""
        return [
            (r.subject, r.headers.get("Saga-Kind", ""))
            for r in self.received
            if r.headers.get("Saga-Id") == saga_id
        ]


async def _stream_exists(js: Any, name: str) -> bool:
    try:
        await js.stream_info(name)
    except Exception:
        return False
    return True
