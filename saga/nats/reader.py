"""Read what a stream holds, in stream order, without disturbing any durable consumer.

For tools (the invariants checker, audits): an ephemeral, unacknowledged pull
consumer reads every message stored at the moment of the call, then goes away.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from saga.nats.delivery import _V1_TOKENS, delivery_in
from saga.nats.pull import RawPull


@dataclass(frozen=True)
class StoredMessage:
    """One message as the stream stores it."""

    stream: str
    sequence: int
    """Stream sequence: the global order of the stream (a KV revision for a KV stream)."""
    subject: str
    data: bytes
    headers: dict[str, str]
    stored_at: datetime | None = None
    """When the stream stored it."""


async def read_stream(
    js: JetStreamContext,
    stream: str,
    subjects: list[str] | None = None,
    batch: int = 500,
    fetch_timeout: float = 2.0,
    since: datetime | None = None,
    nc: Client | None = None,
) -> list[StoredMessage]:
    """Every message of ``stream`` (on ``subjects`` when given) stored when the call begins
    (and, with ``since``, not before that moment). With ``nc`` (the connection of ``js``),
    pulled raw: several times cheaper per message than nats-py's ``fetch``."""
    found: list[StoredMessage] = []
    async for chunk in iter_stream(js, stream, subjects, batch, fetch_timeout, since, nc):
        found += chunk
    return found


async def iter_stream(
    js: JetStreamContext,
    stream: str,
    subjects: list[str] | None = None,
    batch: int = 500,
    fetch_timeout: float = 2.0,
    since: datetime | None = None,
    nc: Client | None = None,
) -> AsyncIterator[list[StoredMessage]]:
    """:func:`read_stream` a batch at a time, for streams too big to hold at once."""
    wanted = sorted(set(subjects or []))
    config = ConsumerConfig(
        name=f"read-{uuid.uuid4().hex[:12]}",
        deliver_policy=DeliverPolicy.ALL if since is None else DeliverPolicy.BY_START_TIME,
        opt_start_time=since,
        ack_policy=AckPolicy.NONE,
        filter_subject=wanted[0] if len(wanted) == 1 else None,
        filter_subjects=wanted if len(wanted) > 1 else None,
        inactive_threshold=30.0,
        mem_storage=True,
        num_replicas=1,
    )
    info = await js.add_consumer(stream, config)
    name = info.name
    remaining = info.num_pending or 0
    try:
        if nc is not None:
            async for chunk in _pull_raw(
                RawPull(nc, stream, name), remaining, batch, fetch_timeout
            ):
                yield chunk
            return
        sub = await js.pull_subscribe_bind(consumer=name, stream=stream)
        while remaining > 0:
            try:
                msgs = await sub.fetch(min(batch, remaining), timeout=fetch_timeout)
            except (TimeoutError, NatsTimeoutError):
                break  # purged or expired meanwhile: what is left is all there is
            yield [_stored(stream, m) for m in msgs]
            remaining -= len(msgs)
        await sub.unsubscribe()
    finally:
        with contextlib.suppress(Exception):
            await js.delete_consumer(stream, name)


async def _pull_raw(
    pull: RawPull, remaining: int, batch: int, fetch_timeout: float
) -> AsyncIterator[list[StoredMessage]]:
    """One request per batch, no per-message wait or metadata objects."""
    try:
        while remaining > 0:
            msgs = await pull.fetch(min(batch, remaining), fetch_timeout)
            if not msgs:
                break  # purged or expired meanwhile: what is left is all there is
            yield [_stored(pull.stream, m) for m in msgs]
            remaining -= len(msgs)
    finally:
        with contextlib.suppress(Exception):
            await pull.close()


def _stored(stream: str, msg: Msg) -> StoredMessage:
    """The message with its sequence and time read from its ack subject (``$JS.ACK.<stream>.
    <consumer>.<delivered>.<stream seq>.<consumer seq>.<timestamp ns>.<pending>``, or with
    a domain and account hash first)."""
    delivery = delivery_in(msg.reply)
    if delivery is None:  # not a JetStream delivery: nats-py parses what there is
        meta = msg.metadata
        return StoredMessage(
            stream,
            meta.sequence.stream,
            msg.subject,
            msg.data,
            dict(msg.headers or {}),
            meta.timestamp,
        )
    tokens = msg.reply.split(".")
    stamp = int(tokens[(2 if len(tokens) == _V1_TOKENS else 4) + 5])
    return StoredMessage(
        stream,
        delivery.sequence,
        msg.subject,
        msg.data,
        dict(msg.headers or {}),
        datetime.fromtimestamp(stamp / 1e9, UTC),
    )
