"""Finished instances expire from the bucket after ``finished_ttl``; unfinished ones stay."""

from __future__ import annotations

import json
from dataclasses import replace

import nats
from nats.js.errors import KeyNotFoundError

from saga.definition import parse_definition
from saga.engine import Engine
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology, instance_key
from tests.integration.test_engine import FAST, HAPPY, SHOP, silent, wait_terminal
from tests.support import ScriptedParticipant, wait_for


async def test_a_finished_instance_expires_and_a_running_one_stays(
    nats_server: EmbeddedServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    patient = parse_definition(SHOP.replace("timeout: 1s", "timeout: 5m"))
    engine = Engine(nc, {"shop": patient}, replace(FAST, finished_ttl=1.0))
    await engine.start()
    # "stuck" never gets its stock reply, and its step times out only after 5 minutes.
    rules = {
        **HAPPY,
        "stock.reserve": lambda p, h: (
            silent(p, h) if p["id"] == "stuck" else ("stock.reserved", {"reservation": "r-1"})
        ),
    }
    participant = await ScriptedParticipant(nc, rules).start()
    try:
        js = nc.jetstream()
        for saga_id in ("done", "stuck"):
            body = {"id": saga_id, "sku": "A", "amount": 5}
            await js.publish("shop.ordered", json.dumps(body).encode())
        assert (await wait_terminal(nc, "done")).status.value == "completed"
        kv = await js.key_value(Topology().instances_bucket)

        async def expired() -> bool:
            try:
                await kv.get(instance_key("shop", "done"))
            except KeyNotFoundError:
                return True
            return False

        await wait_for(expired, timeout=10, message="the completed instance to expire")
        stuck = await kv.get(instance_key("shop", "stuck"))
        assert stuck.value is not None
        assert json.loads(stuck.value)["state"]["status"] == "running"
    finally:
        await participant.stop()
        await engine.stop()
        await nc.close()
