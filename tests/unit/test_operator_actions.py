"""Terminate and redrive through saga.testing (the engine's own apply path) and the
operator request; the wire name of a redriven run."""

from __future__ import annotations

import pytest

from saga.core.events import OperatorRedrive, OperatorTerminate
from saga.engine.operator import ActionRequest
from saga.protocol import HEADER_RUN, command_message_id, idempotency_key
from saga.testing import HarnessError, SagaHarness, fail, no_reply, reply, sequence

SHOP = """
name: shop
trigger: {event: order.placed, id: {field: id}}
steps:
  - name: reserve
    publish: {event: stock.reserve, data: {id: trigger.id}}
    success: stock.reserved
    compensate: {publish: {event: stock.release, data: {id: trigger.id}}}
  - name: notify
    publish: {event: mail.send, data: {id: trigger.id}}
    success: mail.sent
  - name: charge
    publish: {event: payment.charge, data: {id: trigger.id, total: trigger.total}}
    success: payment.charged
    failure: payment.declined
  - name: ship
    publish: {event: ship.book, data: {id: trigger.id}}
    success: ship.booked
    timeout: 1m
"""


def shop() -> SagaHarness:
    h = SagaHarness.from_text(SHOP)
    h.on("stock.reserve", reply("stock.reserved"))
    h.on("ship.book", reply("ship.booked"))
    h.on("mail.send", reply("mail.sent"))
    return h


async def test_redrive_a_compensated_saga_runs_again_from_its_failed_step() -> None:
    h = shop().on(
        "payment.charge",
        sequence(fail("payment.declined", "card expired"), reply("payment.charged")),
    )
    async with h:
        first = await h.run({"id": "o-1", "total": 5})
        assert first.status == "compensated"
        await h.act("redrive", reason="card renewed")
        result = await h.settle()

    assert result.status == "completed"
    assert result.state is not None
    assert result.state.run == 1
    assert result.state.context["trigger"] == {"id": "o-1", "total": 5}
    redrive = next(e for e in result.state.history if e.event == "operator.redrive")
    assert (redrive.step, redrive.actor) == ("charge", "saga.testing")
    assert redrive.detail == "run 1: card renewed"
    # the undone reserve runs again in run 1; notify (no undo: its effect stands) does not
    sent = [(m.subject, m.headers.get(HEADER_RUN)) for m in result.messages]
    assert sent.count(("stock.reserve", "1")) == 1
    assert sent.count(("mail.send", None)) == 1
    assert ("mail.send", "1") not in sent
    assert ("payment.charge", "1") in sent


async def test_terminate_ends_without_compensating_and_absorbs_late_replies() -> None:
    h = shop().on("payment.charge", reply("payment.charged")).on("ship.book", no_reply())
    async with h:
        await h.start({"id": "o-2", "total": 5})
        await h.act("terminate", reason="customer called")
        result = await h.result()
        with pytest.raises(HarnessError, match="cannot abort: instance is terminated"):
            await h.act("abort")
        await h.emit("ship.booked", {})
        after = await h.result()

    assert result.status == "terminated"
    assert result.state is not None
    assert result.state.steps["ship"].status == "abandoned"
    assert not [m for m in result.messages if m.subject == "stock.release"]
    entry = next(e for e in result.state.history if e.event == "operator.terminate")
    assert (entry.detail, entry.actor) == ("customer called", "saga.testing")
    assert after.state == result.state
    assert [m.subject for m in result.messages if m.subject.startswith("saga.status")] == [
        "saga.status.shop.terminated"
    ]


async def test_a_terminated_saga_can_be_redriven() -> None:
    h = shop().on("payment.charge", reply("payment.charged")).on("ship.book", no_reply())
    async with h:
        await h.start({"id": "o-3", "total": 5})
        await h.act("terminate")
        h.on("ship.book", reply("ship.booked"))
        await h.act("redrive")
        result = await h.settle()
    assert result.status == "completed"
    assert [e.event for e in result.state.history if e.event.startswith("operator.")] == [  # type: ignore[union-attr]
        "operator.terminate",
        "operator.redrive",
    ]


async def test_redrive_of_a_running_saga_is_refused() -> None:
    h = shop().on("payment.charge", no_reply())
    async with h:
        await h.start({"id": "o-4"})
        with pytest.raises(HarnessError, match="cannot redrive: instance is running"):
            await h.act("redrive")
        with pytest.raises(HarnessError, match="unknown action"):
            await h.act("explode")


def test_operator_requests_map_to_core_events() -> None:
    terminate = ActionRequest(action="terminate", saga_id="o-1", reason="stuck", actor="cli:a")
    assert terminate.event("nats") == OperatorTerminate("stuck", "cli:a via nats")
    assert ActionRequest(action="terminate", saga_id="o-1").event("http") == OperatorTerminate(
        "terminated by operator", "http"
    )
    assert ActionRequest(action="redrive", saga_id="o-1").event("http") == OperatorRedrive(
        None, "http"
    )


def test_a_run_is_part_of_the_idempotency_key_and_the_message_id() -> None:
    assert idempotency_key("shop", "o-1", "charge", "step") == "shop:o-1:charge:step"
    assert idempotency_key("shop", "o-1", "charge", "step", 2) == "shop:o-1:charge:step:run2"
    assert (
        command_message_id("shop", "o-1", "charge", "step", 1, 2) == "shop:o-1:charge:step:run2:1"
    )
