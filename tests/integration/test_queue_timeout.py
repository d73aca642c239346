"""A busy participant's queue does not count against a step's run timeout.

Issue 12, defect 11, end to end: an SDK participant handling one command at a time
(``max_inflight: 1``), each taking 0.4 s, gets 6 commands at once. The last waits about
2 s in the queue: longer than the step's ``timeout: 1s``. With ``queue_timeout`` every
saga completes, because the SDK reports each start and the run timeout counts from
there; the same definition without it compensates the sagas that waited.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StorageType

from saga.client import find_instance, instance_store
from saga.definition import parse_definition
from saga.engine import Engine, EngineSettings
from saga.nats.provision import StreamSettings
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology
from saga.participant import App, Context, ParticipantSettings
from saga.protocol import STARTED_PREFIX, started_subject
from tests.support import wait_for

DEFINITION = """
name: signup
trigger: {event: signup.requested, id: {field: id}}
steps:
  - name: create_account
    publish: {event: account.create}
    success: account.created
    timeout: 1s
    queue_timeout: 30s
"""
SAGAS = 6
ONE_AT_A_TIME = ParticipantSettings(
    stream=StreamSettings(ack_wait_backoff=(5.0,), max_deliver=3, storage=StorageType.MEMORY),
    batch=1,
    max_inflight=1,
    fetch_timeout=0.2,
    keepalive=0.1,
)


@pytest.fixture
async def client(nats_server: EmbeddedServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


async def outcomes(
    client: Client, definition: str, reports: list[str] | None = None
) -> dict[str, Any]:
    """Run the sagas to their end; the start reports seen on the wire go to ``reports``."""
    seen = [] if reports is None else reports

    async def report(msg: Msg) -> None:
        seen.append(msg.subject)

    watch = await client.subscribe(f"{STARTED_PREFIX}.>", cb=report)
    settings = EngineSettings(fetch_wait=0.2)
    engine = Engine(client, {"signup": parse_definition(definition)}, settings)
    await engine.start()
    app = App("accounts")

    @app.step("account.create", success="account.created")
    async def create(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.4)
        return {"account": payload.get("id")}

    js = client.jetstream()
    store = await instance_store(client, Topology())
    ended: dict[str, Any] = {}
    try:
        async with app.running(client, ONE_AT_A_TIME):
            acks = [
                await js.publish_async("signup.requested", json.dumps({"id": f"u-{n}"}).encode())
                for n in range(SAGAS)
            ]
            await asyncio.gather(*acks)

            async def all_ended() -> bool:
                for n in range(SAGAS):
                    state = await find_instance(store, f"u-{n}", "signup")
                    if state is not None and state.status.terminal:
                        ended[state.saga_id] = state
                return len(ended) == SAGAS

            await wait_for(all_ended, timeout=60, message="every signup to end")
            await client.flush()  # a report sent before a reply has reached ``watch`` now
    finally:
        await watch.unsubscribe()
        await engine.stop()
    return ended


async def test_with_queue_timeout_every_queued_saga_completes(client: Client) -> None:
    reports: list[str] = []
    ended = await outcomes(client, DEFINITION, reports)

    assert {s.status.value for s in ended.values()} == {"completed"}
    for state in ended.values():
        assert "step.running" in [h.event for h in state.history]
    assert len(reports) >= SAGAS  # one per command handled (a retry's attempt adds one)
    assert set(reports) == {started_subject("signup", "create_account")}


async def test_without_it_the_run_timeout_counts_the_queue(client: Client) -> None:
    reports: list[str] = []
    ended = await outcomes(client, DEFINITION.replace("    queue_timeout: 30s\n", ""), reports)

    assert "compensated" in {s.status.value for s in ended.values()}
    assert reports == []  # the commands carry no Saga-Report-Start: no report on the wire
