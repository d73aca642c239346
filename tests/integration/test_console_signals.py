"""The instance page's "Emit an event" form in a real headless Chromium: a person approves
an observed step; a payload breaking the step's schema is refused with the reason."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest

from saga.admin import AdminServer, AdminSettings
from saga.core.state import InstanceState, StepStatus
from saga.definition import parse_definition
from saga.engine import Engine, EngineSettings
from saga.nats.server import EmbeddedServer
from saga.nats.topology import instance_key
from tests.integration.test_console import TOKEN, Console, browser, signed_in
from tests.support import ScriptedParticipant, wait_for

__all__ = ["browser"]  # the fixture, used by name

APPROVAL = """
name: approval
trigger: {event: approval.requested, id: {field: id}}
steps:
  - name: approve
    success: approval.granted
    failure: approval.denied
    schema: {type: object, required: [by], properties: {by: {type: string}}}
  - name: act
    publish: {event: approval.act, data: {id: trigger.id}}
    success: approval.done
    timeout: 30s
"""


@pytest.fixture
async def approvals(nats_server: EmbeddedServer) -> AsyncIterator[tuple[Console, Engine]]:
    nc = await nats.connect(nats_server.url)
    engine = Engine(nc, {"approval": parse_definition(APPROVAL)}, EngineSettings(fetch_wait=0.2))
    server = AdminServer(engine, AdminSettings(port=0, token=TOKEN))
    url = await server.start()
    await engine.start()
    rules = {"approval.act": lambda p, h: ("approval.done", {})}
    participant = await ScriptedParticipant(nc, rules).start()
    yield Console(nc, url), engine
    await participant.stop()
    await server.stop()
    await engine.stop()
    await nc.close()


async def state_of(engine: Engine, saga_id: str) -> InstanceState | None:
    assert engine.store is not None
    stored = await engine.store.load(instance_key("approval", saga_id))
    return stored.record.state if stored else None


async def test_approve_from_the_instance_page(
    approvals: tuple[Console, Engine], browser: Any
) -> None:
    console, engine = approvals
    await console.nc.jetstream().publish("approval.requested", json.dumps({"id": "a-1"}).encode())

    async def waiting() -> bool:
        state = await state_of(engine, "a-1")
        return state is not None and state.steps["approve"].status is StepStatus.ACTIVE

    await wait_for(waiting, message="a-1 waiting for its approval")
    page = await signed_in(browser, console)
    await page.goto(console.url + "/console/sagas/approval/a-1")
    options = await page.locator("form.emit select[name=subject] option").all_inner_texts()
    assert options == [
        "approval.granted (success of approve)",
        "approval.denied (failure of approve)",
    ]
    await page.fill("form.emit textarea[name=data]", '{"by": 7}')
    await page.fill("form.emit input[name=reason]", "checked")
    await page.click("button.act-emit")
    await page.wait_for_selector(".notice.bad")
    refused = await page.locator(".notice").inner_text()
    assert "schema-violation at $.by: 7 is not of type 'string'" in refused

    await page.goto(console.url + "/console/sagas/approval/a-1")
    await page.select_option("form.emit select[name=subject]", "approval.granted")
    await page.fill("form.emit textarea[name=data]", '{"by": "ann"}')
    await page.fill("form.emit input[name=reason]", "receipt checked")
    await page.click("button.act-emit")
    await page.wait_for_selector(".notice.ok")
    assert "emit approval.granted: Signal applied" in await page.locator(".notice").inner_text()

    async def completed() -> bool:
        state = await state_of(engine, "a-1")
        return state is not None and state.status.value == "completed"

    await wait_for(completed, message="a-1 completed")
    await page.click("a:has-text('Back to the instance')")
    assert "operator.signal" in await page.locator("table.timeline").inner_text()
    assert await page.locator("form.emit").count() == 0  # nothing left to answer
    refusal = "the server responded with a status of 409"  # the refused emit, above
    assert [x for x in page.errors if refusal not in x] == []
