"""Partitioned replicas on a real server: each partition has one owner, and ownership moves
when replicas join, leave cleanly or vanish, without losing or double-driving a saga."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace

import nats
import pytest
from nats.aio.client import Client

from saga.client import find_instance, instance_store
from saga.core.state import InstanceState
from saga.definition import parse_definition
from saga.engine import Engine
from saga.engine.partitions import assign, partition_of
from saga.nats.provision import StreamSettings
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology, instance_key
from tests.integration.test_engine import FAST, HAPPY, SHOP, fail, ok
from tests.support import ScriptedParticipant, wait_for

PARTITIONED = replace(
    FAST,
    # Unacked messages come back soon, but often enough that a loaded machine cannot
    # exhaust their deliveries (an exhausted message would strand its saga).
    streams=StreamSettings(ack_wait_backoff=(1.0, 2.0, 4.0), max_deliver=10),
    partitions=6,
    heartbeat=0.2,
    member_ttl=1.5,
    pin_timeout=1.0,
    fetch_wait=0.2,
)


@pytest.fixture
async def clients(nats_server: EmbeddedServer) -> AsyncIterator[list[Client]]:
    opened = [await nats.connect(nats_server.url) for _ in range(4)]
    yield opened
    for nc in opened:
        if not nc.is_closed:
            await nc.close()


def engine_on(nc: Client) -> Engine:
    return Engine(nc, {"shop": parse_definition(SHOP)}, PARTITIONED)


async def balanced(*engines: Engine) -> bool:
    """Every partition owned by exactly one of ``engines``, as the member list deals them."""
    owned = [p for engine in engines for p in engine.owned]
    wanted = assign([e.member_id for e in engines], PARTITIONED.partitions)
    return sorted(owned) == list(range(PARTITIONED.partitions)) and all(
        sorted(e.owned) == wanted[e.member_id] for e in engines
    )


async def start_sagas(nc: Client, ids: list[str]) -> None:
    js = nc.jetstream()
    for saga_id in ids:
        body = {"id": saga_id, "sku": "A", "amount": 5}
        await js.publish("shop.ordered", json.dumps(body).encode())


async def all_ended(nc: Client, ids: list[str], status: str = "completed") -> list[InstanceState]:
    store = await instance_store(nc.jetstream(), Topology())
    states: list[InstanceState] = []

    async def done() -> bool:
        states.clear()
        for saga_id in ids:
            state = await find_instance(store, saga_id, "shop")
            if state is None or state.status.value != status:
                return False
            states.append(state)
        return True

    await wait_for(done, timeout=60, message=f"all {len(ids)} sagas {status}")
    return states


async def test_two_replicas_split_the_partitions_and_drive_every_saga_once(
    clients: list[Client],
) -> None:
    first, second = engine_on(clients[0]), engine_on(clients[1])
    await first.start()
    await second.start()
    try:
        await wait_for(lambda: balanced(first, second), timeout=10, message="balanced")
        assert len(first.owned) == len(second.owned) == 3
        participant = await ScriptedParticipant(clients[2], HAPPY).start()
        ids = [f"o-{n}" for n in range(40)]
        await start_sagas(clients[3], ids)
        states = await all_ended(clients[3], ids)
        await participant.stop()
        # Each command went out exactly once: no instance was driven by both replicas.
        commands = [r.subject for r in participant.received]
        assert commands.count("stock.reserve") == len(ids)
        assert commands.count("ship.book") == len(ids)
        assert all(len([h for h in s.history if h.event == "step.started"]) == 3 for s in states)
        # Both replicas did work: the ids spread over all partitions.
        used = {partition_of(instance_key("shop", i), 6) for i in ids}
        assert used == set(range(6))
    finally:
        await second.stop()
        await first.stop()


async def test_a_replica_that_leaves_hands_its_partitions_over(clients: list[Client]) -> None:
    first, second = engine_on(clients[0]), engine_on(clients[1])
    await first.start()
    await second.start()
    await wait_for(lambda: balanced(first, second), timeout=10, message="balanced")
    await second.stop()
    try:
        await wait_for(lambda: balanced(first), timeout=10, message="first owns all")
        participant = await ScriptedParticipant(clients[2], HAPPY).start()
        ids = [f"left-{n}" for n in range(20)]
        await start_sagas(clients[3], ids)
        await all_ended(clients[3], ids)
        await participant.stop()
    finally:
        await first.stop()


async def test_a_crashed_replica_loses_its_partitions_and_its_work_is_finished(
    clients: list[Client],
) -> None:
    """The second replica's connection dies mid-run without a goodbye: its membership key
    expires, its pins time out, and the first replica finishes its sagas."""
    first, second = engine_on(clients[0]), engine_on(clients[1])
    await first.start()
    await second.start()
    await wait_for(lambda: balanced(first, second), timeout=10, message="balanced")
    slow = {**HAPPY, "pay.charge": ok("pay.charged"), "ship.book": fail("ship.failed", "no")}
    participant = await ScriptedParticipant(clients[2], slow).start()
    ids = [f"crash-{n}" for n in range(30)]
    await start_sagas(clients[3], ids)
    await clients[1].close()  # no unpin, no leave: like a SIGKILL
    try:
        await wait_for(lambda: balanced(first), timeout=30, message="first took over")
        await all_ended(clients[3], ids, status="compensated")
    finally:
        await participant.stop()
        await first.stop()
        await asyncio.gather(second.stop(), return_exceptions=True)
