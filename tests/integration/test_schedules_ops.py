"""Scheduled sagas and operator power on nats-server: the server's message schedule starts
one instance per tick with two engine replicas (the tick in the saga id), the engine keeps,
replaces and removes the schedule as the definitions say; ``saga redrive`` / ``terminate``
in bulk and one by one, over NATS, with a confirmation and an audit entry."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.aio.client import Client

from saga.client import SagaClient
from saga.core.state import InstanceState
from saga.definition import Catalog, parse_definition
from saga.engine import Engine, EngineSettings
from saga.nats.schedules import list_schedules
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology, instance_key
from saga.protocol import HEADER_RUN
from tests.support import ScriptedParticipant, wait_for

SETTINGS = EngineSettings(fetch_wait=0.2)
TICK = """
name: tick
trigger: {event: tick.fired}
schedule: {every: 1s, data: {kind: nightly}}
steps:
  - name: nap
    wait: 100ms
"""
OPS = """
name: ops
trigger: {event: ops.placed, id: {field: id}}
steps:
  - name: reserve
    publish: {event: ops.reserve, data: {id: trigger.id}}
    success: ops.reserved
    compensate: {publish: {event: ops.release, data: {id: trigger.id}}}
  - name: charge
    publish: {event: ops.charge, data: {id: trigger.id}}
    success: ops.charged
    failure: ops.declined
"""


async def states(nc: Client, name: str) -> list[InstanceState]:
    return await SagaClient(nc).states(name=name, limit=1000)


async def test_one_instance_per_tick_with_two_replicas_and_the_schedule_follows_reloads(
    nc: Client, nats_server: EmbeddedServer
) -> None:
    definitions = {"tick": parse_definition(TICK)}
    engines = [Engine(nc, definitions, SETTINGS), Engine(nc, definitions, SETTINGS)]
    for engine in engines:
        await engine.start()
    js, topology = nc.jetstream(), Topology()
    try:
        schedule = (await list_schedules(js, topology))["tick"]
        assert (schedule.pattern, schedule.target, schedule.data) == (
            "@every 1s",
            "tick.fired",
            {"kind": "nightly"},
        )

        async def three_done() -> bool:
            done = [s for s in await states(nc, "tick") if s.status.value == "completed"]
            return len(done) >= 3

        await wait_for(three_done, timeout=30, message="three scheduled instances completed")
        found = await states(nc, "tick")
        ids = [s.saga_id for s in found]
        assert all(re.fullmatch(r"tick-\d{8}T\d{6}Z", i) for i in ids), ids
        assert len(set(ids)) == len(ids)
        assert all(s.context["trigger"] == {"kind": "nightly"} for s in found)
        fired = await js.stream_info(topology.events_stream, subjects_filter="tick.fired")
        # every fired trigger made exactly one instance (the last may still be in flight)
        assert (fired.state.subjects or {}).get("tick.fired", 0) - len(ids) in (0, 1)

        # a restart (and the second replica) leaves the unchanged schedule alone
        before = await js.get_last_msg(topology.events_stream, "saga.schedule.tick")
        await engines[0].stop()
        await engines[0].start()
        after = await js.get_last_msg(topology.events_stream, "saga.schedule.tick")
        assert after.seq == before.seq

        # a reload that changes the schedule replaces it; one without a schedule removes it
        changed = parse_definition(TICK.replace("every: 1s", 'cron: "0 2 * * *"'))
        await engines[0].reload(Catalog.of({"tick": changed}))
        assert (await list_schedules(js, topology))["tick"].pattern == "0 0 2 * * *"
        plain = parse_definition(TICK.replace("schedule: {every: 1s, data: {kind: nightly}}\n", ""))
        await engines[0].reload(Catalog.of({"tick": plain}))
        assert await list_schedules(js, topology) == {}
    finally:
        for engine in engines:
            await engine.stop()

    listed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "saga", "schedules", "--json", "--nats", nats_server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []


@pytest.fixture
async def ops(nc: Client) -> AsyncIterator[tuple[Engine, ScriptedParticipant]]:
    engine = Engine(nc, {"ops": parse_definition(OPS)}, SETTINGS)
    await engine.start()

    def charge(
        payload: dict[str, Any], headers: dict[str, str]
    ) -> tuple[str, dict[str, Any]] | None:
        if payload["id"].startswith("stuck"):
            return None
        if HEADER_RUN in headers:  # the card was fixed before the redrive
            return ("ops.charged", {})
        return ("ops.declined", {"reason": "card expired"})

    rules: dict[str, Any] = {
        "ops.reserve": lambda p, h: ("ops.reserved", {}),
        "ops.release": lambda p, h: None,
        "ops.charge": charge,
    }
    participant = await ScriptedParticipant(nc, rules).start()
    yield engine, participant
    await participant.stop()
    await engine.stop()


async def status_of(engine: Engine, saga_id: str) -> str | None:
    assert engine.store is not None
    stored = await engine.store.load(instance_key("ops", saga_id))
    return stored.record.state.status.value if stored else None


def cli(url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "saga", *args, "--nats", url]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, check=False, input=stdin
    )


async def test_bulk_redrive_and_terminate_over_nats(
    nc: Client, nats_server: EmbeddedServer, ops: tuple[Engine, ScriptedParticipant]
) -> None:
    engine, participant = ops
    js = nc.jetstream()
    for i in range(3):
        await js.publish("ops.placed", json.dumps({"id": f"r-{i}"}).encode())
    await js.publish("ops.placed", json.dumps({"id": "stuck-1"}).encode())

    async def all_compensated() -> bool:
        return all([await status_of(engine, f"r-{i}") == "compensated" for i in range(3)])

    await wait_for(all_compensated, message="three compensated")

    refused = await asyncio.to_thread(
        cli, nats_server.url, "redrive", "--saga", "ops", "--state", "compensated", stdin="n\n"
    )
    assert refused.returncode == 1
    assert "3 compensated instance(s) of ops" in refused.stdout
    assert await status_of(engine, "r-0") == "compensated"

    done = await asyncio.to_thread(
        cli,
        nats_server.url,
        "redrive",
        "--saga",
        "ops",
        "--state",
        "compensated",
        "--reason",
        "card renewed",
        "--yes",
    )
    assert done.returncode == 0, done.stderr
    assert "3 done, 0 refused" in done.stdout

    async def all_completed() -> bool:
        return all([await status_of(engine, f"r-{i}") == "completed" for i in range(3)])

    await wait_for(all_completed, message="three redriven to completion")
    state = await SagaClient(nc).get("r-1", "ops")
    assert state is not None
    entry = next(h for h in state.history if h.event == "operator.redrive")
    assert entry.detail == "run 1: card renewed"
    assert entry.actor is not None
    assert entry.actor.startswith("cli")
    assert entry.actor.endswith("via nats")
    # the undone reservation was made again, in run 1
    assert ("ops.reserve", "1") in [
        (r.subject, r.headers.get(HEADER_RUN))
        for r in participant.received
        if r.headers.get("Saga-Id") == "r-1"
    ]

    await wait_for(lambda: status_of(engine, "stuck-1"), message="stuck-1 started")
    terminated = await asyncio.to_thread(
        cli, nats_server.url, "terminate", "stuck-1", "--reason", "card stolen"
    )
    assert terminated.returncode == 0, terminated.stderr
    assert await status_of(engine, "stuck-1") == "terminated"
    after = await SagaClient(nc).get("stuck-1", "ops")
    assert after is not None
    assert after.steps["charge"].status.value == "abandoned"
    assert "ops.release" not in [
        r.subject for r in participant.received if r.headers.get("Saga-Id") == "stuck-1"
    ]
    again = await asyncio.to_thread(cli, nats_server.url, "terminate", "stuck-1")
    assert again.returncode == 1
    assert "cannot terminate: instance is terminated" in again.stderr
