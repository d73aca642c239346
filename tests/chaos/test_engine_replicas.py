"""(d) Two or three engine replicas at once on the same streams: no instance driven twice,
no event lost."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import nats
import pytest

from saga.client import SagaClient
from saga.definition import parse_definition
from saga.engine import Engine, EngineSettings
from saga.nats.connection import NatsSettings, connect
from saga.nats.provision import StreamSettings
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology
from tests.chaos.conftest import Scale
from tests.chaos.harness import (
    Figures,
    Fleet,
    assert_clean,
    feed,
    plan,
    running,
    verdict,
    wait_all_ended,
)
from tests.support import wait_for


@pytest.mark.slow
async def test_engine_replicas_share_the_work(
    nats_server: EmbeddedServer, tmp_path: Path, scale: Scale, figures: Figures
) -> None:
    planned = plan(scale.sagas(120, 600), seed=4, prefix="rep")
    replicas = int(scale.sagas(2, 3))
    started = time.monotonic()
    nc = await connect(NatsSettings(url=nats_server.url, name="chaos"))
    js = nc.jetstream()
    fleet = Fleet(nats_server.url, tmp_path)
    async with running(fleet):
        for index in range(replicas):
            fleet.start_engine(index)
        fleet.start_services()
        await feed(js, planned, scale.seconds(5, 40))
        await wait_all_ended(nc, planned, timeout=scale.seconds(60, 300))
        fleet.check_alive()
    figures.seconds = time.monotonic() - started
    figures.notes = f"{replicas} engine replicas"
    report, mismatches = await verdict(nc, planned, figures, tmp_path)
    await nc.close()
    assert_clean(report, mismatches)


@pytest.mark.slow
async def test_partitioned_replicas_join_leave_and_die_without_losing_a_saga(
    nats_server: EmbeddedServer, tmp_path: Path, scale: Scale, figures: Figures
) -> None:
    """Partitioned mode: replicas come and go while sagas run. A replica joins (the others
    hand it partitions), one is SIGKILLed (its pins time out, its partitions move), one
    stops cleanly (it hands over at once), and another joins again."""
    planned = plan(scale.sagas(150, 600), seed=5, prefix="part")
    options = ("--partitions", "6")
    started = time.monotonic()
    nc = await connect(NatsSettings(url=nats_server.url, name="chaos"))
    js = nc.jetstream()
    fleet = Fleet(nats_server.url, tmp_path)

    async def live(count: int) -> None:
        """Wait until exactly ``count`` replicas beat in the membership bucket."""

        async def reached() -> bool:
            try:
                kv = await js.key_value(Topology().members_bucket)
                return len(await kv.keys()) == count
            except Exception:  # no bucket or no keys yet
                return False

        await wait_for(reached, timeout=30, message=f"{count} live engine replica(s)")

    async with running(fleet):
        fleet.start_engine(0, *options)
        fleet.start_services()
        feeder = asyncio.create_task(feed(js, planned, scale.seconds(10, 45)))
        await live(1)
        fleet.start_engine(1, *options)
        fleet.start_engine(2, *options)
        await live(3)  # both joined: the first has handed them partitions
        fleet.kill_engine(1)
        figures.kills += 1
        await live(2)  # the killed one's heartbeat expired: its partitions move
        fleet.stop_engine(2)
        fleet.start_engine(3, *options)
        await feeder
        await wait_all_ended(nc, planned, timeout=scale.seconds(90, 300))
        fleet.check_alive()
    figures.seconds = time.monotonic() - started
    figures.notes = "partitioned replicas: 2 joined, 1 SIGKILLed, 1 stopped, 6 partitions"
    report, mismatches = await verdict(nc, planned, figures, tmp_path)
    await nc.close()
    assert_clean(report, mismatches)


TWO_STEPS = """
name: shop
trigger: {event: shop.ordered, id: {field: id}}
steps:
  - {name: reserve, publish: {event: stock.reserve}, success: stock.reserved, timeout: 30s}
  - {name: charge, publish: {event: pay.charge}, success: pay.charged, timeout: 30s}
"""
FAST = EngineSettings(streams=StreamSettings(ack_wait_backoff=(1.0, 2.0)), fetch_wait=0.2)


async def test_a_replica_that_missed_a_transition_does_not_drop_the_next_event(
    nats_server: EmbeddedServer,
) -> None:
    """Replica A starts the saga and caches its record; replica B applies the next reply;
    then A receives the reply after that. A must not judge it on its stale cached record."""
    definitions = {"shop": parse_definition(TWO_STEPS)}
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()

    async def status_is(wanted: str, step: str | None = None) -> None:
        client = SagaClient(nc)

        async def reached() -> bool:
            state = await client.get("s-1", "shop")
            if state is None:
                return False
            if step is not None:
                return state.steps[step].status.value == "active"
            return state.status.value == wanted

        await wait_for(reached, timeout=10, message=f"s-1 {wanted} {step or ''}")

    replica_a = Engine(nc, definitions, FAST)
    await replica_a.start()
    await js.publish("shop.ordered", json.dumps({"id": "s-1"}).encode())
    await status_is("running", step="reserve")
    await replica_a.stop()  # A's process stays up, holding its cache; it just gets no message

    replica_b = Engine(nc, definitions, FAST)
    await replica_b.start()
    reply = {"Saga-Id": "s-1", "Saga-Name": "shop", "Saga-Kind": "step"}
    await js.publish("stock.reserved", b"{}", headers={**reply, "Saga-Step": "reserve"})
    await status_is("running", step="charge")
    await replica_b.stop()

    replica_a_again = Engine(nc, definitions, FAST)
    replica_a_again.cache = replica_a.cache  # the same process, the same memory
    await replica_a_again.start()
    try:
        await js.publish("pay.charged", b"{}", headers={**reply, "Saga-Step": "charge"})
        await status_is("completed")
    finally:
        await replica_a_again.stop()
        await nc.close()
