"""The instance index on a real server: writes on each status change, listing, find, reindex."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from nats.aio.client import Client

from saga.admin import AdminServer, AdminSettings
from saga.client import find_record, instance_store, list_instances
from saga.core.state import InstanceState, Status
from saga.definition import parse_definition
from saga.definition.catalog import Catalog
from saga.engine import Engine
from saga.index import SagaIndex, SagaPage, SagaQuery
from saga.index.entry import entry_subject
from saga.index.rebuild import reindex
from saga.index.writer import IndexWriter
from saga.nats.direct import direct_get
from saga.nats.provision import StreamSettings, ensure_index_stream
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology
from tests.integration.test_admin import TOKEN, get
from tests.integration.test_engine import FAST, HAPPY, fail, ok, run_saga
from tests.integration.test_engine import SHOP as SHOP_YAML
from tests.support import wait_for

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SHOP = parse_definition(
    """
name: shop
trigger: {event: shop.ordered, id: {field: order_id}}
search: {customer: trigger.customer_id, total: trigger.total}
steps:
  - name: pay
    publish: {event: pay.charge}
    success: pay.charged
"""
)


def state(i: int, status: Status = Status.RUNNING, customer: str = "cus-1") -> InstanceState:
    at = T0 + timedelta(minutes=i)
    return InstanceState(
        saga_id=f"o-{i}",
        saga_name="shop",
        saga_version=1,
        status=status,
        started_at=at,
        updated_at=at,
        context={"trigger": {"customer_id": customer, "total": i}, "steps": {}},
    )


@pytest.fixture
async def index(nc: Client) -> SagaIndex:
    assert await ensure_index_stream(nc.jetstream(), Topology(), StreamSettings())
    return SagaIndex(nc)


async def test_a_status_change_moves_the_entry(nc: Client, index: SagaIndex) -> None:
    writer = IndexWriter(nc, finished_ttl=60)
    running = state(1)
    await writer.write(SHOP, None, running)
    [found] = await index.find("o-1")
    assert (found.status, found.search) == (Status.RUNNING, {"customer": "cus-1", "total": "1"})
    parked = running.model_copy(update={"status": Status.PARKED, "updated_at": T0})
    await writer.write(SHOP, running, parked)
    assert [s.status for s in await index.find("o-1")] == [Status.PARKED]
    assert [s.status for s in await index.find("o-1", "shop")] == [Status.PARKED]
    assert await index.find("o-1", "other") == []
    page = await index.list(SagaQuery(state="running"))
    assert page.items == []
    page = await index.list(SagaQuery(state="parked", saga="shop"))
    assert [s.saga_id for s in page.items] == ["o-1"]

    # The tombstone of the running entry, the stream's last message, expires: still listed.
    async def expired() -> bool:
        got = await direct_get(nc, "SAGA_INDEX", {"seq": 1, "next_by_subj": "saga.index.>"})
        return [m.data != b"" for m in got] == [True]

    await wait_for(expired, message="the tombstone to expire")
    page = await index.list(SagaQuery(state="parked", saga="shop"))
    assert [s.saga_id for s in page.items] == ["o-1"]


async def test_listing_is_newest_first_and_pages(nc: Client, index: SagaIndex) -> None:
    writer = IndexWriter(nc)
    for i in range(30):
        await writer.write(SHOP, None, state(i, Status.PARKED if i % 3 == 0 else Status.RUNNING))
    page = await index.list(SagaQuery(state="parked", limit=4))
    assert [s.saga_id for s in page.items] == ["o-27", "o-24", "o-21", "o-18"]
    seen = [s.saga_id for s in page.items]
    while page.cursor is not None:
        page = await index.list(SagaQuery(state="parked", limit=4, cursor=page.cursor))
        seen += [s.saga_id for s in page.items]
    assert seen == [f"o-{i}" for i in range(27, -1, -3)]
    every = await index.list(SagaQuery(limit=100))
    assert (len(every.items), every.cursor) == (30, None)
    window = await index.list(
        SagaQuery(since=T0 + timedelta(minutes=10), until=T0 + timedelta(minutes=14))
    )
    assert [s.saga_id for s in window.items] == ["o-14", "o-13", "o-12", "o-11", "o-10"]
    where = await index.list(SagaQuery(where={"total": "12"}))
    assert [s.saga_id for s in where.items] == ["o-12"]


SEARCHED = SHOP_YAML + "search: {customer: trigger.customer}\n"
STUCK = {
    "stock.reserve": ok("stock.reserved", reservation="r-2"),
    "pay.charge": fail("pay.declined", "card declined"),
    "stock.release": fail("stock.release-failed", "warehouse offline"),
}


async def _ran_two_sagas(nc: Client, index: SagaIndex) -> None:
    """o-1 completes (customer cus-1), o-2 parks (cus-2); waits until the index says so."""
    await run_saga(nc, HAPPY, "o-1", customer="cus-1")
    await run_saga(nc, STUCK, "o-2", customer="cus-2")

    async def indexed() -> bool:
        found = [await index.find(i, "shop") for i in ("o-1", "o-2")]
        return [[s.status.value for s in f] for f in found] == [["completed"], ["parked"]]

    await wait_for(indexed, message="both sagas indexed in their final status")


async def _assert_listed(index: SagaIndex) -> None:
    def ids(page: SagaPage) -> list[str]:
        return [s.saga_id for s in page.items]

    assert ids(await index.list(SagaQuery(state="completed"))) == ["o-1"]
    assert ids(await index.list(SagaQuery(saga="shop", state="parked"))) == ["o-2"]
    assert ids(await index.list(SagaQuery(state="running"))) == []
    assert ids(await index.list(SagaQuery(where={"customer": "cus-2"}))) == ["o-2"]
    assert ids(await index.list(SagaQuery(where={"customer": "cus-2"}, state="running"))) == []
    assert ids(await index.list(SagaQuery(saga="shop"))) == ["o-2", "o-1"]
    [parked] = await index.find("o-2")
    assert (parked.failure_step, parked.search) == ("charge", {"customer": "cus-2"})


async def test_the_engine_indexes_each_status_change(
    nats_server: EmbeddedServer, nc: Client
) -> None:
    engine = Engine(nc, {"shop": parse_definition(SEARCHED)}, FAST)
    await engine.start()
    try:
        index = SagaIndex(nc)
        await _ran_two_sagas(nc, index)
        await _assert_listed(index)
        # A finished instance's entries expire with its record.
        [entry] = await direct_get(
            nc, "SAGA_INDEX", {"last_by_subj": entry_subject("shop", "completed", "o-1")}
        )
        assert entry.headers["Nats-TTL"] == str(round(FAST.finished_ttl))
        # The CLI's and the admin API's lookups go through the index.
        store = await instance_store(nc, Topology())
        assert store.index is not None
        record = await find_record(store, "o-2")
        assert record is not None
        assert record.state.status.value == "parked"
        assert [s.saga_id for s in await list_instances(store, "completed")] == ["o-1"]
        await _admin_lists_through_the_index(engine)
        await _cli_lists_through_the_index(nats_server.url)
    finally:
        await engine.stop()


async def _admin_lists_through_the_index(engine: Engine) -> None:
    server = AdminServer(engine.view(), AdminSettings(port=0, token=TOKEN))
    url = await server.start()
    try:
        status, listed = await get(url, "/sagas?where=customer%3Dcus-2")
        assert (status, [s["saga_id"] for s in listed]) == (200, ["o-2"])
        assert listed[0]["search"] == {"customer": "cus-2"}
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.get(url + "/sagas?saga=shop&limit=1") as first:
                assert [s["saga_id"] for s in await first.json()] == ["o-2"]
                cursor = first.headers["Saga-Next-Cursor"]
            async with session.get(url + f"/sagas?saga=shop&limit=1&cursor={cursor}") as second:
                assert [s["saga_id"] for s in await second.json()] == ["o-1"]
                assert "Saga-Next-Cursor" not in second.headers
        assert (await get(url, "/sagas?since=yesterday"))[0] == 400
        assert (await get(url, "/sagas?where=customer"))[0] == 400
    finally:
        await server.stop()


async def _cli_lists_through_the_index(url: str) -> None:
    async def saga(*args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "saga",
            *args,
            "--nats",
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        return out.decode()

    page = json.loads(await saga("list", "--where", "customer=cus-1", "--since", "1h", "--json"))
    assert [s["saga_id"] for s in page["items"]] == ["o-1"]
    assert "o-2" in await saga("list", "--saga", "shop", "--state", "parked")
    assert "parked" in await saga("status", "o-2")


async def test_reindex_rebuilds_a_deleted_or_stale_index(
    nats_server: EmbeddedServer, nc: Client
) -> None:
    catalog = Catalog.of({"shop": parse_definition(SEARCHED)})
    engine = Engine(nc, catalog, FAST)
    await engine.start()
    try:
        index = SagaIndex(nc)
        await _ran_two_sagas(nc, index)
    finally:
        await engine.stop()
    js = nc.jetstream()
    await js.delete_stream("SAGA_INDEX")
    rebuilt = await reindex(nc, catalog=catalog, finished_ttl=3600)
    assert (rebuilt.instances, rebuilt.emptied) == (2, 0)
    await _assert_listed(index)
    # A stale entry (o-1 still shown running) and an entry of no instance are emptied;
    # entries that were right are left where they are.
    [right] = await index.find("o-2")
    stale = (await index.find("o-1"))[0].model_copy(update={"status": Status.RUNNING})
    await js.publish(entry_subject("shop", "running", "o-1"), stale.to_json())
    ghost = stale.model_copy(update={"saga_id": "ghost"})
    await js.publish(entry_subject("shop", "running", "ghost"), ghost.to_json())
    rebuilt = await reindex(nc, catalog=catalog, finished_ttl=3600)
    assert (rebuilt.written, rebuilt.emptied, rebuilt.raced) == (0, 2, 0)
    await _assert_listed(index)
    assert await index.find("ghost") == []
    assert await index.find("o-2") == [right]


async def test_a_failed_index_write_is_logged_not_raised(
    nc: Client, caplog: pytest.LogCaptureFixture
) -> None:
    # given no index stream on the server, when the engine's writer writes an entry
    await IndexWriter(nc).write(SHOP, None, state(1))
    # then the transition goes on, and the log says how to repair the index
    assert "index writes failed" in caplog.text
    assert "saga reindex" in caplog.text
    assert not await SagaIndex(nc).available()
