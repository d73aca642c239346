"""One suite every instance store passes: the in-memory one and the JetStream KV one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats
import pytest
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError

from saga.core.state import InstanceState
from saga.errors import RevisionConflict
from saga.nats.provision import StreamSettings, ensure_bucket
from saga.nats.server import EmbeddedServer
from saga.store import InstanceRecord, InstanceStore, KvInstanceStore, MemoryInstanceStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def record(saga_id: str, origin: str = "SAGA_EVENTS:1") -> InstanceRecord:
    state = InstanceState(
        saga_id=saga_id, saga_name="shop", saga_version=1, started_at=T0, updated_at=T0
    )
    outbox = [{"type": "finished", "status": "completed"}]
    return InstanceRecord(state=state, outbox=outbox, origin=origin, trace={"traceparent": "x"})


@pytest.fixture
async def client(nats_server: EmbeddedServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


@pytest.fixture(params=["memory", "kv"])
async def store(request: pytest.FixtureRequest, client: Client) -> InstanceStore:
    if request.param == "memory":
        return MemoryInstanceStore()
    kv = await ensure_bucket(client.jetstream(), "instances", StreamSettings())
    return KvInstanceStore(client, "instances", kv)


async def test_create_then_load_returns_the_record_and_its_revision(store: InstanceStore) -> None:
    revision = await store.create("shop.o-1", record("o-1"))
    loaded = await store.load("shop.o-1")
    assert loaded is not None
    assert loaded.revision == revision
    assert loaded.record == record("o-1")


async def test_missing_key_loads_as_none(store: InstanceStore) -> None:
    assert await store.load("shop.nobody") is None
    assert await store.load_latest("shop.nobody") is None


async def test_load_latest_reads_the_last_write(store: InstanceStore) -> None:
    first = await store.create("shop.o-9", record("o-9"))
    second = await store.update("shop.o-9", record("o-9", "SAGA_EVENTS:2"), first)
    latest = await store.load_latest("shop.o-9")
    assert latest is not None
    assert latest.revision == second
    assert latest.record.origin == "SAGA_EVENTS:2"


async def test_create_of_an_existing_key_is_a_conflict(store: InstanceStore) -> None:
    await store.create("shop.o-2", record("o-2"))
    with pytest.raises(RevisionConflict):
        await store.create("shop.o-2", record("o-2", origin="SAGA_EVENTS:2"))
    loaded = await store.load("shop.o-2")
    assert loaded is not None
    assert loaded.record.origin == "SAGA_EVENTS:1"


async def test_update_at_the_current_revision_wins_and_a_stale_one_loses(
    store: InstanceStore,
) -> None:
    first = await store.create("shop.o-3", record("o-3"))
    second = await store.update("shop.o-3", record("o-3", origin="SAGA_EVENTS:2"), first)
    assert second > first
    with pytest.raises(RevisionConflict):
        await store.update("shop.o-3", record("o-3", origin="SAGA_EVENTS:3"), first)
    loaded = await store.load("shop.o-3")
    assert loaded is not None
    assert (loaded.revision, loaded.record.origin) == (second, "SAGA_EVENTS:2")


async def test_update_of_a_missing_key_is_a_conflict(store: InstanceStore) -> None:
    with pytest.raises(RevisionConflict):
        await store.update("shop.o-4", record("o-4"), 1)


async def test_of_two_racing_writers_exactly_one_wins(store: InstanceStore) -> None:
    revision = await store.create("shop.o-5", record("o-5"))
    results = await asyncio.gather(
        store.update("shop.o-5", record("o-5", origin="a:1"), revision),
        store.update("shop.o-5", record("o-5", origin="b:1"), revision),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["RevisionConflict", "int"]


async def test_keys_and_scan_list_every_instance(store: InstanceStore) -> None:
    for n in range(3):
        await store.create(f"shop.s-{n}", record(f"s-{n}"))
    assert sorted(await store.keys()) == ["shop.s-0", "shop.s-1", "shop.s-2"]
    assert sorted([r.state.saga_id async for r in store.scan()]) == ["s-0", "s-1", "s-2"]


async def test_kv_create_over_a_deleted_key_succeeds(client: Client) -> None:
    kv = await ensure_bucket(client.jetstream(), "instances", StreamSettings())
    store = KvInstanceStore(client, "instances", kv)
    await store.create("shop.d-1", record("d-1"))
    await kv.delete("shop.d-1")
    assert await store.load("shop.d-1") is None
    revision = await store.create("shop.d-1", record("d-1", origin="SAGA_EVENTS:9"))
    loaded = await store.load("shop.d-1")
    assert loaded is not None
    assert (loaded.revision, loaded.record.origin) == (revision, "SAGA_EVENTS:9")


async def test_kv_reads_a_record_written_in_the_full_encoding_and_writes_over_it(
    client: Client,
) -> None:
    """Records written before the store left out the None fields still load, equal."""
    kv = await ensure_bucket(client.jetstream(), "instances", StreamSettings())
    store = KvInstanceStore(client, "instances", kv)
    old = record("f-1")
    full = InstanceRecord.__pydantic_serializer__.to_json(old)
    assert b'"finished_at":null' in full
    revision = await kv.put("shop.f-1", full)
    loaded = await store.load("shop.f-1")
    assert loaded is not None
    assert (loaded.record, loaded.revision) == (old, revision)
    new = await store.update("shop.f-1", record("f-1", origin="SAGA_EVENTS:2"), revision)
    entry = await kv.get("shop.f-1")
    assert entry.value is not None
    assert entry.revision == new
    assert b"null" not in entry.value  # this record has no user data that is null
    latest = await store.load_latest("shop.f-1")
    assert latest is not None
    assert latest.record == record("f-1", origin="SAGA_EVENTS:2")


async def test_kv_write_without_an_ack_times_out(client: Client) -> None:
    kv = await ensure_bucket(client.jetstream(), "instances", StreamSettings())
    store = KvInstanceStore(client, "instances", kv, timeout=0.2)
    store._prefix = "nobody.listens."  # a subject no stream captures: never acknowledged
    await client.subscribe("nobody.listens.>")  # an interest, so no "no responders" either
    with pytest.raises(NatsTimeoutError):
        await store.create("shop.t-1", record("t-1"))
