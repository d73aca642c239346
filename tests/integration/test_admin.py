"""The admin HTTP API of a running engine."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import nats
import pytest
from nats.aio.client import Client

from saga.admin import AdminServer, AdminSettings
from saga.admin.openapi import OPENAPI
from saga.definition import parse_definition
from saga.engine import Engine
from saga.nats.server import EmbeddedServer
from saga.telemetry import telemetry_from_env
from tests.integration.test_engine import FAST, HAPPY, SHOP, fail, run_saga, wait_terminal
from tests.support import ScriptedParticipant

TOKEN = "t0ken"


@pytest.fixture
async def admin(nats_server: EmbeddedServer) -> AsyncIterator[tuple[Client, str]]:
    nc = await nats.connect(nats_server.url)
    telemetry = telemetry_from_env("saga-engine", prometheus=True)
    engine = Engine(nc, {"shop": parse_definition(SHOP)}, FAST, telemetry=telemetry)
    server = AdminServer(engine.view(), AdminSettings(port=0, token=TOKEN))
    url = await server.start()
    await engine.start()
    yield nc, url
    await server.stop()
    await engine.stop()
    await nc.close()


async def get(url: str, path: str, token: str | None = TOKEN) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.get(url + path, headers=headers) as r:
        text = await r.text()
        return r.status, json.loads(text) if r.content_type == "application/json" else text


async def post(url: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + path, json=body, headers=headers) as r,
    ):
        return r.status, await r.json()


async def test_probes_are_open_and_listen_on_loopback(admin: tuple[Client, str]) -> None:
    _, url = admin
    assert url.startswith("http://127.0.0.1:")
    assert await get(url, "/healthz", token=None) == (200, {"status": "ok"})
    status, ready = await get(url, "/readyz", token=None)
    assert (status, ready["status"]) == (200, "ready")
    assert "partitions" not in ready  # not partitioned: any replica takes any event


async def test_everything_else_needs_the_token(admin: tuple[Client, str]) -> None:
    _, url = admin
    status, body = await get(url, "/sagas", token=None)
    assert status == 401
    assert await get(url, "/sagas", token="wrong") == (401, body)


async def test_instances_definitions_and_metrics(admin: tuple[Client, str]) -> None:
    nc, url = admin
    await run_saga(nc, HAPPY, "a-1")
    await run_saga(nc, {**HAPPY, "pay.charge": fail("pay.declined", "limit")}, "a-2")
    status, listed = await get(url, "/sagas?state=compensated")
    assert status == 200
    assert [s["saga_id"] for s in listed] == ["a-2"]
    status, one = await get(url, "/sagas/a-1")
    assert (status, one["status"], one["steps"]["ship"]["status"]) == (
        200,
        "completed",
        "succeeded",
    )
    assert (await get(url, "/sagas/nobody"))[0] == 404
    assert (await get(url, "/sagas?state=bogus"))[0] == 400
    status, definitions = await get(url, "/definitions")
    assert [d["name"] for d in definitions] == ["shop"]
    assert definitions[0]["steps"][0]["publish"] == "stock.reserve"
    status, text = await get(url, "/metrics")
    assert status == 200
    completed = [
        line
        for line in text.splitlines()
        if line.startswith("saga_completed_total{") and 'saga_name="shop"' in line
    ]
    assert completed
    assert float(completed[0].rsplit(" ", 1)[1]) >= 1
    assert "saga_step_duration_seconds_count{" in text


async def test_operator_actions_over_http(admin: tuple[Client, str]) -> None:
    nc, url = admin
    await run_saga(nc, HAPPY, "a-3")
    status, result = await post(url, "/sagas/a-3/abort", {"reason": "customer called"})
    assert status == 409
    assert result["message"] == "cannot abort: instance is completed"
    assert (await post(url, "/sagas/nobody/retry"))[0] == 404
    assert (await post(url, "/sagas/a-3/explode"))[0] == 404


async def test_terminate_and_redrive_over_http(admin: tuple[Client, str]) -> None:
    nc, url = admin
    declined = {**HAPPY, "pay.charge": fail("pay.declined", "card expired")}
    state, _ = await run_saga(nc, declined, "a-4")
    assert state.status.value == "compensated"
    status, result = await post(url, "/sagas/a-4/terminate", {"reason": "x"})
    assert (status, result["message"]) == (409, "cannot terminate: instance is compensated")
    participant = await ScriptedParticipant(nc, HAPPY, name="fixed").start()
    status, result = await post(url, "/sagas/a-4/redrive", {"reason": "card renewed"})
    assert status == 200, result
    state = await wait_terminal(nc, "a-4", ("completed",))
    await participant.stop()
    redrive = [h for h in state.history if h.event == "operator.redrive"]
    assert [(h.detail, h.actor) for h in redrive] == [("run 1: card renewed", "http")]
    status, result = await post(url, "/sagas/a-4/redrive")
    assert (status, result["status"]) == (409, "completed")


async def test_openapi_document_lists_every_route(admin: tuple[Client, str]) -> None:
    _, url = admin
    status, document = await get(url, "/openapi.json")
    assert status == 200
    assert document == json.loads(json.dumps(OPENAPI))
    assert {
        "/healthz",
        "/readyz",
        "/metrics",
        "/sagas",
        "/sagas/{saga_id}",
        "/sagas/{saga_id}/abort",
        "/sagas/{saga_id}/terminate",
        "/sagas/{saga_id}/redrive",
        "/definitions",
    } <= set(document["paths"])
