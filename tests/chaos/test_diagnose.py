"""The chaos verdict's account of a saga still running: its record (the leader's and what
direct gets answer), its timer slot as the server holds it, and the log lines naming it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from saga.client import find_instance, instance_store
from saga.definition import parse_definition
from saga.engine import Engine, EngineSettings
from saga.nats.server import EmbeddedServer
from saga.nats.timers import schedule_time
from saga.nats.topology import Topology
from saga.protocol import HEADER_SCHEDULE
from tests.chaos import diagnose
from tests.support import ScriptedParticipant, wait_for

WAITING = """
name: waiting
trigger: {event: waiting.started, id: {field: id}}
steps:
  - name: pay
    publish: {event: waiting.pay, data: {id: trigger.id}}
    success: waiting.paid
    timeout: 60s
"""


@pytest.fixture
async def client(nats_server: EmbeddedServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


async def test_a_running_saga_is_explained(client: Client, tmp_path: Path) -> None:
    engine = Engine(client, {"waiting": parse_definition(WAITING)}, EngineSettings())
    await engine.start()
    participant = await ScriptedParticipant(client, {"waiting.pay": lambda p, h: None}).start()
    try:
        await client.jetstream().publish("waiting.started", json.dumps({"id": "w-1"}).encode())
        store = await instance_store(client, Topology())

        async def waiting() -> bool:
            state = await find_instance(store, "w-1", "waiting")
            return state is not None and state.wake_at is not None

        await wait_for(waiting, message="the saga to wait on its step")
        (tmp_path / "payment.log").write_text("other\nw-1 charge received, no reply\n")
        found = await diagnose.explain(client, "waiting", "w-1", tmp_path, seen_ended=None)
    finally:
        await participant.stop()
        await engine.stop()
    leader = found["record"]["leader"]
    assert leader["status"] == "running"
    assert leader["steps"]["pay"].startswith("active (attempt 1)")
    assert len(leader["timers"]) == 1
    assert found["record"]["direct_revisions"] == [leader["revision"]] * 6
    assert "stale_direct_reads" not in found["record"]
    state = await find_instance(store, "w-1", "waiting")
    assert state is not None
    assert state.wake_at is not None
    assert found["slot"]["headers"][HEADER_SCHEDULE] == schedule_time(state.wake_at)
    assert found["dead_letters"] == []
    timers = found["routed"]["consumers"][f"SAGA_TIMERS/{Topology().timer_consumer}"]
    assert timers["num_ack_pending"] == 0
    assert found["logs"] == {"payment": ["w-1 charge received, no reply"]}
    line = diagnose.summary(found)
    assert "leader's record: running" in line
    assert "Nats-Schedule" in line


async def test_a_saga_seen_ended_earlier_is_called_a_stale_read(
    client: Client, tmp_path: Path
) -> None:
    found = await diagnose.explain(client, "waiting", "w-2", tmp_path, seen_ended="compensated")
    assert "stale" in found["seen_ended_earlier"]
    assert "; seen ended earlier: compensated;" in diagnose.summary(found)
