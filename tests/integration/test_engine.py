"""The engine against a real nats-server, with a scripted participant replying by rule."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from saga.client import find_instance, instance_store
from saga.core.state import InstanceState
from saga.definition import parse_definition
from saga.engine import Engine, EngineSettings
from saga.nats.provision import StreamSettings
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology
from tests.support import ScriptedParticipant, wait_for

SHOP = """
name: shop
trigger: {event: shop.ordered, id: {field: id}}
steps:
  - name: reserve
    publish: {event: stock.reserve, data: {id: trigger.id, sku: trigger.sku}}
    success: stock.reserved
    failure: stock.rejected
    keep: [reservation]
    timeout: 1s
    compensate:
      publish: {event: stock.release, data: {reservation: steps.reserve.reservation}}
      success: stock.released
      failure: stock.release-failed
      timeout: 1s
      retry: {attempts: 2, backoff: 100ms, on_failure: true}
  - name: charge
    publish: {event: pay.charge, data: {id: trigger.id, amount: trigger.amount}}
    success: pay.charged
    failure: pay.declined
    timeout: 1s
    retry: {attempts: 3, backoff: 100ms}
    compensate:
      publish: {event: pay.refund, data: {id: trigger.id}}
      success: pay.refunded
  - name: ship
    publish: {event: ship.book, data: {id: trigger.id}}
    success: ship.booked
    failure: ship.failed
    timeout: 1s
"""

FAST = EngineSettings(
    streams=StreamSettings(ack_wait_backoff=(1.0, 2.0), max_deliver=3), fetch_wait=0.2
)


def ok(subject: str, **data: Any):  # type: ignore[no-untyped-def]
    return lambda payload, headers: (subject, data)


def fail(subject: str, reason: str):  # type: ignore[no-untyped-def]
    return lambda payload, headers: (subject, {"reason": reason})


def silent(payload: dict[str, Any], headers: dict[str, str]) -> None:
    return None


HAPPY = {
    "stock.reserve": ok("stock.reserved", reservation="r-1"),
    "stock.release": ok("stock.released"),
    "pay.charge": ok("pay.charged"),
    "pay.refund": ok("pay.refunded"),
    "ship.book": ok("ship.booked"),
}


@pytest.fixture
async def client(nats_server: EmbeddedServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


@pytest.fixture
async def engine(client: Client) -> AsyncIterator[Engine]:
    engine = Engine(client, {"shop": parse_definition(SHOP)}, FAST)
    await engine.start()
    yield engine
    await engine.stop()


async def run_saga(
    nc: Client, rules: dict[str, Any], saga_id: str, **extra: Any
) -> tuple[InstanceState, ScriptedParticipant]:
    participant = await ScriptedParticipant(nc, rules).start()
    js = nc.jetstream()
    await js.publish(
        "shop.ordered", json.dumps({"id": saga_id, "sku": "A", "amount": 5, **extra}).encode()
    )
    state = await wait_terminal(nc, saga_id)
    await participant.stop()
    return state, participant


async def wait_terminal(
    nc: Client,
    saga_id: str,
    statuses: tuple[str, ...] = ("completed", "compensated", "parked"),
    timeout: float = 15,
) -> InstanceState:
    store = await instance_store(nc.jetstream(), Topology())
    found: list[InstanceState] = []

    async def ended() -> bool:
        state = await find_instance(store, saga_id, "shop")
        if state is not None and state.status.value in statuses:
            found.append(state)
            return True
        return False

    await wait_for(ended, timeout=timeout, message=f"saga {saga_id} to reach {statuses}")
    return found[-1]


async def test_happy_path_completes(client: Client, engine: Engine) -> None:
    state, participant = await run_saga(client, HAPPY, "o-1")
    assert state.status.value == "completed"
    assert participant.commands("o-1") == [
        ("stock.reserve", "step"),
        ("pay.charge", "step"),
        ("ship.book", "step"),
    ]
    assert state.context["steps"]["reserve"] == {"reservation": "r-1"}


@pytest.mark.parametrize(
    ("failing", "undone"),
    [
        ({"stock.reserve": fail("stock.rejected", "no stock")}, []),
        ({"pay.charge": fail("pay.declined", "limit")}, ["stock.release"]),
        ({"ship.book": fail("ship.failed", "no courier")}, ["pay.refund", "stock.release"]),
    ],
)
async def test_failure_compensates_completed_steps_newest_first(
    client: Client, engine: Engine, failing: dict[str, Any], undone: list[str]
) -> None:
    state, participant = await run_saga(client, {**HAPPY, **failing}, "o-2")
    assert state.status.value == "compensated"
    compensations = [s for s, kind in participant.commands("o-2") if kind == "compensation"]
    assert compensations == undone


async def test_step_timeout_compensates(client: Client, engine: Engine) -> None:
    state, participant = await run_saga(client, {**HAPPY, "ship.book": silent}, "o-3")
    assert state.status.value == "compensated"
    assert state.steps["ship"].status.value == "timed-out"
    assert [s for s, k in participant.commands("o-3") if k == "compensation"] == [
        "pay.refund",
        "stock.release",
    ]


async def test_retry_with_backoff_then_success(client: Client, engine: Engine) -> None:
    def second_attempt(
        payload: dict[str, Any], headers: dict[str, str]
    ) -> tuple[str, dict[str, Any]] | None:
        return ("pay.charged", {}) if headers["Saga-Attempt"] == "2" else None

    state, participant = await run_saga(client, {**HAPPY, "pay.charge": second_attempt}, "o-4")
    assert state.status.value == "completed"
    assert state.steps["charge"].attempt == 2
    assert [s for s, _ in participant.commands("o-4")].count("pay.charge") == 2


async def test_compensation_that_keeps_failing_parks_visibly(
    client: Client, engine: Engine
) -> None:
    rules = {
        **HAPPY,
        "pay.charge": fail("pay.declined", "limit"),
        "stock.release": fail("stock.release-failed", "warehouse offline"),
    }
    status_sub = await client.subscribe("saga.status.shop.parked")
    state, participant = await run_saga(client, rules, "o-5")
    assert state.status.value == "parked"
    assert state.steps["reserve"].compensation.value == "failed"
    assert [s for s, _ in participant.commands("o-5")].count("stock.release") == 2
    announced = await status_sub.next_msg(timeout=5)
    assert json.loads(announced.data)["saga_id"] == "o-5"


async def test_duplicate_and_late_replies_are_no_ops(client: Client, engine: Engine) -> None:
    def charge(payload: dict[str, Any], headers: dict[str, str]) -> tuple[str, dict[str, Any]]:
        return (
            ("pay.declined", {"reason": "limit"}) if payload["id"] == "o-6" else ("pay.charged", {})
        )

    participant = await ScriptedParticipant(client, {**HAPPY, "pay.charge": charge}).start()
    js = client.jetstream()
    await js.publish("shop.ordered", b'{"id": "o-6"}')
    state = await wait_terminal(client, "o-6")
    headers = {"Saga-Id": "o-6", "Saga-Name": "shop", "Saga-Step": "reserve"}
    # A repeated step reply during/after compensation is not a confirmation of the undo.
    for subject in ("stock.reserved", "pay.declined", "stock.released"):
        await js.publish(subject, b'{"reservation": "r-9"}', headers=headers)
    await js.publish("shop.ordered", b'{"id": "o-6"}')
    await js.publish("shop.ordered", b'{"id": "o-6b"}')  # processed after the duplicates
    assert (await wait_terminal(client, "o-6b")).status.value == "completed"
    await participant.stop()
    after = await wait_terminal(client, "o-6")
    assert after.history == state.history
    assert after.context == state.context


async def test_malformed_and_unknown_events_are_dead_lettered(
    client: Client, engine: Engine
) -> None:
    js = client.jetstream()
    dlq = await client.subscribe("saga.dlq.>")
    await js.publish("pay.charged", b"not json", headers={"Saga-Id": "x"})
    await js.publish("pay.charged", b"{}", headers={"Saga-Id": "nobody"})
    await js.publish("pay.charged", b"[1, 2]", headers={"Saga-Id": "x"})
    await js.publish("pay.charged", b"{}")
    letters = [await dlq.next_msg(timeout=5) for _ in range(4)]
    codes = sorted(m.headers["Saga-Dlq-Code"] for m in letters)
    assert codes == ["malformed", "malformed", "no-saga-id", "unknown-instance"]
    assert all(m.headers["Saga-Dlq-Subject"] == "pay.charged" for m in letters)
    assert all(m.headers["Saga-Dlq-Reason"] for m in letters)
    state, _ = await run_saga(client, HAPPY, "o-7")  # and the engine keeps working
    assert state.status.value == "completed"


async def test_timers_fall_back_to_delayed_redelivery(client: Client) -> None:
    """On a server without message schedules, timeouts and retry backoff still fire."""
    streams = StreamSettings(ack_wait_backoff=(1.0, 2.0), max_deliver=3, native_timers=False)
    engine = Engine(
        client, {"shop": parse_definition(SHOP)}, EngineSettings(streams=streams, fetch_wait=0.2)
    )
    await engine.start()
    try:
        assert engine.timers.native is False

        def second_attempt(
            payload: dict[str, Any], headers: dict[str, str]
        ) -> tuple[str, dict[str, Any]] | None:
            return ("pay.charged", {}) if headers["Saga-Attempt"] == "2" else None

        state, _ = await run_saga(
            client, {**HAPPY, "pay.charge": second_attempt, "ship.book": silent}, "t-1"
        )
        assert state.steps["charge"].attempt == 2
        assert state.steps["ship"].status.value == "timed-out"
        assert state.status.value == "compensated"
    finally:
        await engine.stop()


async def test_repeated_step_reply_during_compensation_is_not_a_confirmation(
    client: Client, engine: Engine
) -> None:
    rules = {**HAPPY, "pay.charge": fail("pay.declined", "limit"), "stock.release": silent}
    participant = await ScriptedParticipant(client, rules).start()
    js = client.jetstream()
    await js.publish("shop.ordered", b'{"id": "o-8", "sku": "A", "amount": 5}')
    await wait_terminal(client, "o-8", statuses=("compensating",))
    headers = {"Saga-Id": "o-8", "Saga-Name": "shop", "Saga-Step": "reserve"}
    await js.publish("stock.reserved", b'{"reservation": "r-1"}', headers=headers)
    # The undo is never confirmed, so the instance must park, not end compensated.
    state = await wait_terminal(client, "o-8")
    await participant.stop()
    assert state.status.value == "parked"
    assert "compensation.succeeded" not in [h.event for h in state.history]


async def operator(client: Client, action: str, saga_id: str) -> dict[str, Any]:
    from saga.engine.operator import OPERATOR_SUBJECT, ActionRequest

    request = ActionRequest.model_validate({"action": action, "saga_id": saga_id, "reason": "test"})
    reply = await client.request(OPERATOR_SUBJECT, request.model_dump_json().encode(), timeout=10)
    result: dict[str, Any] = json.loads(reply.data)
    return result


async def test_operator_abort_compensates_a_running_saga(client: Client, engine: Engine) -> None:
    participant = await ScriptedParticipant(client, {**HAPPY, "pay.charge": silent}).start()
    await client.jetstream().publish("shop.ordered", b'{"id": "op-1", "sku": "A", "amount": 5}')
    store = await instance_store(client.jetstream(), Topology())

    async def charging() -> bool:
        state = await find_instance(store, "op-1", "shop")
        return state is not None and state.steps["charge"].status.value == "active"

    await wait_for(charging, message="the charge step")
    result = await operator(client, "abort", "op-1")
    assert result["ok"], result
    state = await wait_terminal(client, "op-1")
    await participant.stop()
    assert state.status.value == "compensated"
    assert state.failure_reason == "test"
    assert "operator.abort" in [h.event for h in state.history]

    refused = await operator(client, "abort", "op-1")
    assert refused == {
        "ok": False,
        "message": "cannot abort: instance is compensated",
        "status": "compensated",
    }


async def test_operator_retry_and_resume_a_parked_saga(client: Client, engine: Engine) -> None:
    rules = {
        **HAPPY,
        "pay.charge": fail("pay.declined", "limit"),
        "stock.release": fail("stock.release-failed", "offline"),
    }
    state, _ = await run_saga(client, rules, "op-2")
    assert state.status.value == "parked"
    retried = await operator(client, "retry", "op-2")  # fails again: parks again
    assert retried["ok"], retried
    await wait_for(lambda: _parked_after_retry(client, "op-2"), message="parked again")
    resumed = await operator(client, "resume", "op-2")
    assert resumed["ok"], resumed
    final = await wait_terminal(client, "op-2", statuses=("compensated",))
    assert final.steps["reserve"].compensation.value == "resolved"
    assert (await operator(client, "resume", "op-2"))["ok"] is False
    assert (await operator(client, "retry", "nobody"))["message"] == "no instance 'nobody'"


async def _parked_after_retry(client: Client, saga_id: str) -> bool:
    state = await find_instance(
        await instance_store(client.jetstream(), Topology()), saga_id, "shop"
    )
    events = [h.event for h in state.history] if state else []
    return bool(state) and "operator.retry" in events and events[-1] == "saga.parked"
