"""``saga reindex``: make the index say what the instances bucket holds (after a crash, a lost
stream, or an engine that ran without one).

It reads the index, then the bucket, and writes only what differs: a missing or stale entry
is written, an entry of no instance (or of another status) is emptied. Entries that are right
keep their place and time. Every write is guarded by the subject's last sequence as read
(``Nats-Expected-Last-Subject-Sequence``): an entry the engine rewrote meanwhile is newer than
what the rebuild read, so the rebuild's write fails and is skipped, and the engine's stands.
New entries are written oldest first, so the stream stays in time order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.js.errors import APIError
from pydantic import ValidationError

from saga.definition.catalog import Catalog
from saga.index.entry import TOMBSTONE_TTL, IndexWrite, index_writes, search_values
from saga.nats.acks import PubAck, acks_for
from saga.nats.guarded import WRONG_LAST_SEQUENCE
from saga.nats.provision import StreamSettings, ensure_index_stream
from saga.nats.reader import iter_stream
from saga.nats.topology import Topology
from saga.protocol import (
    HEADER_EXPECTED_LAST_SUBJECT_SEQUENCE,
    HEADER_TTL,
    INDEX_PREFIX,
    SEARCH_PREFIX,
    kv_stream,
)
from saga.store.base import InstanceRecord

log = logging.getLogger("saga.index")
WINDOW = 2000
"""Writes in flight at once."""


@dataclass
class Rebuilt:
    """What a rebuild did."""

    instances: int = 0
    written: int = 0
    """Entries written because they were missing or stale."""
    emptied: int = 0
    """Entries of no instance, or of a status the instance left, replaced by a tombstone."""
    raced: int = 0
    """Writes skipped because the engine rewrote the entry meanwhile."""
    seconds: float = 0.0


async def reindex(
    nc: Client,
    topology: Topology | None = None,
    catalog: Catalog | None = None,
    settings: StreamSettings | None = None,
    finished_ttl: float = 0.0,
) -> Rebuilt:
    """Rebuild the index from the instances bucket. ``catalog``: the definitions whose search
    attributes to index (none without it); ``finished_ttl``: as the engine's, so a finished
    instance's entries expire with its record."""
    topology = topology or Topology()
    js = nc.jetstream()
    started = time.monotonic()
    if not await ensure_index_stream(js, topology, settings or StreamSettings()):
        raise RuntimeError(f"cannot create or use the index stream {topology.index_stream}")
    existing: dict[str, tuple[int, bytes]] = {}
    async for chunk in iter_stream(
        js, topology.index_stream, [f"{INDEX_PREFIX}.>", f"{SEARCH_PREFIX}.>"], batch=2000
    ):
        for msg in chunk:
            existing[msg.subject] = (msg.sequence, msg.data)
    wanted: list[tuple[datetime, IndexWrite]] = []
    done = Rebuilt()
    now = datetime.now(UTC)
    async for chunk in iter_stream(js, kv_stream(topology.instances_bucket), batch=2000):
        for msg in chunk:
            if not msg.data or msg.headers.get("KV-Operation") in ("DEL", "PURGE"):
                continue
            try:
                state = InstanceRecord.model_validate_json(msg.data).state
            except ValidationError:
                log.warning("skipping unreadable record %s", msg.subject)
                continue
            done.instances += 1
            ttl = None
            if finished_ttl and state.status.terminal:
                age = (now - (msg.stored_at or now)).total_seconds()
                ttl = max(1, round(finished_ttl - age))
            definition = catalog.get(state.saga_name, state.saga_version) if catalog else None
            search = search_values(definition, state) if definition else {}
            wanted += [(state.updated_at, w) for w in index_writes(None, state, {}, search, ttl)]
    keep = {w.subject for _, w in wanted}
    writes = [
        w
        for _, w in sorted(wanted, key=lambda p: p[0])
        if existing.get(w.subject, (0, b""))[1] != w.data
    ]
    gone = [
        IndexWrite(subject, b"", TOMBSTONE_TTL)
        for subject, (_, data) in existing.items()
        if data and subject not in keep
    ]
    done.written, done.emptied = len(writes), len(gone)
    done.raced = await _publish(nc, [*writes, *gone], existing)
    done.seconds = time.monotonic() - started
    return done


async def _publish(
    nc: Client, writes: list[IndexWrite], existing: dict[str, tuple[int, bytes]]
) -> int:
    """Send ``writes`` guarded by the sequences read; returns how many lost a race."""
    acks = acks_for(nc)
    raced = 0
    pending: list[asyncio.Future[PubAck]] = []

    async def settle() -> int:
        lost = 0
        for result in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(result, APIError) and result.err_code in WRONG_LAST_SEQUENCE:
                lost += 1
            elif isinstance(result, BaseException):
                raise result
        pending.clear()
        return lost

    for write in writes:
        headers = {
            HEADER_EXPECTED_LAST_SUBJECT_SEQUENCE: str(existing.get(write.subject, (0, b""))[0])
        }
        if write.ttl is not None:
            headers[HEADER_TTL] = str(write.ttl)
        pending.append(await acks.send(write.subject, write.data, headers))
        if len(pending) >= WINDOW:
            raced += await settle()
    return raced + await settle()


__all__ = ["Rebuilt", "reindex"]
