"""``limits.max_running`` against a real nats-server: triggers beyond the limit wait in the
stream, in order, and start as running instances end (issue 16, item 1).

How many instances ran at once is read afterwards from the events stream itself: an
instance runs from its first command to its ``completed`` status event (published before
its slot is given back), so at no stream position may more than ``max_running`` of these
intervals overlap.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy, StorageType

from saga.admin import AdminServer, AdminSettings
from saga.definition import parse_definition
from saga.definition.catalog import Catalog
from saga.engine import Engine, EngineSettings
from saga.nats.provision import StreamSettings
from saga.nats.server import EmbeddedServer
from saga.participant import App, Context, ParticipantSettings
from saga.protocol import HEADER_SAGA_ID
from saga.testing import SagaHarness, fail, reply
from tests.support import wait_for

CAPPED = """
name: capped
trigger: {event: capped.ordered, id: {field: id}}
limits: {max_running: LIMIT}
steps:
  - name: reserve
    publish: {event: capped.reserve, data: {id: trigger.id}}
    success: capped.reserved
    timeout: 10s
  - name: charge
    publish: {event: capped.charge, data: {id: trigger.id}}
    success: capped.charged
    timeout: 10s
"""
SETTINGS = EngineSettings(fetch_wait=0.2)
PARTICIPANT = ParticipantSettings(
    stream=StreamSettings(ack_wait_backoff=(5.0,), max_deliver=3, storage=StorageType.FILE),
    fetch_timeout=0.2,
)


@pytest.fixture
async def client(nats_server: EmbeddedServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


def capped(limit: int) -> Any:
    return parse_definition(CAPPED.replace("LIMIT", str(limit)))


def participant(pause: float = 0.0) -> App:
    app = App("capped-services")

    @app.step("capped.reserve", success="capped.reserved")
    async def reserve(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        if pause:
            await asyncio.sleep(pause)
        return {"reserved": payload["id"]}

    @app.step("capped.charge", success="capped.charged")
    async def charge(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        return {"charged": payload["id"]}

    return app


async def trigger(nc: Client, ids: list[str]) -> float:
    """Publish the triggers pipelined; the seconds it took."""
    js = nc.jetstream()
    began = time.monotonic()
    acks = [await js.publish_async("capped.ordered", json.dumps({"id": i}).encode()) for i in ids]
    await asyncio.gather(*acks)
    return time.monotonic() - began


async def completions(nc: Client, saga: str = "capped") -> tuple[set[str], Any]:
    """The ids of the instances of ``saga`` completed from now on, and the subscription."""
    done: set[str] = set()

    async def seen(msg: Msg) -> None:
        done.add((msg.headers or {}).get(HEADER_SAGA_ID, ""))

    sub = await nc.subscribe(f"saga.status.{saga}.completed", cb=seen)
    return done, sub


async def stream_positions(nc: Client, subject: str, count: int) -> dict[str, int]:
    """Saga id -> stream sequence of its first message on ``subject``."""
    js = nc.jetstream()
    sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    found: dict[str, int] = {}
    try:
        while len(found) < count:
            msg = await sub.next_msg(timeout=10)
            found.setdefault((msg.headers or {})[HEADER_SAGA_ID], msg.metadata.sequence.stream)
    finally:
        await sub.unsubscribe()
    return found


def most_at_once(starts: dict[str, int], ends: dict[str, int]) -> int:
    marks = sorted([(s, 1) for s in starts.values()] + [(e, -1) for e in ends.values()])
    running = most = 0
    for _, change in marks:
        running += change
        most = max(most, running)
    return most


async def test_2000_triggers_against_100_running_all_complete_none_beyond_the_limit(
    client: Client,
) -> None:
    sagas, limit = 2000, 100
    engine = Engine(client, {"capped": capped(limit)}, SETTINGS)
    await engine.start()
    done, sub = await completions(client)
    waiting_seen: list[int] = []
    try:
        async with participant().running(client, PARTICIPANT):
            ids = [f"o-{n:04d}" for n in range(sagas)]
            seconds = await trigger(client, ids)
            print(f"published {sagas} triggers in {seconds:.2f}s")

            async def all_done() -> bool:
                counts = engine.admission.counts.get("capped")
                if counts is not None:
                    waiting_seen.append(counts.waiting)
                return len(done) == sagas

            await wait_for(all_done, timeout=240, interval=0.2, message="every saga to complete")
            await wait_for(
                lambda: (
                    [c.to_json() for c in engine.health().limits]
                    == [{"waiting": 0, "running": 0, "max_running": limit}]
                ),
                message="/readyz's counts to show nothing waiting or running",
            )
    finally:
        await sub.unsubscribe()
        await engine.stop()

    assert done == set(ids)  # completed: no step timed out (no retry: it would compensate)
    assert max(waiting_seen) > 0, "triggers never waited: the limit was not in the way"
    starts = await stream_positions(client, "capped.reserve", sagas)
    ends = await stream_positions(client, "saga.status.capped.completed", sagas)
    most = most_at_once(starts, ends)
    print(f"at most {most} instances running at once")
    assert most <= limit
    assert most > limit // 2, "the limit is a ceiling, not a queue of one"


LIMITED_SHOP = """
name: shop
trigger: {event: shop.ordered, id: {field: id}}
limits: {max_running: 1, start_rate: 50/s}
steps:
  - name: reserve
    publish: {event: stock.reserve, data: {id: trigger.id}}
    success: stock.reserved
    failure: stock.rejected
    compensate: {publish: {event: stock.release}, success: stock.released}
  - name: charge
    publish: {event: pay.charge, data: {id: trigger.id}}
    success: pay.charged
    failure: pay.declined
"""


@pytest.mark.parametrize("on_nats", [False, True], ids=["memory", "nats"])
async def test_the_harness_runs_a_limited_saga(on_nats: bool) -> None:
    """In memory limits change nothing (instances run one by one there); on a server the
    trigger goes through the admission consumer, and the harness waits for it."""
    async with SagaHarness.from_text(LIMITED_SHOP, nats=on_nats, timeout=30) as h:
        h.on("stock.reserve", reply("stock.reserved"))
        h.on("stock.release", reply("stock.released"))
        h.on("pay.charge", fail("pay.declined", "no funds"))
        first = await h.run({"id": "o1"})
        h.on("pay.charge", reply("pay.charged"))
        second = await h.run({"id": "o2"})  # o1's slot was given back when it compensated

    assert (first.status, second.status) == ("compensated", "completed")
    assert second.published_subjects == ["stock.reserve", "pay.charge"]


@pytest.mark.parametrize("partitions", [0, 4], ids=["shared", "partitioned"])
async def test_the_limit_is_global_across_two_engine_replicas(
    nats_server: EmbeddedServer, partitions: int
) -> None:
    """Both modes: replicas sharing the engine's consumer, and partitioned replicas (each
    admits what it pulls, whatever the instance's partition; its later events go to the
    partition's owner)."""
    sagas, limit = 400, 20
    settings = SETTINGS
    if partitions:
        settings = replace(
            SETTINGS, partitions=partitions, heartbeat=0.2, member_ttl=1.5, pin_timeout=1.0
        )
    connections = [await nats.connect(nats_server.url) for _ in range(3)]
    client, *replicas = connections
    engines = [Engine(nc, {"capped": capped(limit)}, settings) for nc in replicas]
    for engine in engines:
        await engine.start()
    done, sub = await completions(client)
    held: list[list[int]] = [[], []]
    try:
        async with participant(pause=0.01).running(client, PARTICIPANT):
            ids = [f"o-{n:04d}" for n in range(sagas)]
            await trigger(client, ids)

            async def all_done() -> bool:
                for seen, engine in zip(held, engines, strict=True):
                    seen.append(len(engine.admission.held))
                return len(done) == sagas

            await wait_for(all_done, timeout=240, interval=0.05, message="every saga to complete")
        starts = await stream_positions(client, "capped.reserve", sagas)
        ends = await stream_positions(client, "saga.status.capped.completed", sagas)
    finally:
        await sub.unsubscribe()
        for engine in engines:
            await engine.stop()
        for nc in connections:
            await nc.close()

    assert done == set(ids)
    assert all(max(seen) > 0 for seen in held), "both replicas admitted triggers"
    most = most_at_once(starts, ends)
    print(f"at most {most} instances running at once over two replicas")
    assert most <= limit


async def test_a_killed_replicas_slots_are_taken_up_after_the_ack_wait(
    nats_server: EmbeddedServer,
) -> None:
    """A replica dies holding every slot (its instances wait for a participant not yet
    there). Another replica gets the held triggers back after the ack wait, finds their
    instances running and holds them; once they complete, the waiting triggers start."""
    sagas, limit = 10, 5
    settings = EngineSettings(fetch_wait=0.2, admission_ack_wait=2.0)
    client = await nats.connect(nats_server.url)
    doomed_nc = await nats.connect(nats_server.url)
    survivor_nc = await nats.connect(nats_server.url)
    doomed = Engine(doomed_nc, {"capped": capped(limit)}, settings)
    survivor = Engine(survivor_nc, {"capped": capped(limit)}, settings)
    done, sub = await completions(client)
    try:
        await doomed.start()
        ids = [f"o-{n:04d}" for n in range(sagas)]
        await trigger(client, ids)
        await wait_for(lambda: len(doomed.admission.held) == limit, message="slots all held")
        await doomed_nc.close()  # killed: no hand-back, no more in-progress acks

        await survivor.start()
        await wait_for(
            lambda: len(survivor.admission.held) == limit,
            timeout=30,
            message="the dead replica's triggers held by the survivor",
        )
        assert done == set()
        async with participant().running(client, PARTICIPANT):
            await wait_for(lambda: len(done) == sagas, timeout=60, message="every saga done")
        starts = await stream_positions(client, "capped.reserve", sagas)
        ends = await stream_positions(client, "saga.status.capped.completed", sagas)
    finally:
        await sub.unsubscribe()
        await survivor.stop()
        await survivor_nc.close()
        await client.close()

    assert most_at_once(starts, ends) <= limit


async def test_start_rate_paces_new_instances(client: Client) -> None:
    """``start_rate: 10/s`` (a bucket of 10): over any span of t seconds at most 10 + 10·t
    instances start (their first command's time in the stream); the rest wait."""
    sagas, rate = 40, 10.0
    definition = CAPPED.replace("limits: {max_running: LIMIT}", "limits: {start_rate: 10/s}")
    engine = Engine(client, {"capped": parse_definition(definition)}, SETTINGS)
    await engine.start()
    done, sub = await completions(client)
    try:
        async with participant().running(client, PARTICIPANT):
            await trigger(client, [f"o-{n:04d}" for n in range(sagas)])
            await wait_for(lambda: len(done) == sagas, timeout=60, message="every saga done")
        js = client.jetstream()
        first = await js.subscribe(
            "capped.reserve", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        times = sorted(
            [(await first.next_msg(timeout=10)).metadata.timestamp for _ in range(sagas)]
        )
        await first.unsubscribe()
    finally:
        await sub.unsubscribe()
        await engine.stop()

    slack = 2  # an instance admitted at a bucket's edge may log its command a little later
    for i, began in enumerate(times):
        for j in range(i + 1, sagas):
            span = (times[j] - began).total_seconds()
            assert j - i + 1 <= rate + rate * span + slack, (i, j, span)


async def test_limits_added_by_a_reload_take_each_trigger_once(client: Client) -> None:
    """The admission consumer made by a reload starts where the engine's consumer stopped
    delivering the trigger: triggers started before are not started again, none is skipped."""
    free = CAPPED.replace("limits: {max_running: LIMIT}\n", "")
    engine = Engine(client, Catalog.of({"capped": parse_definition(free)}), SETTINGS)
    await engine.start()
    done, sub = await completions(client)
    js = client.jetstream()
    try:
        async with participant().running(client, PARTICIPANT):
            await trigger(client, [f"before-{n}" for n in range(3)])
            await wait_for(lambda: len(done) == 3, message="the sagas before the reload")
            await engine.reload(Catalog.of({"capped": capped(2)}))
            await trigger(client, [f"after-{n}" for n in range(5)])
            await wait_for(lambda: len(done) == 8, message="the sagas after the reload")

        async def slots_free() -> bool:
            info = await js.consumer_info("SAGA_EVENTS", "saga-engine-limit-capped")
            return (info.num_pending, info.num_ack_pending) == (0, 0)

        await wait_for(slots_free, message="every slot given back")
        info = await js.consumer_info("SAGA_EVENTS", "saga-engine-limit-capped")
    finally:
        await sub.unsubscribe()
        await engine.stop()

    assert info.delivered.consumer_seq == 5  # the five after the reload, each once


async def test_waiting_triggers_show_in_readyz_and_the_console_and_start_in_order(
    client: Client,
) -> None:
    engine = Engine(client, {"capped": capped(1)}, SETTINGS)
    server = AdminServer(engine.view(), AdminSettings(port=0, token="t0ken"))
    url = await server.start()
    await engine.start()
    done, sub = await completions(client)
    bearer = {"Authorization": "Bearer t0ken"}
    try:
        ids = [f"o-{n}" for n in range(4)]
        await trigger(client, ids)
        wanted = {"capped": {"waiting": 3, "running": 1, "max_running": 1}}

        async def counted() -> bool:
            async with aiohttp.ClientSession() as http, http.get(url + "/readyz") as r:
                return bool((await r.json()).get("limits") == wanted)

        await wait_for(counted, message="/readyz to count 3 waiting and 1 running")
        async with (
            aiohttp.ClientSession() as http,
            http.get(url + "/console/definitions/capped", headers=bearer) as r,
        ):
            assert "3 waiting, 1 running" in await r.text()
        async with participant().running(client, PARTICIPANT):
            await wait_for(lambda: len(done) == 4, message="every saga done")
        starts = await stream_positions(client, "capped.reserve", 4)
    finally:
        await sub.unsubscribe()
        await server.stop()
        await engine.stop()

    assert sorted(starts, key=starts.__getitem__) == ids  # admitted in trigger order


GATED = """
name: gated
trigger: {event: gated.ordered, id: {field: id}}
steps:
  - name: reserve
    publish: {event: gated.reserve, data: {id: trigger.id}}
    success: gated.reserved
    timeout: 1s
    max_in_flight: 5
"""


async def test_max_in_flight_holds_commands_back_and_their_timeout_starts_at_the_send(
    client: Client,
) -> None:
    """100 sagas at once, a step taking 0.1 s with at most 5 in flight: the last command
    waits about 2 s, twice the step's timeout, yet every saga completes; and at no point
    are more than 5 commands out without their reply."""
    sagas = 100
    engine = Engine(client, {"gated": parse_definition(GATED)}, SETTINGS)
    await engine.start()
    app = App("gated-services")

    @app.step("gated.reserve", success="gated.reserved")
    async def reserve(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.1)
        return {"reserved": payload["id"]}

    done, sub = await completions(client, "gated")
    waiting: list[int] = []
    try:
        async with app.running(client, PARTICIPANT):
            ids = [f"g-{n:03d}" for n in range(sagas)]
            acks = [
                await client.jetstream().publish_async(
                    "gated.ordered", json.dumps({"id": i}).encode()
                )
                for i in ids
            ]
            await asyncio.gather(*acks)

            async def all_done() -> bool:
                count = engine.admission.counts.get("gated.reserve")
                if count is not None:
                    waiting.append(count.waiting)
                return len(done) == sagas

            await wait_for(all_done, timeout=120, interval=0.1, message="every saga to complete")
        sent = await stream_positions(client, "gated.reserve", sagas)
        answered = await stream_positions(client, "gated.reserved", sagas)
    finally:
        await sub.unsubscribe()
        await engine.stop()

    assert done == set(ids)  # a timeout would have compensated them (no retry)
    assert max(waiting) > 0, "commands never waited: max_in_flight was not in the way"
    assert most_at_once(sent, answered) <= 5


@pytest.mark.parametrize("on_nats", [False, True], ids=["memory", "nats"])
async def test_the_harness_runs_a_step_with_max_in_flight(on_nats: bool) -> None:
    """The held-back command is the engine's own traffic: the transcript shows the command
    as sent, in both transports."""
    async with SagaHarness.from_text(GATED, nats=on_nats, timeout=30) as h:
        h.on("gated.reserve", reply("gated.reserved"))
        result = await h.run({"id": "g1"})

    assert result.status == "completed"
    assert result.published_subjects == ["gated.reserve"]
    assert result.state is not None
    assert "step.sent" in [e.event for e in result.state.history]


async def test_a_killed_replicas_step_slots_are_taken_up_after_the_ack_wait(
    nats_server: EmbeddedServer,
) -> None:
    """As for triggers: the commands a dead replica sent keep their slots (another replica
    holds them once they come back), and the held-back ones are sent as they free up."""
    sagas, limit = 6, 2
    text = GATED.replace("max_in_flight: 5", f"max_in_flight: {limit}")
    definition = parse_definition(text.replace("timeout: 1s", "timeout: 60s"))
    settings = EngineSettings(fetch_wait=0.2, admission_ack_wait=2.0)
    client = await nats.connect(nats_server.url)
    doomed_nc = await nats.connect(nats_server.url)
    survivor_nc = await nats.connect(nats_server.url)
    doomed = Engine(doomed_nc, {"gated": definition}, settings)
    survivor = Engine(survivor_nc, {"gated": definition}, settings)
    app = App("gated-services")

    @app.step("gated.reserve", success="gated.reserved")
    async def reserve(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        return {"reserved": payload["id"]}

    done, sub = await completions(client, "gated")
    try:
        await doomed.start()
        for n in range(sagas):
            await client.jetstream().publish("gated.ordered", json.dumps({"id": f"g{n}"}).encode())
        await wait_for(lambda: len(doomed.admission.held) == limit, message="slots all held")
        await doomed_nc.close()  # killed

        await survivor.start()
        await wait_for(
            lambda: len(survivor.admission.held) == limit,
            timeout=30,
            message="the dead replica's commands held by the survivor",
        )
        async with app.running(client, PARTICIPANT):
            await wait_for(lambda: len(done) == sagas, timeout=60, message="every saga done")
        sent = await stream_positions(client, "gated.reserve", sagas)
        answered = await stream_positions(client, "gated.reserved", sagas)
    finally:
        await sub.unsubscribe()
        await survivor.stop()
        await survivor_nc.close()
        await client.close()

    assert most_at_once(sent, answered) <= limit
