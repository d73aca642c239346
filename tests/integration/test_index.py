"""The instance index on a real server: writes on each status change, listing, find, reindex."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from nats.aio.client import Client

from saga.core.state import InstanceState, Status
from saga.definition import parse_definition
from saga.index import SagaIndex, SagaQuery
from saga.index.writer import IndexWriter
from saga.nats.provision import StreamSettings, ensure_index_stream
from saga.nats.topology import Topology

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
