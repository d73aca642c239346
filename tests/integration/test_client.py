"""``SagaClient`` against a real server and engine: start (once per id), get, list through
the index, act, and read and purge dead letters, all over one connection."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client

from saga.client import SagaClient
from saga.definition import parse_definition
from saga.engine import Engine, EngineSettings
from saga.engine.operator import ActionRequest
from saga.errors import SagaError
from saga.index import SagaQuery
from saga.nats.dlq import LetterFilter
from saga.nats.provision import StreamSettings
from tests.support import wait_for

SHOP = parse_definition("""
name: shop
trigger: {event: shop.ordered, id: {field: id}}
steps:
  - name: reserve
    publish: {event: stock.reserve, data: {id: saga.id}}
    success: stock.reserved
    timeout: 30s
""")


@pytest.fixture
async def client(nc: Client) -> AsyncIterator[SagaClient]:
    engine = Engine(
        nc,
        {"shop": SHOP},
        EngineSettings(streams=StreamSettings(ack_wait_backoff=(1.0,)), fetch_wait=0.2),
    )
    await engine.start()
    yield SagaClient(nc)
    await engine.stop()


async def test_start_get_list_and_act(client: SagaClient) -> None:
    started = await client.start(SHOP, {"id": "o-1"})
    assert started.new
    assert started.saga_id == "o-1"

    async def running() -> bool:
        state = await client.get("o-1")  # no name: found through the index
        return state is not None and state.status.value == "running"

    await wait_for(running, message="o-1 running")
    again = await client.start(SHOP, {"id": "o-1"})
    assert again.existing is not None  # found: nothing published twice

    async def listed() -> bool:
        page = await client.list(SagaQuery(saga="shop", state="running"))
        return [s.saga_id for s in page.items] == ["o-1"]

    await wait_for(listed, message="o-1 in the index")
    assert [s.saga_id for s in await client.states(name="shop")] == ["o-1"]

    reply = await client.act(ActionRequest(action="abort", saga_id="o-1", reason="test"))
    assert reply.ok, reply.message
    assert reply.status in ("compensating", "compensated")
    refused = await client.act(ActionRequest(action="resume", saga_id="nope"))
    assert not refused.ok


async def test_dead_letters_are_listed_shown_and_purged(client: SagaClient) -> None:
    await client.js.publish("shop.ordered", b"not json")

    async def dead_lettered() -> bool:
        return bool(await client.dead_letters(LetterFilter(code="malformed")))

    await wait_for(dead_lettered, message="the malformed trigger in the DLQ")
    [letter] = await client.dead_letters()
    shown = await client.dead_letter(letter.sequence)
    assert (shown.subject, shown.data) == ("shop.ordered", b"not json")
    assert await client.purge([letter.sequence]) == [letter.sequence]
    assert await client.dead_letters() == []


async def test_act_without_an_engine_says_so(nc: Client) -> None:
    with pytest.raises(SagaError, match="no engine answered"):
        await SagaClient(nc).act(ActionRequest(action="abort", saga_id="o-1"))
