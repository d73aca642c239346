"""The reply ledger: the one reply a step got, stored before it is published.

A redelivered command must never get a second, different answer (the first
might already have moved the saga on). So the reply is written to the
``saga_replies`` bucket with ``kv.create`` *before* it is published; a later
delivery finds it and publishes the same bytes again instead of running the
handler. The server then drops the copy (same ``Nats-Msg-Id``) if the first
publish got through.

One exception: a failure answers only the attempt that produced it. When the
engine retries a step after a failure (``retry.on_failure``, or a failed
compensation), the newer attempt runs the handler again and replaces the entry
with a revision check.

The writes are pipelined publishes with a revision check (:mod:`saga.nats.guarded`, the
server operation of ``kv.create``/``kv.update``), whose acks come back on the app's one
ack inbox instead of a request round trip each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from saga import jsonwire
from saga.nats.acks import AckGroup, Acks
from saga.nats.guarded import StaleRevision, guarded_put
from saga.nats.topology import token
from saga.protocol import HEADER_EXPECTED_LAST_SUBJECT_SEQUENCE, kv_prefix


@dataclass(frozen=True)
class StoredReply:
    """A reply exactly as published: subject, body bytes and headers."""

    subject: str
    data: bytes
    headers: dict[str, str]
    failed: bool
    attempt: int
    """The engine attempt whose handler run produced it."""

    def answers(self, attempt: int) -> bool:
        """A success answers every attempt; a failure only its own and older ones."""
        return not self.failed or attempt <= self.attempt

    def to_json(self) -> bytes:
        """Written by orjson directly: strings, a bool and an int hold no number JSON cannot
        carry (``jsonwire.dumps``'s checks), and the body is JSON already (one third of the
        time per reply)."""
        return orjson.dumps(
            {
                "subject": self.subject,
                "data": self.data.decode(),
                "headers": self.headers,
                "failed": self.failed,
                "attempt": self.attempt,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> StoredReply:
        doc: dict[str, Any] = jsonwire.loads(raw)
        return cls(
            subject=str(doc["subject"]),
            data=str(doc["data"]).encode(),
            headers={str(k): str(v) for k, v in doc["headers"].items()},
            failed=bool(doc["failed"]),
            attempt=int(doc["attempt"]),
        )


@dataclass(frozen=True)
class Found:
    reply: StoredReply
    revision: int


class ReplyLedger:
    """Replies by ``token(idempotency key)`` in one KV bucket.

    ``bucket`` and ``acks`` given: writes are pipelined publishes through ``acks``; without
    them (the testing kit's memory JetStream) through ``kv.create``/``kv.update``."""

    def __init__(self, kv: KeyValue, bucket: str | None = None, acks: Acks | None = None) -> None:
        self._kv = kv
        self._prefix = kv_prefix(bucket) if bucket is not None and acks is not None else None
        self._acks = acks

    async def find(self, idempotency_key: str) -> Found | None:
        found, _ = await self._lookup(token(idempotency_key))
        return found

    async def _lookup(self, key: str) -> tuple[Found | None, int]:
        """The stored reply, or None and the revision of a delete marker (0: none)."""
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError as missing:
            marker = missing.entry.revision if missing.entry is not None and missing.op else None
            return None, marker or 0
        if entry.value is None or entry.revision is None:
            return None, 0
        return Found(StoredReply.from_json(entry.value), entry.revision), 0

    async def record(
        self, idempotency_key: str, reply: StoredReply, replaces: Found | None
    ) -> StoredReply:
        """Store ``reply`` unless another delivery stored one first; return the one to publish."""
        key = token(idempotency_key)
        data = reply.to_json()
        last = replaces.revision if replaces is not None else 0
        try:
            await self._write(key, data, last)
        except StaleRevision:
            return await self._after_conflict(key, data, reply)
        return reply

    @property
    def pipelined(self) -> bool:
        """Writes are pipelined publishes (:meth:`send_first` may be used)."""
        return self._prefix is not None and self._acks is not None

    async def send_first(self, idempotency_key: str, reply: StoredReply, group: AckGroup) -> None:
        """Send the first reply's write (``create``, as :meth:`record` with nothing found)
        without waiting: its ack counts towards ``group``, with others. When the group
        fails, :meth:`record` each reply again: one stored meanwhile (ours included) is
        found after the conflict and returned."""
        assert self._prefix is not None
        assert self._acks is not None
        headers = {HEADER_EXPECTED_LAST_SUBJECT_SEQUENCE: "0"}
        subject = self._prefix + token(idempotency_key)
        await self._acks.send_in(group, subject, reply.to_json(), headers)

    async def _after_conflict(self, key: str, data: bytes, reply: StoredReply) -> StoredReply:
        """Another write came first: its reply, or ours written over a delete marker."""
        winner, marker = await self._lookup(key)
        if winner is not None:
            return winner.reply
        if not marker:
            raise StaleRevision(f"{key}: neither a reply nor a marker after a conflict")
        # A purged or deleted key keeps a marker: writing over it names the marker.
        await self._write(key, data, marker)
        return reply

    async def _write(self, key: str, data: bytes, last: int) -> None:
        if self._prefix is not None and self._acks is not None:
            await guarded_put(self._acks, self._prefix + key, data, last)
            return
        try:
            if last == 0:
                await self._kv.create(key, data)
            else:
                await self._kv.update(key, data, last=last)
        except KeyWrongLastSequenceError as exc:
            raise StaleRevision(str(exc)) from exc
