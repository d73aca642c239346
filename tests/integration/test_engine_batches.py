"""A fetched batch goes through the engine together (``Applier.apply_batch``): many
instances at once, and an instance's later events in the same batch after its earlier ones."""

from __future__ import annotations

import json

import nats

from saga.definition import parse_definition
from saga.engine import Engine
from saga.nats.server import EmbeddedServer
from tests.integration.test_engine import FAST, HAPPY, SHOP, wait_terminal
from tests.support import ScriptedParticipant

REPLY_HEADERS = {"Saga-Id": "b-0", "Saga-Name": "shop", "Saga-Step": "reserve"}


async def test_one_fetched_batch_of_many_instances_keeps_each_instances_order(
    nats_server: EmbeddedServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        engine = Engine(nc, {"shop": parse_definition(SHOP)}, FAST)
        await engine.start()  # provisions the streams and the durable consumer
        await engine.stop()
        js = nc.jetstream()
        for i in range(20):
            order = {"id": f"b-{i}", "sku": "A", "amount": 5}
            await js.publish("shop.ordered", json.dumps(order).encode())
        # b-0's reply after its trigger and b-1's trigger again: all in the first fetch
        await js.publish("stock.reserved", b'{"reservation": "early"}', headers=REPLY_HEADERS)
        await js.publish("shop.ordered", b'{"id": "b-1", "sku": "A", "amount": 5}')
        participant = await ScriptedParticipant(nc, HAPPY).start()
        engine = Engine(nc, {"shop": parse_definition(SHOP)}, FAST)
        await engine.start()
        try:
            states = [await wait_terminal(nc, f"b-{i}") for i in range(20)]
        finally:
            await participant.stop()
            await engine.stop()
    finally:
        await nc.close()
    assert [s.status.value for s in states] == ["completed"] * 20
    # applied after the trigger (before it, it would have found no instance), and first
    assert states[0].context["steps"]["reserve"] == {"reservation": "early"}
    assert [h.event for h in states[1].history].count("saga.started") == 1
    assert participant.commands("b-1") == [
        ("stock.reserve", "step"),
        ("pay.charge", "step"),
        ("ship.book", "step"),
    ]
