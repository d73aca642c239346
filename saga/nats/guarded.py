"""Revision-checked writes to a KV key as pipelined publishes.

A publish to ``$KV.<bucket>.<key>`` with ``Nats-Expected-Last-Subject-Sequence: <revision>``
(0: the key must not exist) is the server operation ``kv.update(last=)`` and ``kv.create``
perform, without nats-py's request round trip per write: the ack comes back on the
connection's :class:`saga.nats.acks.Acks` inbox. A stale revision is API error 10071
(10164 on some servers), raised here as :class:`StaleRevision`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from nats.js.errors import APIError

from saga.nats.acks import Acks, PubAck
from saga.protocol import HEADER_EXPECTED_LAST_SUBJECT_SEQUENCE, HEADER_TTL

WRONG_LAST_SEQUENCE = frozenset({10071, 10164})
"""Server error codes of a failed ``Nats-Expected-Last-Subject-Sequence`` check."""


class StaleRevision(Exception):
    """The key's last revision is not the one the write expected."""


async def guarded_put(
    acks: Acks, subject: str, data: bytes, last: int, ttl: int | None = None
) -> int:
    """Store ``data`` on ``subject`` if its last revision is ``last``; the new revision.

    ``ttl``: whole seconds until the server removes it (``Nats-TTL``)."""
    return await guarded_revision(await guarded_send(acks, subject, data, last, ttl))


async def guarded_send(
    acks: Acks, subject: str, data: bytes, last: int, ttl: int | None = None
) -> asyncio.Future[PubAck]:
    """:func:`guarded_put`'s publish, sent now; its ack for :func:`guarded_revision`."""
    headers = {HEADER_EXPECTED_LAST_SUBJECT_SEQUENCE: str(last)}
    if ttl is not None:
        headers[HEADER_TTL] = str(ttl)
    return await acks.send(subject, data, headers)


async def guarded_revision(ack: Awaitable[PubAck]) -> int:
    """The new revision :func:`guarded_send`'s write was stored as (:class:`StaleRevision`)."""
    try:
        return (await ack).seq
    except APIError as exc:
        if exc.err_code in WRONG_LAST_SEQUENCE:
            raise StaleRevision(exc.description) from exc
        raise
