"""Start, read, list and act on sagas from code: :class:`SagaClient` over one NATS connection.

The CLI, the admin API (over the engine's own store), the demo and the tests use it; the
functions under it work on any :class:`~saga.store.InstanceStore` (the engine and the
console pass their own). Listing goes through the index (:mod:`saga.index`) when the server
has it.
"""

from __future__ import annotations

import asyncio
import builtins
import uuid
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError

from saga import jsonwire
from saga.core.state import InstanceState
from saga.definition.model import SagaDefinition
from saga.definition.saga_id import trigger_saga_id
from saga.errors import SagaError, StoreError
from saga.index import MAX_LIMIT, SagaIndex, SagaPage, SagaQuery
from saga.nats.dlq import (
    DeadLetter,
    LetterFilter,
    Replayed,
    ReplayFailed,
    get_dead_letter,
    list_dead_letters,
    purge_dead_letters,
    replay_many,
)
from saga.nats.topology import Topology, instance_key, token
from saga.protocol import HEADER_MSG_ID, HEADER_SAGA_ID, HEADER_SAGA_NAME, trigger_message_id
from saga.store import InstanceRecord, InstanceStore, KvInstanceStore
from saga.telemetry import Telemetry
from saga.telemetry.spans import sending

if TYPE_CHECKING:
    from saga.engine.operator import ActionRequest
    from saga.nats.schedules import ScheduleEntry


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


@dataclass(frozen=True)
class ActionReply:
    """The engine's answer to an operator action."""

    ok: bool
    message: str
    status: str | None
    """The instance's status after the action."""


class SagaClient:
    """Sagas over one NATS connection: start, get, list, act on them, read dead letters.

    The connection stays the caller's (``SagaClient`` never closes it). ``store``: an
    instance store already open (the engine's, for its admin API); else the instances
    bucket is opened on first use."""

    def __init__(
        self, nc: Client, topology: Topology | None = None, store: InstanceStore | None = None
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.topology = topology or Topology()
        self._store = store

    async def store(self) -> InstanceStore:
        """The instance store (with the index when the server has it), opened once;
        :class:`StoreError` when no engine ever ran against this server."""
        if self._store is None:
            self._store = await instance_store(self.nc, self.topology)
        return self._store

    async def start(
        self, definition: SagaDefinition, data: dict[str, Any], saga_id: str | None = None
    ) -> Started:
        """Publish ``definition``'s trigger, unless an instance with this id exists
        (see :func:`start_saga`)."""
        try:
            store: InstanceStore | None = await self.store()
        except StoreError:
            store = None  # no engine ever ran here: publishing will say so
        return await start_saga(self.js, definition, data, saga_id, store)

    async def record(self, saga_id: str, name: str | None = None) -> InstanceRecord | None:
        """The stored record (state and trace context) of one instance."""
        return await find_record(await self.store(), saga_id, name)

    async def get(self, saga_id: str, name: str | None = None) -> InstanceState | None:
        """The state of one instance; ``name`` only when two sagas share the id."""
        return await find_instance(await self.store(), saga_id, name)

    async def index(self) -> SagaIndex | None:
        """The index, or ``None`` when the server has no index stream (the store's own,
        when one is open: what it reads through)."""
        if self._store is not None:
            return _index_of(self._store)
        index = SagaIndex(self.nc, self.topology)
        return index if await index.available() else None

    async def list(self, query: SagaQuery) -> SagaPage:
        """One page of instance summaries from the index (:class:`StoreError` without it)."""
        index = await self.index()
        if index is None:
            raise StoreError("this server has no index stream (SAGA_INDEX): run `saga reindex`")
        return await index.list(query)

    async def states(
        self, status: str | None = None, name: str | None = None, limit: int = 100
    ) -> builtins.list[InstanceState]:
        """Full states, newest first (see :func:`list_instances`)."""
        return await list_instances(await self.store(), status, name, limit)

    async def act(
        self, request: ActionRequest, token: str | None = None, timeout: float = 15
    ) -> ActionReply:
        """Send an operator action (abort, retry, resume) to the engine and wait for its
        answer; ``token``: the engine's admin token, when it has one."""
        from saga.engine.operator import auth_headers
        from saga.protocol import OPERATOR_SUBJECT

        try:
            reply = await self.nc.request(
                OPERATOR_SUBJECT,
                request.model_dump_json().encode(),
                timeout=timeout,
                headers=auth_headers(token),
            )
        except NoRespondersError:
            raise SagaError("no engine answered: is `saga run` running?") from None
        result = jsonwire.loads(reply.data)
        return ActionReply(bool(result["ok"]), str(result["message"]), result.get("status"))

    async def schedules(self) -> dict[str, ScheduleEntry]:
        """The schedules the server holds (scheduled sagas), by saga name."""
        from saga.nats.schedules import list_schedules

        return await list_schedules(self.js, self.topology)

    async def dead_letters(
        self, where: LetterFilter | None = None, limit: int | None = None
    ) -> builtins.list[DeadLetter]:
        """Dead letters, oldest first."""
        return await list_dead_letters(self.js, self.topology, limit=limit, where=where)

    async def dead_letter(self, sequence: int) -> DeadLetter:
        return await get_dead_letter(self.js, sequence, self.topology)

    async def replay(
        self, sequences: builtins.list[int] | None, where: LetterFilter | None = None
    ) -> builtins.list[Replayed | ReplayFailed]:
        """Publish dead letters again on their original subject, then delete them."""
        return await replay_many(self.js, sequences, topology=self.topology, where=where)

    async def purge(self, sequences: builtins.list[int]) -> builtins.list[int]:
        """Delete dead letters for good; the sequences deleted."""
        return await purge_dead_letters(self.js, sequences, self.topology)
