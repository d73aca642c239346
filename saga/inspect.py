"""Read instances for people and tools: find one by id, list many, start one."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, replace
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError

from saga import jsonwire
from saga.core.state import InstanceState
from saga.definition.model import SagaDefinition
from saga.definition.saga_id import trigger_saga_id
from saga.errors import StoreError
from saga.index import MAX_LIMIT, SagaIndex, SagaQuery
from saga.nats.topology import Topology, instance_key, token
from saga.protocol import HEADER_MSG_ID, HEADER_SAGA_ID, HEADER_SAGA_NAME, trigger_message_id
from saga.store import InstanceRecord, InstanceStore, KvInstanceStore
from saga.telemetry import Telemetry
from saga.telemetry.spans import sending


async def instance_store(nc: Client, topology: Topology) -> KvInstanceStore:
    """The instances bucket, with the index when the server has it (else finding an
    instance without its saga's name, and listing, read every instance)."""
    try:
        kv = await nc.jetstream().key_value(topology.instances_bucket)
        store = KvInstanceStore(nc, topology.instances_bucket, kv)
    except BucketNotFoundError:
        raise StoreError(
            f"no bucket {topology.instances_bucket!r} on this server: has `saga run` been "
            "started against it? (check --nats / SAGA_NATS_URL)"
        ) from None
    index = SagaIndex(nc, topology, timeout=2.0)
    if await index.available():
        store.index = SagaIndex(nc, topology)
    return store


def _index_of(store: InstanceStore) -> SagaIndex | None:
    return store.index if isinstance(store, KvInstanceStore) else None


async def find_record(
    store: InstanceStore, saga_id: str, name: str | None = None
) -> InstanceRecord | None:
    """By ``name`` when given, else the one instance of any saga with this id."""
    if name is not None:
        stored = await store.load(instance_key(name, saga_id))
        return stored.record if stored else None
    index = _index_of(store)
    if index is not None:
        for found in await index.find(saga_id):
            stored = await store.load(instance_key(found.saga_name, saga_id))
            if stored is not None and stored.record.state.saga_id == saga_id:
                return stored.record
        return None
    suffix = "." + token(saga_id)
    for key in await store.keys():
        if key.endswith(suffix):
            stored = await store.load(key)
            if stored is not None and stored.record.state.saga_id == saga_id:
                return stored.record
    return None


async def find_instance(
    store: InstanceStore, saga_id: str, name: str | None = None
) -> InstanceState | None:
    record = await find_record(store, saga_id, name)
    return record.state if record else None


async def list_instances(
    store: InstanceStore, status: str | None = None, name: str | None = None, limit: int = 100
) -> list[InstanceState]:
    """Newest first; through the index when the store has one (newest: latest to enter its
    status), else by reading every instance (newest: latest started)."""
    index = _index_of(store)
    if index is not None:
        return await _listed(store, index, SagaQuery(saga=name, state=status), limit)
    found = []
    async for record in store.scan():
        state = record.state
        if (status is None or state.status.value == status) and (
            name is None or state.saga_name == name
        ):
            found.append(state)
    found.sort(key=lambda s: s.started_at, reverse=True)
    return found[:limit]


@dataclass(frozen=True)
class Started:
    """What ``start_saga`` did: started ``saga_id``, or found it started already."""

    saga_id: str
    existing: InstanceState | None = None
    """The instance already stored under this id (the trigger was then not published)."""
    duplicate: bool = False
    """The server dropped the trigger as a repeat of one published within its duplicate
    window (``Nats-Msg-Id``), before the engine had stored the first one's instance."""

    @property
    def new(self) -> bool:
        return self.existing is None and not self.duplicate

    def describe(self) -> str:
        """One line for a person: what happened instead of a new saga."""
        if self.existing is not None:
            state = self.existing
            when = state.started_at.strftime("%Y-%m-%d %H:%M:%S")
            return (
                f"{self.saga_id} already exists (started {when}, state {state.status.value}); "
                "no new saga started"
            )
        if self.duplicate:
            return (
                f"{self.saga_id} was triggered moments ago (the server dropped this trigger as "
                "a duplicate); no new saga started"
            )
        return f"{self.saga_id} started"


async def _listed(
    store: InstanceStore, index: SagaIndex, query: SagaQuery, limit: int
) -> list[InstanceState]:
    """The states of up to ``limit`` instances ``query`` selects, paging the index."""
    states: list[InstanceState] = []
    cursor = None
    while len(states) < limit:
        wanted = min(MAX_LIMIT, limit - len(states), 256)
        page = await index.list(replace(query, limit=wanted, cursor=cursor))
        loaded = await asyncio.gather(
            *(store.load(instance_key(s.saga_name, s.saga_id)) for s in page.items)
        )
        states += [stored.record.state for stored in loaded if stored is not None]
        cursor = page.cursor
        if cursor is None:
            break
    return states[:limit]


async def start_saga(
    js: JetStreamContext,
    definition: SagaDefinition,
    data: dict[str, Any],
    saga_id: str | None = None,
    store: InstanceStore | None = None,
) -> Started:
    """Publish the trigger event for ``saga_id`` (given, from the payload, or new), unless
    ``store`` already holds an instance with that id."""
    source = definition.trigger.id
    saga_id = saga_id or trigger_saga_id(definition, data) or str(uuid.uuid4())
    if store is not None:
        existing = await find_instance(store, saga_id, definition.name)
        if existing is not None:
            return Started(saga_id, existing)
    headers = {
        HEADER_SAGA_ID: saga_id,
        HEADER_SAGA_NAME: definition.name,
        HEADER_MSG_ID: trigger_message_id(definition.name, saga_id),
    }
    if source.header is not None:
        headers[source.header] = saga_id
    subject = definition.trigger.event
    with sending(
        Telemetry.current(), subject, headers, saga_id=saga_id, message_id=headers[HEADER_MSG_ID]
    ):
        ack = await js.publish(subject, jsonwire.dumps(data), headers=headers)
    if ack.duplicate:
        existing = await find_instance(store, saga_id, definition.name) if store else None
        return Started(saga_id, existing, duplicate=True)
    return Started(saga_id)
