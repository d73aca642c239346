"""Test a participant's handlers in memory: no server, the SDK's own dispatch.

    from saga.participant.testing import InMemoryApp

    async def test_charge_over_the_limit_is_declined() -> None:
        delivered = await InMemoryApp(payment.app).deliver("payment.charge", {"amount": 5000})
        assert delivered.reply.subject == "payment.declined"
        assert delivered.reply.payload["reason"] == "limit-exceeded"

Each delivery goes through the same dispatcher a running app uses (envelope checks,
stored replies, ``Reject``/``Retry``/``NoReply``, handler bugs); only JetStream is replaced:
the KV buckets (``ctx.once``'s effects, ``ctx.bucket``, the stored replies) live in memory
for the life of the ``InMemoryApp``, and replies are collected instead of published. This
is faststream's ``TestNatsBroker`` idea; a test against a real server still belongs in the
integration tests.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, PubAck
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from saga import jsonwire
from saga.nats.settle import Ack, Nak, Term, Verdict
from saga.participant.app import App
from saga.participant.buckets import Buckets
from saga.participant.context import Runtime
from saga.participant.dispatch import Dispatcher
from saga.participant.effects import Effects
from saga.participant.ledger import ReplyLedger
from saga.participant.routes import RouteKind
from saga.protocol import (
    HEADER_ATTEMPT,
    HEADER_KIND,
    HEADER_SAGA_ID,
    HEADER_SAGA_NAME,
    HEADER_STEP,
    KIND_COMPENSATION,
    KIND_STEP,
)

__test__ = False  # pytest: nothing here is a test


class MemoryKeyValue(KeyValue):
    """A KV bucket in memory with the calls handlers make: ``get``, ``put``, ``create``,
    ``update``, ``delete``, ``purge`` and ``keys`` (revision checks included)."""

    def __init__(self, name: str) -> None:  # no stream behind it: nats' __init__ is not run
        self._name = name
        self._entries: dict[str, KeyValue.Entry] = {}
        self._revision = 0

    async def get(
        self, key: str, revision: int | None = None, validate_keys: bool = True
    ) -> KeyValue.Entry:
        entry = self._entries.get(key)
        if entry is None or (revision is not None and entry.revision != revision):
            raise KeyNotFoundError
        return entry

    async def put(self, key: str, value: bytes, validate_keys: bool = True) -> int:
        self._revision += 1
        self._entries[key] = KeyValue.Entry(
            self._name, key, value, self._revision, 0, time.time_ns(), None
        )
        return self._revision

    async def create(
        self, key: str, value: bytes, validate_keys: bool = True, msg_ttl: float | None = None
    ) -> int:
        if key in self._entries:
            raise KeyWrongLastSequenceError(description=f"{key} exists")
        return await self.put(key, value)

    async def update(
        self, key: str, value: bytes, last: int | None = None, validate_keys: bool = True
    ) -> int:
        current = self._entries.get(key)
        if (current.revision if current else 0) != (last or 0):
            raise KeyWrongLastSequenceError(description=f"{key} is not at revision {last}")
        return await self.put(key, value)

    async def delete(
        self,
        key: str,
        last: int | None = None,
        validate_keys: bool = True,
        msg_ttl: float | None = None,
    ) -> bool:
        self._entries.pop(key, None)
        return True

    async def purge(self, key: str, msg_ttl: float | None = None) -> bool:
        return await self.delete(key)

    async def keys(self, filters: list[str] | None = None, **_: Any) -> list[str]:
        return sorted(self._entries)

    def values(self) -> dict[str, Any]:
        """Every entry's value as JSON (the form the SDK stores), by key."""
        return {k: json.loads(e.value or b"null") for k, e in self._entries.items()}


class MemoryJetStream(JetStreamContext):
    """What the dispatcher asks of JetStream: buckets, and publishing (collected here)."""

    def __init__(self) -> None:  # no connection: nats' __init__ is not run
        self.buckets: dict[str, MemoryKeyValue] = {}
        self.published: list[tuple[str, bytes, dict[str, str]]] = []

    async def key_value(self, bucket: str) -> KeyValue:
        if bucket not in self.buckets:
            raise BucketNotFoundError
        return self.buckets[bucket]

    async def create_key_value(
        self, config: KeyValueConfig | None = None, **params: Any
    ) -> KeyValue:
        name = config.bucket if config is not None else params["bucket"]
        return self.buckets.setdefault(name, MemoryKeyValue(name))

    async def publish_async(
        self,
        subject: str,
        payload: bytes = b"",
        *_: Any,
        headers: dict[str, str] | None = None,
        **__: Any,
    ) -> asyncio.Future[PubAck]:
        self.published.append((subject, payload, dict(headers or {})))
        done: asyncio.Future[PubAck] = asyncio.get_running_loop().create_future()
        done.set_result(PubAck(stream="memory", seq=len(self.published)))
        return done


@dataclass(frozen=True)
class Reply:
    """A reply the handler's delivery published."""

    subject: str
    payload: dict[str, Any]
    headers: dict[str, str]


@dataclass(frozen=True)
class Delivered:
    """How one delivery ended: ``ack``, ``redeliver`` or ``dead-letter``, and its replies."""

    outcome: str
    reason: str = ""
    """Why it is redelivered or dead-lettered."""
    delay: float | None = None
    """A redelivery's requested delay (``Retry(delay=...)``); None: the consumer's backoff."""
    replies: list[Reply] = field(default_factory=list)

    @property
    def reply(self) -> Reply:
        """The one reply (an ``AssertionError`` when there is none or several)."""
        assert len(self.replies) == 1, f"expected one reply, got {self.replies} ({self})"
        return self.replies[0]


def _delivered(verdict: Verdict, replies: list[Reply]) -> Delivered:
    if isinstance(verdict, Ack):
        return Delivered("ack", replies=replies)
    if isinstance(verdict, Nak):
        return Delivered("redeliver", verdict.reason, verdict.delay, replies)
    assert isinstance(verdict, Term)
    return Delivered("dead-letter", f"{verdict.code.value}: {verdict.reason}", None, replies)


class InMemoryApp:
    """An app's handlers behind the SDK's dispatcher, with JetStream in memory."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.js = MemoryJetStream()
        self._sequence = 0
        self._dispatcher: Dispatcher | None = None

    async def _ready(self) -> Dispatcher:
        if self._dispatcher is None:
            settings = self.app.settings
            buckets = Buckets(self.js, settings.stream)
            effects = Effects(await buckets.get(settings.effects_bucket), self.app.name)
            ledger = ReplyLedger(await buckets.get(settings.topology.replies_bucket))
            runtime = Runtime(self.js, effects, buckets)
            self._dispatcher = Dispatcher(
                self.app.name, dict(self.app.routes), runtime, ledger, settings
            )
        return self._dispatcher

    async def deliver(
        self,
        subject: str,
        payload: Mapping[str, Any] | bytes,
        *,
        saga_id: str = "saga-1",
        saga_name: str = "test",
        step: str | None = None,
        attempt: int = 1,
        delivery: int = 1,
        headers: Mapping[str, str] | None = None,
    ) -> Delivered:
        """Deliver ``payload`` (sent as JSON; raw ``bytes`` to test a malformed message) on
        ``subject`` with the headers the engine would set (a listener's message gets saga
        headers only when ``saga_id`` is not empty); ``headers`` are added last, so a test
        can break them. ``delivery`` is JetStream's delivery count (``ctx.delivery``)."""
        dispatcher = await self._ready()
        route = self.app.routes.get(subject)
        sent: dict[str, str] = {}
        if saga_id and route is not None:
            sent = {HEADER_SAGA_ID: saga_id, HEADER_SAGA_NAME: saga_name}
            if route.kind in (RouteKind.STEP, RouteKind.COMPENSATION):
                compensation = route.kind is RouteKind.COMPENSATION
                sent[HEADER_KIND] = KIND_COMPENSATION if compensation else KIND_STEP
                sent[HEADER_STEP] = step or route.step or subject
                sent[HEADER_ATTEMPT] = str(attempt)
        sent.update(headers or {})
        self._sequence += 1
        data = payload if isinstance(payload, bytes) else jsonwire.dumps(dict(payload))
        msg = Msg(
            cast(Client, None),  # never settled here: the verdict is the result
            subject=subject,
            data=data,
            headers=sent,
            _metadata=Msg.Metadata(
                sequence=Msg.Metadata.SequencePair(consumer=self._sequence, stream=self._sequence),
                num_pending=0,
                num_delivered=delivery,
                timestamp=datetime.now(UTC),
                stream=self.app.settings.topology.events_stream,
                consumer=self.app.name,
            ),
        )
        before = len(self.js.published)
        verdict = await dispatcher.verdict(msg)
        replies = [
            Reply(subject, json.loads(body), headers)
            for subject, body, headers in self.js.published[before:]
        ]
        return _delivered(verdict, replies)

    async def bucket(self, name: str) -> MemoryKeyValue:
        """A bucket the handlers use (``ctx.bucket``), to seed or read it."""
        return cast(MemoryKeyValue, await self.js.create_key_value(bucket=name))

    async def effects(self) -> dict[str, Any]:
        """The effects ``ctx.once`` recorded, by key (``effect_key``): each a record
        ``{"service", "effect", "idempotency_key", "result"}``."""
        return (await self.bucket(self.app.settings.effects_bucket)).values()
