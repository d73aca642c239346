"""SIGKILL the engine process mid-run, restart it, and check that nothing was lost or doubled."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import nats

from saga.client import instance_store, list_instances
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology
from tests.support import ScriptedParticipant, wait_for

SHOP = """
name: shop
trigger: {event: shop.ordered, id: {field: id}}
steps:
  - name: reserve
    publish: {event: stock.reserve, data: {id: trigger.id}}
    success: stock.reserved
    timeout: 30s
    compensate: {publish: {event: stock.release, data: {id: trigger.id}}, success: stock.released, timeout: 30s}
  - name: charge
    publish: {event: pay.charge, data: {id: trigger.id, amount: trigger.amount}}
    success: pay.charged
    failure: pay.declined
    timeout: 30s
"""
SAGAS = 80


def start_engine(url: str, definitions: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SAGA_LOG_LEVEL": "WARNING"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "saga", "run", "--nats", url, "--definitions", str(definitions)],
            stdout=out,
            stderr=out,
            env=env,
        )


def charge(payload: dict[str, Any], headers: dict[str, str]) -> tuple[str, dict[str, Any]]:
    if payload["amount"] > 100:
        return "pay.declined", {"reason": "over limit"}
    return "pay.charged", {}


async def test_engine_killed_repeatedly_loses_and_doubles_nothing(
    nats_server: EmbeddedServer, tmp_path: Path
) -> None:
    definitions = tmp_path / "defs"
    definitions.mkdir()
    (definitions / "shop.yaml").write_text(SHOP)
    log = tmp_path / "engine.log"
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    engine = start_engine(nats_server.url, definitions, log)
    participant = await ScriptedParticipant(
        nc,
        {
            "stock.reserve": lambda p, h: ("stock.reserved", {}),
            "stock.release": lambda p, h: ("stock.released", {}),
            "pay.charge": charge,
        },
    ).start()
    try:
        kills = 0
        for i in range(SAGAS):
            amount = 500 if i % 4 == 0 else 10
            await js.publish(
                "shop.ordered", json.dumps({"id": f"s-{i}", "amount": amount}).encode()
            )
            if i % 20 == 10:
                engine.send_signal(signal.SIGKILL)
                engine.wait()
                kills += 1
                engine = start_engine(nats_server.url, definitions, log)
            await asyncio.sleep(0.01)
        store = await instance_store(js, Topology())

        async def all_ended() -> bool:
            states = await list_instances(store, limit=10_000)
            return len(states) == SAGAS and all(s.status.terminal for s in states)

        await wait_for(
            all_ended, timeout=60, message=f"all {SAGAS} sagas to end after {kills} kills"
        )
        states = {s.saga_id: s for s in await list_instances(store, limit=10_000)}
        for i in range(SAGAS):
            expected = "compensated" if i % 4 == 0 else "completed"
            assert states[f"s-{i}"].status.value == expected, states[f"s-{i}"]
        ids = [r.headers["Nats-Msg-Id"] for r in participant.received]
        assert len(ids) == len(set(ids)), "a command reached the participants twice"
        assert kills == 4
    finally:
        await participant.stop()
        engine.send_signal(signal.SIGTERM)
        engine.wait(10)
        await nc.close()
