"""Stored instances that run on a saga version the engine has not loaded.

Such an instance is stranded: its replies and timers cannot be decided, so it would stay
``running`` for ever. The engine refuses to start without the versions its unfinished
instances use, and a reload that finds a version's file gone keeps that version loaded
and reports the instances (log and ``/readyz``).

Finding them reads the instance bucket once (the last value of every key, through an
ephemeral consumer that nothing acknowledges): at start, and on a reload that drops a
version from the folder, never per message.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from saga.core.state import Status
from saga.definition.model import SagaDefinition
from saga.protocol import kv_prefix, kv_stream

UNFINISHED = frozenset({Status.RUNNING.value, Status.COMPENSATING.value, Status.PARKED.value})
_UNFINISHED_BYTES = frozenset(s.encode() for s in UNFINISHED)
_STATUS = re.compile(rb'"status":\s*"([a-z-]+)"')
SHOWN = 10
"""Instance ids named per version in a message; the count says how many there are."""


@dataclass(frozen=True)
class Stored:
    """What a version check needs of one stored instance."""

    saga_name: str
    saga_version: int
    status: str
    saga_id: str


@dataclass(frozen=True)
class Stranded:
    """Unfinished instances of one saga version that is not loaded."""

    saga_name: str
    saga_version: int
    count: int
    saga_ids: tuple[str, ...]
    """The first :data:`SHOWN` of them."""

    def describe(self) -> str:
        more = ", ..." if self.count > len(self.saga_ids) else ""
        ids = ", ".join(self.saga_ids) + more
        return f"{self.saga_name} v{self.saga_version}: {self.count} unfinished instance(s) ({ids})"

    def to_json(self) -> dict[str, object]:
        return {
            "saga": self.saga_name,
            "version": self.saga_version,
            "count": self.count,
            "instances": list(self.saga_ids),
        }


def stranded(loaded: set[tuple[str, int]], instances: Iterable[Stored]) -> list[Stranded]:
    """The unfinished instances whose ``(name, version)`` is not in ``loaded``, per version."""
    found: dict[tuple[str, int], list[str]] = {}
    counts: dict[tuple[str, int], int] = {}
    for stored in instances:
        version = (stored.saga_name, stored.saga_version)
        if stored.status not in UNFINISHED or version in loaded:
            continue
        counts[version] = counts.get(version, 0) + 1
        ids = found.setdefault(version, [])
        if len(ids) < SHOWN:
            ids.append(stored.saga_id)
    return [
        Stranded(name, version, counts[(name, version)], tuple(ids))
        for (name, version), ids in sorted(found.items())
    ]


async def stored_instances(
    js: JetStreamContext, bucket: str, batch: int = 1000, fetch_timeout: float = 2.0
) -> AsyncIterator[Stored]:
    """The last value of every key of the KV ``bucket``, read once, as :class:`Stored`."""
    stream = kv_stream(bucket)
    config = ConsumerConfig(
        name=f"versions-{uuid.uuid4().hex[:12]}",
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        ack_policy=AckPolicy.NONE,
        filter_subject=kv_prefix(bucket) + ">",
        inactive_threshold=30.0,
        mem_storage=True,
        num_replicas=1,
    )
    info = await js.add_consumer(stream, config)
    remaining = info.num_pending or 0
    try:
        sub = await js.pull_subscribe_bind(consumer=info.name, stream=stream)
        while remaining > 0:
            try:
                msgs = await sub.fetch(min(batch, remaining), timeout=fetch_timeout)
            except (TimeoutError, NatsTimeoutError):
                break  # expired or deleted meanwhile: what is left is all there is
            remaining -= len(msgs)
            for msg in msgs:
                found = _parse(msg.data)
                if found is not None:
                    yield found
        await sub.unsubscribe()
    finally:
        with contextlib.suppress(Exception):
            await js.delete_consumer(stream, info.name)


def _parse(data: bytes) -> Stored | None:
    """The version facts of an unfinished record; None for a finished one (most of the bucket,
    told apart without parsing it), a delete marker or an unreadable one."""
    status = _STATUS.search(data, 0, 2048)  # the state's own status comes first in a record
    if not data or (status is not None and status.group(1) not in _UNFINISHED_BYTES):
        return None
    try:
        state = json.loads(data)["state"]
        return Stored(
            str(state["saga_name"]),
            int(state["saga_version"]),
            str(state["status"]),
            str(state["saga_id"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


async def find_stranded(
    js: JetStreamContext, bucket: str, loaded: set[tuple[str, int]]
) -> list[Stranded]:
    """Read the bucket once; only unfinished instances are kept in memory meanwhile."""
    unfinished = [s async for s in stored_instances(js, bucket) if s.status in UNFINISHED]
    return stranded(loaded, unfinished)


def versions_of(definitions: Iterable[SagaDefinition]) -> set[tuple[str, int]]:
    return {(d.name, d.version) for d in definitions}
