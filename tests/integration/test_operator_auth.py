"""Operator actions over NATS need the admin token when one is set, and record who and why.

Issue 12, defect 10: any client that could publish to ``saga.admin.action`` could abort a
saga; ``--admin-token`` protected the HTTP API only.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from saga.cli.render import status_text
from saga.client import find_instance, instance_store
from saga.core.state import InstanceState
from saga.definition import parse_definition
from saga.engine import Engine, EngineSettings
from saga.engine.operator import OPERATOR_SUBJECT, ActionRequest, auth_headers
from saga.nats.provision import StreamSettings
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology
from tests.support import wait_for

TOKEN = "op-secret-1"
SLOW = parse_definition(
    """
name: slow
trigger: {event: slow.ordered, id: {field: id}}
steps:
  - name: charge
    publish: {event: slow.charge}
    success: slow.charged
    timeout: 1m
"""
)
SETTINGS = EngineSettings(
    streams=StreamSettings(ack_wait_backoff=(1.0, 2.0), max_deliver=3),
    fetch_wait=0.2,
    admin_token=TOKEN,
)


@pytest.fixture
async def client(nats_server: EmbeddedServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


@pytest.fixture
async def engine(client: Client) -> AsyncIterator[Engine]:
    engine = Engine(client, {"slow": SLOW}, SETTINGS)
    await engine.start()
    yield engine
    await engine.stop()


async def running(client: Client, saga_id: str) -> None:
    await client.jetstream().publish("slow.ordered", json.dumps({"id": saga_id}).encode())
    await state_of(client, saga_id, "running")
    # Actions name no saga, so the engine finds the instance through the index, which is
    # written just after the instance: wait for that too.
    store = await instance_store(client.jetstream(), Topology())

    async def indexed() -> bool:
        return await find_instance(store, saga_id) is not None

    await wait_for(indexed, message=f"{saga_id} in the index")


async def state_of(client: Client, saga_id: str, status: str) -> InstanceState:
    store = await instance_store(client.jetstream(), Topology())
    found: list[InstanceState] = []

    async def reached() -> bool:
        state = await find_instance(store, saga_id, "slow")
        if state is not None and state.status.value == status:
            found.append(state)
            return True
        return False

    await wait_for(reached, message=f"{saga_id} {status}")
    return found[-1]


async def act(client: Client, headers: dict[str, str] | None, **fields: Any) -> dict[str, Any]:
    request = ActionRequest.model_validate({"action": "abort", **fields})
    reply = await client.request(
        OPERATOR_SUBJECT, request.model_dump_json().encode(), timeout=10, headers=headers
    )
    result: dict[str, Any] = json.loads(reply.data)
    return result


async def test_an_action_without_the_token_is_refused(client: Client, engine: Engine) -> None:
    await running(client, "a-1")

    result = await act(client, None, saga_id="a-1")

    assert result == {"ok": False, "message": "missing or wrong admin token", "status": None}
    state = await state_of(client, "a-1", "running")
    assert not any(h.event.startswith("operator.") for h in state.history)


async def test_an_action_with_a_wrong_token_is_refused(client: Client, engine: Engine) -> None:
    await running(client, "a-2")

    result = await act(client, auth_headers("not-it"), saga_id="a-2")

    assert not result["ok"]
    assert result["message"] == "missing or wrong admin token"
    await state_of(client, "a-2", "running")


async def test_with_the_token_the_action_is_applied_and_records_who_and_why(
    client: Client, engine: Engine
) -> None:
    await running(client, "a-3")

    result = await act(
        client, auth_headers(TOKEN), saga_id="a-3", reason="customer called", actor="cli:ann"
    )

    assert result["ok"], result
    state = await state_of(client, "a-3", "compensated")
    [entry] = [h for h in state.history if h.event == "operator.abort"]
    assert entry.actor == "cli:ann via nats"
    assert entry.detail == "customer called"
    assert "operator.abort  customer called  by cli:ann via nats" in status_text(state)


async def test_a_bad_request_gets_a_clear_answer(client: Client, engine: Engine) -> None:
    reply = await client.request(
        OPERATOR_SUBJECT, b'{"action": "explode", "saga_id": "x"}', 10, headers=auth_headers(TOKEN)
    )
    result = json.loads(reply.data)
    assert not result["ok"]
    assert result["message"].startswith("bad request: action:")


async def test_saga_retry_with_reason_and_token_from_the_command_line(
    nats_server: EmbeddedServer, client: Client, engine: Engine
) -> None:
    await running(client, "a-4")
    env = {**os.environ, "SAGA_ADMIN_TOKEN": TOKEN}
    command = [sys.executable, "-m", "saga", "retry", "a-4", "--reason", "participant redeployed"]

    done = await asyncio.to_thread(
        subprocess.run,
        [*command, "--nats", nats_server.url],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    store = await instance_store(client.jetstream(), Topology())

    async def retried() -> bool:
        state = await find_instance(store, "a-4", "slow")
        return state is not None and any(h.event == "operator.retry" for h in state.history)

    await wait_for(retried, message="the retry in the history")
    state = await find_instance(store, "a-4", "slow")
    assert state is not None
    [entry] = [h for h in state.history if h.event == "operator.retry"]
    assert entry.detail == "participant redeployed"
    assert entry.actor is not None
    assert entry.actor.startswith("cli")
    assert entry.actor.endswith(" via nats")
    refused = await asyncio.to_thread(
        subprocess.run,
        [*command, "--nats", nats_server.url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SAGA_ADMIN_TOKEN": ""},
        check=False,
    )
    assert refused.returncode != 0
    assert "missing or wrong admin token" in refused.stderr
