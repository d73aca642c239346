"""Payload contracts on nats-server: a trigger or success that breaks its ``schema`` is
dead-lettered with the validation error; a broken success fails its step (the saga
compensates); the consumer goes on with the next saga."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client

from saga.definition import parse_definition
from saga.engine import Engine, EngineSettings
from saga.nats.reader import StoredMessage, read_stream
from saga.protocol import HEADER_DLQ_CODE, HEADER_DLQ_REASON, HEADER_DLQ_SUBJECT
from tests.support import ScriptedParticipant, wait_for

SHOP = """
name: shop
trigger:
  event: shop.ordered
  id: {field: id}
  schema: {type: object, required: [id, amount], properties: {amount: {type: number}}}
steps:
  - name: reserve
    publish: {event: stock.reserve, data: {id: trigger.id}}
    success: stock.reserved
    timeout: 5s
    compensate: {publish: {event: stock.release, data: {id: trigger.id}}}
  - name: charge
    publish: {event: pay.charge, data: {id: trigger.id}}
    success: pay.charged
    failure: pay.declined
    timeout: 5s
    schema: {type: object, required: [receipt], properties: {receipt: {type: string}}}
"""
REPLIES = {
    "stock.reserve": lambda p, h: ("stock.reserved", {}),
    "stock.release": lambda p, h: None,
    # the saga id says what the payment service answers: a receipt, or a broken one
    "pay.charge": lambda p, h: ("pay.charged", {"receipt": 7 if "bad" in p["id"] else "r-1"}),
}


@pytest.fixture
async def engine(nc: Client) -> AsyncIterator[Engine]:
    engine = Engine(nc, {"shop": parse_definition(SHOP)}, EngineSettings(fetch_wait=0.2))
    await engine.start()
    participant = await ScriptedParticipant(nc, REPLIES).start()
    yield engine
    await participant.stop()
    await engine.stop()


async def finished(nc: Client, saga_id: str) -> str:
    """The saga's final status, from its lifecycle event."""
    found: list[StoredMessage] = []

    async def ended() -> bool:
        found[:] = [
            m
            for m in await read_stream(nc.jetstream(), "SAGA_EVENTS", ["saga.status.shop.>"])
            if m.headers.get("Saga-Id") == saga_id
        ]
        return bool(found)

    await wait_for(ended, message=f"saga {saga_id} to finish")
    return found[0].subject.rsplit(".", 1)[-1]


async def test_contracts_are_kept_at_intake_and_the_consumer_goes_on(
    nc: Client, engine: Engine
) -> None:
    js = nc.jetstream()
    await js.publish("shop.ordered", json.dumps({"id": "t-1", "amount": "ten"}).encode())
    await js.publish("shop.ordered", json.dumps({"id": "bad-1", "amount": 5}).encode())
    await js.publish("shop.ordered", json.dumps({"id": "ok-1", "amount": 5}).encode())

    assert await finished(nc, "ok-1") == "completed"
    assert await finished(nc, "bad-1") == "compensated"
    letters = await read_stream(js, "SAGA_DLQ")
    assert [
        (m.subject, m.headers[HEADER_DLQ_SUBJECT], m.headers[HEADER_DLQ_REASON]) for m in letters
    ] == [
        (
            "saga.dlq.schema-violation",
            "shop.ordered",
            "trigger payload at $.amount: 'ten' is not of type 'number'",
        ),
        (
            "saga.dlq.schema-violation",
            "pay.charged",
            "success payload of step 'charge' at $.receipt: 7 is not of type 'string'",
        ),
    ]
    assert all(m.headers[HEADER_DLQ_CODE] == "schema-violation" for m in letters)
    started = await read_stream(js, "SAGA_EVENTS", ["stock.reserve"])
    assert "t-1" not in {
        m.headers.get("Saga-Id") for m in started
    }  # the bad trigger started nothing
    released = await read_stream(js, "SAGA_EVENTS", ["stock.release"])
    assert [m.headers.get("Saga-Id") for m in released] == ["bad-1"]
