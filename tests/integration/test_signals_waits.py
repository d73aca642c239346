"""Waits and signals on nats-server: a ``wait`` step sleeps on the engine's durable timers
(an engine restart mid-sleep loses nothing), and ``saga emit`` / ``POST /sagas/{id}/emit``
answer an observed step through the operator path, refused with the reason when they
cannot apply."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from nats.aio.client import Client

from saga.admin import AdminServer, AdminSettings
from saga.core.events import Signal
from saga.core.state import InstanceState, StepStatus
from saga.definition import parse_definition
from saga.engine import Engine, EngineSettings
from saga.nats.server import EmbeddedServer
from saga.nats.topology import instance_key
from saga.testing import HarnessError, SagaHarness, reply
from tests.support import ScriptedParticipant, wait_for

APPROVAL = """
name: approval
trigger: {event: approval.requested, id: {field: id}}
steps:
  - name: approve
    success: approval.granted
    failure: approval.denied
    keep: [by]
    schema: {type: object, required: [by], properties: {by: {type: string}}}
  - name: nap
    wait: 3s
  - name: act
    publish: {event: approval.act, data: {id: trigger.id, by: steps.approve.by}}
    success: approval.done
    timeout: 10s
"""
SETTINGS = EngineSettings(fetch_wait=0.2)
TOKEN = "t0ken"


async def state_of(engine: Engine, saga_id: str) -> InstanceState | None:
    assert engine.store is not None
    stored = await engine.store.load(instance_key("approval", saga_id))
    return stored.record.state if stored else None


async def step_is(engine: Engine, saga_id: str, step: str, status: StepStatus) -> None:
    async def reached() -> bool:
        state = await state_of(engine, saga_id)
        return state is not None and state.steps[step].status is status

    await wait_for(reached, message=f"{saga_id}: {step} {status.value}")


async def status_is(engine: Engine, saga_id: str, status: str) -> InstanceState:
    found: list[InstanceState] = []

    async def reached() -> bool:
        state = await state_of(engine, saga_id)
        found[:] = [state] if state is not None else []
        return state is not None and state.status.value == status

    await wait_for(reached, message=f"{saga_id} {status}")
    return found[0]


@pytest.fixture
async def participant(nc: Client) -> AsyncIterator[ScriptedParticipant]:
    engine = Engine(nc, {"approval": parse_definition(APPROVAL)}, SETTINGS)
    await engine.start()  # provisions the streams the participant consumes from
    await engine.stop()
    rules = {"approval.act": lambda p, h: ("approval.done", {})}
    scripted = await ScriptedParticipant(nc, rules).start()
    yield scripted
    await scripted.stop()


async def test_a_wait_outlives_an_engine_restart(
    nc: Client, participant: ScriptedParticipant
) -> None:
    definitions = {"approval": parse_definition(APPROVAL)}
    first = Engine(nc, definitions, SETTINGS)
    await first.start()
    await nc.jetstream().publish("approval.requested", json.dumps({"id": "w-1"}).encode())
    result = await first.act("w-1", "approval", _signal("approval.granted", {"by": "ann"}))
    if not result.ok:  # the trigger may not be decided yet: try again once it is
        await step_is(first, "w-1", "approve", StepStatus.ACTIVE)
        result = await first.act("w-1", "approval", _signal("approval.granted", {"by": "ann"}))
    assert result.ok, result.message
    await step_is(first, "w-1", "nap", StepStatus.ACTIVE)
    await first.stop()  # asleep: only the timer knows when to go on
    asleep = await state_of(first, "w-1")
    assert asleep is not None
    assert asleep.steps["nap"].status is StepStatus.ACTIVE  # the second engine wakes it

    second = Engine(nc, definitions, SETTINGS)
    await second.start()
    try:
        done = await status_is(second, "w-1", "completed")
    finally:
        await second.stop()
    assert participant.commands("w-1") == [("approval.act", "step")]
    entries = [(h.event, h.step) for h in done.history]
    assert entries.index(("operator.signal", "approve")) < entries.index(
        ("step.succeeded", "approve")
    )
    assert ("step.succeeded", "nap") in entries
    assert done.context["steps"]["approve"] == {"by": "ann"}


def _signal(subject: str, data: dict[str, Any]) -> Signal:
    return Signal(subject, data, None, "test")


@pytest.fixture
async def admin(nc: Client, participant: ScriptedParticipant) -> AsyncIterator[tuple[Engine, str]]:
    engine = Engine(nc, {"approval": parse_definition(APPROVAL)}, SETTINGS)
    server = AdminServer(engine, AdminSettings(port=0, token=TOKEN))
    url = await server.start()
    await engine.start()
    yield engine, url
    await server.stop()
    await engine.stop()


async def emit_http(url: str, saga_id: str, body: dict[str, Any]) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/sagas/{saga_id}/emit", json=body, headers=headers) as r,
    ):
        return r.status, await r.json()


async def test_emit_over_http_and_the_cli(
    nc: Client, nats_server: EmbeddedServer, admin: tuple[Engine, str]
) -> None:
    engine, url = admin
    js = nc.jetstream()
    for saga_id in ("e-1", "e-2"):
        await js.publish("approval.requested", json.dumps({"id": saga_id}).encode())
        await step_is(engine, saga_id, "approve", StepStatus.ACTIVE)

    bad = await emit_http(url, "e-1", {"subject": "approval.granted", "data": {"by": 7}})
    assert bad == (
        409,
        {
            "ok": False,
            "message": "cannot emit: schema-violation at $.by: 7 is not of type 'string'",
            "status": "running",
        },
    )
    assert (await emit_http(url, "e-1", {"data": {}}))[0] == 400  # no subject
    status, body = await emit_http(
        url, "e-1", {"subject": "approval.granted", "data": {"by": "ann"}, "actor": "console:ann"}
    )
    assert (status, body["ok"]) == (200, True)
    done = await status_is(engine, "e-1", "completed")
    [entry] = [h for h in done.history if h.event == "operator.signal"]
    assert (entry.step, entry.detail, entry.actor) == (
        "approve",
        "approval.granted",
        "console:ann via http",
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "saga", "emit", *args, "--nats", nats_server.url]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    driven = await asyncio.to_thread(cli, "e-2", "approval.done")
    assert driven.returncode == 1
    assert "emit refused: cannot emit: 'approval.done' answers step 'act', which is driven" in (
        driven.stderr
    )
    denied = await asyncio.to_thread(
        cli, "e-2", "approval.denied", "--data", '{"reason": "no budget"}', "--reason", "Q4"
    )
    assert denied.returncode == 0, denied.stderr
    assert "instance is now compensated" in denied.stdout
    state = await state_of(engine, "e-2")
    assert state is not None
    assert state.failure_reason == "no budget"
    [entry] = [h for h in state.history if h.event == "operator.signal"]
    assert entry.detail == "approval.denied: Q4"
    assert entry.actor is not None
    assert entry.actor.startswith("cli:")
    assert entry.actor.endswith(" via nats")


async def test_the_harness_on_nats_server_signals_and_waits_as_in_memory() -> None:
    """``SagaHarness(nats=True)``: the same signal and wait, through the real engine."""
    async with SagaHarness(parse_definition(APPROVAL), nats=True) as h:
        h.on("approval.act", reply("approval.done"))
        sid = await h.start({"id": "h-1"})
        with pytest.raises(HarnessError, match="schema-violation"):
            await h.signal("approval.granted", {"by": 1})
        await h.signal("approval.granted", {"by": "bo"}, reason="fine")
        result = await h.settle(sid)
    assert result.status == "completed"
    assert result.published_subjects == ["approval.act"]
