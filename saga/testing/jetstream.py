"""The nats-server transport: the real engine on a real embedded server, scripted participants
consuming from ``SAGA_EVENTS``.

One durable consumer over the whole stream plays every participant: it records each message
in stream order (the transcript), asks the script for an answer, publishes it, then acks.
"Idle" means that every message in the stream has been handled and acked by the engine
and by the participants, and nothing was appended meanwhile. Timers are the server's own,
so they take real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import UTC, datetime
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType

from saga import jsonwire
from saga.core.events import Event
from saga.core.state import InstanceState, Status
from saga.engine import Engine, EngineSettings
from saga.nats.dlq import DeadLetterCode
from saga.nats.provision import StreamSettings
from saga.nats.server import EmbeddedServer
from saga.nats.topology import instance_key
from saga.protocol import (
    ADMIT_PREFIX,
    DLQ_PREFIX,
    HEADER_DLQ_CODE,
    HEADER_DLQ_REASON,
    HEADER_DLQ_SUBJECT,
    TIMER_FIRE_PREFIX,
    TIMER_SCHEDULE_PREFIX,
)
from saga.testing.errors import HarnessError, ScenarioTimeout
from saga.testing.script import Outgoing, Script
from saga.testing.wire import DeadLettered, Message, WireReader

PARTICIPANTS = "saga-harness"
"""The durable consumer that records the transcript and plays the participants."""
POLL = 0.01
"""Seconds between two looks at the consumers while waiting for idle."""

HARNESS_SETTINGS = EngineSettings(
    streams=StreamSettings(storage=StorageType.MEMORY, ack_wait_backoff=(1.0, 2.0), max_deliver=3),
    fetch_wait=0.1,
    retry_delay=0.2,
)
"""Fast settings for a throwaway server: nothing to keep, short waits."""


class NatsTransport:
    def __init__(self, index: WireReader, script: Script, timeout: float) -> None:
        self.index = index
        self.definition = index.definition
        self.script = script
        self.timeout = timeout
        self.settings = HARNESS_SETTINGS
        self.messages: list[Message] = []
        self.dead_letters: list[DeadLettered] = []
        self._failures: list[BaseException] = []
        self._delayed: set[asyncio.Task[None]] = set()
        self._server: EmbeddedServer | None = None
        self._nc: Client | None = None
        self._engine: Engine | None = None
        self._loop: asyncio.Task[None] | None = None
        self._dlq: Any = None
        self._stopping = False

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        self._server = await asyncio.to_thread(EmbeddedServer().start)
        self._nc = await nats.connect(self._server.url)
        self._engine = Engine(self._nc, {self.definition.name: self.definition}, self.settings)
        await self._engine.start()
        topology = self.settings.topology
        config = ConsumerConfig(
            durable_name=PARTICIPANTS,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=10,
        )
        await self._js.add_consumer(topology.events_stream, config)
        sub = await self._js.pull_subscribe_bind(
            durable=PARTICIPANTS, stream=topology.events_stream
        )
        self._loop = asyncio.create_task(self._participate(sub), name="saga-harness")
        self._dlq = await self._js.subscribe(
            f"{DLQ_PREFIX}.>",
            stream=topology.dlq_stream,
            ordered_consumer=True,
            cb=self._on_dead_letter,
        )

    async def close(self) -> None:
        self._stopping = True
        for task in self._delayed:
            task.cancel()
        if self._loop is not None:
            await self._loop
        if self._engine is not None:
            await self._engine.stop()
        if self._dlq is not None:
            with contextlib.suppress(Exception):
                await self._dlq.unsubscribe()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        if self._server is not None:
            await asyncio.to_thread(self._server.close)

    @property
    def _js(self) -> JetStreamContext:
        if self._nc is None:
            raise HarnessError("the nats transport is not open")
        return self._nc.jetstream()

    def now(self) -> datetime:
        return datetime.now(UTC)

    # -- driving ------------------------------------------------------------------------

    async def publish(self, subject: str, payload: Any, headers: dict[str, str]) -> None:
        await self._js.publish(subject, jsonwire.dumps(payload), headers=headers)

    async def run_until_idle(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not await self._idle():
            self._raise_failures()
            if time.monotonic() > deadline:
                raise ScenarioTimeout(f"still busy after {self.timeout}s")
            await asyncio.sleep(POLL)
        self._raise_failures()

    async def advance(self, seconds: float) -> None:
        """Real time: the server's timers fire on the wall clock."""
        await asyncio.sleep(seconds)
        await self.run_until_idle()

    async def settle(self, saga_id: str) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            await self.run_until_idle()
            state = await self.state(saga_id)
            if state is None or state.status.terminal or state.status is Status.PARKED:
                return
            if not await self._timers_pending(saga_id):
                return
            if time.monotonic() > deadline:
                raise ScenarioTimeout(
                    f"saga {saga_id} is still {state.status.value} after {self.timeout}s"
                )
            await asyncio.sleep(POLL)

    async def state(self, saga_id: str) -> InstanceState | None:
        if self._engine is None or self._engine.store is None:
            raise HarnessError("the nats transport is not open")
        stored = await self._engine.store.load(instance_key(self.definition.name, saga_id))
        return stored.record.state if stored else None

    async def signal(self, saga_id: str, signal: Event) -> str | None:
        """An operator action (``saga emit``, ``abort``...), through the engine's operator path."""
        if self._engine is None:
            raise HarnessError("the nats transport is not open")
        result = await self._engine.act(saga_id, self.definition.name, signal)
        return None if result.ok else result.message

    # -- participants -------------------------------------------------------------------

    async def _participate(self, sub: JetStreamContext.PullSubscription) -> None:
        while not self._stopping:
            try:
                msgs = await sub.fetch(64, timeout=0.1)
            except (TimeoutError, NatsTimeoutError):
                continue
            except Exception as exc:  # the connection closed under us: stop
                if not self._stopping:
                    self._failures.append(exc)
                return
            for msg in msgs:
                await self._handle(msg)

    async def _handle(self, msg: Msg) -> None:
        """Record, answer, ack: the reply is in the stream before the command is acked."""
        if msg.subject.startswith(ADMIT_PREFIX + "."):  # the engine's own (max_in_flight)
            await msg.ack()
            return
        try:
            payload = json.loads(msg.data) if msg.data else {}
            message = self.index.message(
                msg.subject, payload, dict(msg.headers or {}), msg.metadata.timestamp
            )
            self.messages.append(message)
            report = self.script.started(message)
            if report is not None:
                await self._send(report)
            outgoing = await self.script.answer(message)
            if outgoing is not None:
                if outgoing.delay > 0:
                    task = asyncio.create_task(self._answer_later(outgoing))
                    self._delayed.add(task)
                    task.add_done_callback(self._delayed.discard)
                else:
                    await self._send(outgoing)
        except Exception as exc:  # a mistake in the scenario: raised from the next wait
            self._failures.append(exc)
        await msg.ack()

    async def _answer_later(self, outgoing: Outgoing) -> None:
        await asyncio.sleep(outgoing.delay)
        try:
            await self._send(outgoing)
        except Exception as exc:
            self._failures.append(exc)

    async def _send(self, outgoing: Outgoing) -> None:
        await self.publish(outgoing.subject, outgoing.payload, outgoing.headers)

    async def _on_dead_letter(self, msg: Msg) -> None:
        headers = dict(msg.headers or {})
        try:
            payload = json.loads(msg.data) if msg.data else {}
        except ValueError:
            payload = msg.data.decode(errors="replace")
        original = self.index.message(
            headers.get(HEADER_DLQ_SUBJECT, msg.subject), payload, headers
        )
        letter = DeadLettered(
            headers.get(HEADER_DLQ_CODE, ""), headers.get(HEADER_DLQ_REASON, ""), original
        )
        self.dead_letters.append(letter)
        if letter.code == DeadLetterCode.ENGINE_ERROR:
            self._failures.append(HarnessError(f"the engine failed: {letter.reason}"))

    # -- waiting ------------------------------------------------------------------------

    async def _idle(self) -> bool:
        """Everything in the stream handled and acked by engine and participants, no answer
        waiting to be sent, every dead letter seen, and nothing appended while we looked."""
        topology = self.settings.topology
        js = self._js
        before = (await js.stream_info(topology.events_stream)).state.last_seq
        consumers = [
            (topology.events_stream, topology.engine_consumer),
            (topology.timers_stream, topology.timer_consumer),
            (topology.events_stream, PARTICIPANTS),
        ]
        for stream, durable in consumers:
            info = await js.consumer_info(stream, durable)
            if info.num_pending or info.num_ack_pending:
                return False
        if self._engine is not None and self._engine.admission.gates:
            # a limited saga's triggers: none waiting, and every one delivered is held by
            # a running instance (see saga.engine.admission)
            admission = self._engine.admission
            for gate in admission.gates.values():
                info = await js.consumer_info(topology.events_stream, gate.consumer)
                if info.num_pending or (info.num_ack_pending or 0) > len(admission.held):
                    return False
        if self._delayed:
            return False
        dead = (await js.stream_info(topology.dlq_stream)).state.messages
        if dead != len(self.dead_letters):
            return False
        after = (await js.stream_info(topology.events_stream)).state.last_seq
        return before == after

    async def _timers_pending(self, saga_id: str) -> bool:
        """Whether the server still holds a timer of this saga (scheduled or fired)."""
        key = instance_key(self.definition.name, saga_id)
        stream = self.settings.topology.timers_stream
        for prefix in (TIMER_SCHEDULE_PREFIX, TIMER_FIRE_PREFIX):
            info = await self._js.stream_info(stream, subjects_filter=f"{prefix}.{key}.>")
            if info.state.subjects:
                return True
        return False

    def _raise_failures(self) -> None:
        if self._failures:
            failure, self._failures = self._failures[0], []
            raise failure
