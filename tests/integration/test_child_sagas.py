"""Child sagas on nats-server: a ``saga:`` step starts the child with a derived id, succeeds
or fails with it, and compensating the parent undoes a completed child."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.aio.client import Client

from saga.admin import AdminServer, AdminSettings
from saga.client import SagaClient
from saga.core.state import InstanceState, ParentLink
from saga.definition import parse_definition
from saga.definition.model import SagaDefinition
from saga.engine import Engine, EngineSettings
from saga.index.query import SagaQuery
from saga.nats.topology import instance_key
from tests.integration.test_console import TOKEN, Console, browser, signed_in
from tests.support import ScriptedParticipant, wait_for

__all__ = ["browser"]  # a fixture

TRIP = """
name: trip
trigger: {event: trip.requested, id: {field: id}}
steps:
  - name: book
    saga: booking
    data: {id: trigger.id, nights: trigger.nights}
    keep: [id, steps]
  - name: pay
    publish: {event: trip.pay, data: {room: steps.book.steps.hotel.room}}
    success: trip.paid
    failure: trip.declined
"""
BOOKING = """
name: booking
trigger: {event: booking.requested, id: {field: id}}
steps:
  - name: hotel
    publish: {event: booking.hotel, data: {nights: trigger.nights}}
    success: booking.hotel.done
    failure: booking.hotel.full
    keep: [room]
    compensate:
      publish: {event: booking.hotel.cancel}
      success: booking.hotel.cancelled
"""
SETTINGS = EngineSettings(fetch_wait=0.2)


def definitions() -> dict[str, SagaDefinition]:
    return {"trip": parse_definition(TRIP), "booking": parse_definition(BOOKING)}


def _hotel(payload: dict[str, Any], headers: dict[str, str]) -> tuple[str, dict[str, Any]]:
    if payload["nights"] > 9:
        return "booking.hotel.full", {"reason": "no room for so long"}
    return "booking.hotel.done", {"room": 7}


def _pay(payload: dict[str, Any], headers: dict[str, str]) -> tuple[str, dict[str, Any]]:
    if payload["room"] != 7:
        return "trip.declined", {"reason": "wrong room"}
    if headers["Saga-Id"].startswith("broke"):
        return "trip.declined", {"reason": "card declined"}
    return "trip.paid", {}


@pytest.fixture
async def engine(nc: Client) -> AsyncIterator[Engine]:
    engine = Engine(nc, definitions(), SETTINGS)
    await engine.start()
    rules = {
        "booking.hotel": _hotel,
        "booking.hotel.cancel": lambda p, h: ("booking.hotel.cancelled", {}),
        "trip.pay": _pay,
    }
    scripted = await ScriptedParticipant(nc, rules).start()
    yield engine
    await scripted.stop()
    await engine.stop()


async def ended(engine: Engine, saga: str, saga_id: str, status: str) -> InstanceState:
    found: list[InstanceState] = []

    async def reached() -> bool:
        assert engine.store is not None
        stored = await engine.store.load(instance_key(saga, saga_id))
        found[:] = [stored.record.state] if stored else []
        return bool(found) and found[0].status.value == status

    await wait_for(reached, message=f"{saga} {saga_id} {status}")
    return found[0]


async def start(nc: Client, saga_id: str, nights: int) -> None:
    body = json.dumps({"id": saga_id, "nights": nights}).encode()
    await nc.jetstream().publish("trip.requested", body)


async def test_the_parent_completes_with_its_child(nc: Client, engine: Engine) -> None:
    await start(nc, "t-1", 2)
    trip = await ended(engine, "trip", "t-1", "completed")
    child = await ended(engine, "booking", "t-1-book", "completed")
    assert child.parent == ParentLink(saga="trip", saga_id="t-1", step="book", attempt=1)
    assert child.context["trigger"] == {"id": "t-1", "nights": 2}
    # the success payload is the child's kept context, subset by the step's keep
    assert trip.context["steps"]["book"] == {
        "id": "t-1-book",
        "steps": {"hotel": {"room": 7}},
    }


async def test_a_failed_child_fails_the_parent_step(nc: Client, engine: Engine) -> None:
    await start(nc, "t-2", 12)
    trip = await ended(engine, "trip", "t-2", "compensated")
    await ended(engine, "booking", "t-2-book", "compensated")
    assert trip.failure_step == "book"
    assert trip.failure_reason == "no room for so long"
    assert trip.steps["pay"].status.value == "pending"


async def test_compensating_the_parent_undoes_a_completed_child(nc: Client, engine: Engine) -> None:
    await start(nc, "broke-3", 2)
    trip = await ended(engine, "trip", "broke-3", "compensated")
    child = await ended(engine, "booking", "broke-3-book", "compensated")
    assert trip.failure_reason == "card declined"
    assert trip.steps["book"].compensation.value == "done"
    events = [h.event for h in child.history]
    assert events.index("saga.completed") < events.index("saga.undo-requested")
    assert events[-1] == "saga.compensated"
    assert child.steps["hotel"].compensation.value == "done"


async def test_a_resent_child_trigger_starts_nothing_new(nc: Client, engine: Engine) -> None:
    await start(nc, "t-4", 1)
    await ended(engine, "trip", "t-4", "completed")
    await start(nc, "t-4", 1)  # the parent absorbs it; the child exists once
    store = engine.store
    assert store is not None
    keys: list[str] = []

    async def listed() -> bool:  # a key listing can come back empty on a busy server
        keys[:] = [k for k in await store.keys() if k.startswith("booking.")]
        return bool(keys)

    await wait_for(listed, timeout=30, message="the child's instance key")
    assert keys == [instance_key("booking", "t-4-book")]


async def test_the_console_links_parent_and_child(nc: Client, engine: Engine, browser: Any) -> None:
    await start(nc, "t-5", 1)
    await ended(engine, "trip", "t-5", "completed")
    await ended(engine, "booking", "t-5-book", "completed")
    server = AdminServer(engine.view(), AdminSettings(port=0, token=TOKEN))
    url = await server.start()
    try:
        page = await signed_in(browser, Console(nc, url))
        await page.goto(url + "/console/sagas/trip/t-5")
        await page.click("a.child")
        await page.wait_for_url("**/console/sagas/booking/t-5-book")
        await page.click("a.parent")
        await page.wait_for_url("**/console/sagas/trip/t-5")
        assert page.errors == []
    finally:
        await server.stop()
    found = await SagaClient(nc).list(SagaQuery(saga="booking"))  # the entry names the parent
    assert [s.parent for s in found.items] == [ParentLink(saga="trip", saga_id="t-5", step="book")]
