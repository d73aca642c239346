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
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from saga.nats.topology import token


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
        return json.dumps(
            {
                "subject": self.subject,
                "data": self.data.decode(),
                "headers": self.headers,
                "failed": self.failed,
                "attempt": self.attempt,
            },
            allow_nan=False,
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> StoredReply:
        doc: dict[str, Any] = json.loads(raw)
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
    """Replies by ``token(idempotency key)`` in one KV bucket."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def find(self, idempotency_key: str) -> Found | None:
        try:
            entry = await self._kv.get(token(idempotency_key))
        except KeyNotFoundError:
            return None
        if entry.value is None or entry.revision is None:
            return None
        return Found(StoredReply.from_json(entry.value), entry.revision)

    async def record(
        self, idempotency_key: str, reply: StoredReply, replaces: Found | None
    ) -> StoredReply:
        """Store ``reply`` unless another delivery stored one first; return the one to publish."""
        key = token(idempotency_key)
        try:
            if replaces is None:
                await self._kv.create(key, reply.to_json())
            else:
                await self._kv.update(key, reply.to_json(), last=replaces.revision)
        except KeyWrongLastSequenceError:
            winner = await self.find(idempotency_key)
            if winner is None:
                raise
            return winner.reply
        return reply
