"""The example services' rules, effects and faults, through ``saga.participant.testing``:
the SDK's dispatcher with JetStream in memory (the same services against a real server are
in ``tests/integration/test_participant.py``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from saga.participant import App, Context
from saga.participant.routes import Handler
from saga.participant.testing import InMemoryApp
from services import hotel, inventory, payment

ITEMS = [{"sku": "SKU-1", "qty": 2}]


async def test_a_charge_replies_charged_and_records_one_effect() -> None:
    memory = InMemoryApp(payment.app)
    delivered = await memory.deliver("payment.charge", {"amount": 10}, saga_id="o-1")
    assert delivered.outcome == "ack"
    assert delivered.reply.subject == "payment.charged"
    assert delivered.reply.payload["amount"] == 10
    assert delivered.reply.headers["Saga-Id"] == "o-1"
    [effect] = (await memory.effects()).values()
    assert effect["effect"] == "charge"
    assert effect["result"]["payment_id"] == delivered.reply.payload["payment_id"]


async def test_a_charge_over_the_limit_is_declined() -> None:
    delivered = await InMemoryApp(payment.app).deliver("payment.charge", {"amount": 5000})
    assert delivered.reply.subject == "payment.declined"
    assert delivered.reply.payload == {"reason": "limit-exceeded", "amount": 5000, "limit": 1000}


async def test_a_retried_attempt_charges_once() -> None:
    """Attempt 2 of a step that succeeded replays the stored reply: same payment, one effect."""
    memory = InMemoryApp(payment.app)
    first = await memory.deliver("payment.charge", {"amount": 10}, attempt=1)
    again = await memory.deliver("payment.charge", {"amount": 10}, attempt=2, delivery=2)
    assert again.reply.payload == first.reply.payload
    assert len(await memory.effects()) == 1


async def test_an_unknown_sku_is_rejected_and_a_release_always_succeeds() -> None:
    memory = InMemoryApp(inventory.app)
    rejected = await memory.deliver("inventory.reserve", {"items": [{"sku": "UNKNOWN-9"}]})
    assert rejected.reply.subject == "inventory.rejected"
    assert rejected.reply.payload["reason"] == "unknown-sku"
    released = await memory.deliver("inventory.release", {"reservation_id": "r-1"})
    assert released.reply.subject == "inventory.released"
    assert released.reply.headers["Saga-Kind"] == "compensation"


async def test_the_hotel_books_from_the_trip_it_noted_and_retries_before() -> None:
    memory = InMemoryApp(hotel.app)
    booked = {"trip_id": "t-1", "booking_ref": "FL1"}
    early = await memory.deliver("travel.flight.booked", booked, saga_id="t-1")
    assert (early.outcome, early.delay, early.replies) == ("redeliver", 0.5, [])
    noted = await memory.deliver("travel.requested", {"trip_id": "t-1", "nights": 3}, saga_id="")
    assert (noted.outcome, noted.replies) == ("ack", [])
    trips = await memory.bucket(hotel.TRIPS_BUCKET)
    assert json.loads((await trips.get("t-1")).value or b"")["nights"] == 3
    later = await memory.deliver("travel.flight.booked", booked, saga_id="t-1", delivery=2)
    assert later.reply.subject == "travel.hotel.booked"
    assert later.reply.headers["Saga-Step"] == "book_hotel"


@pytest.mark.parametrize(
    ("mode", "outcome", "subject"),
    [
        ("timeout", "ack", None),
        ("crash", "redeliver", None),
        ("reject", "ack", "payment.declined"),
    ],
)
async def test_faults_asked_for_in_the_payload(
    mode: str, outcome: str, subject: str | None
) -> None:
    payload = {"amount": 10, "simulate": {"payment": mode}}
    delivered = await InMemoryApp(payment.app).deliver("payment.charge", payload)
    assert delivered.outcome == outcome
    assert [r.subject for r in delivered.replies] == ([subject] if subject else [])


async def test_a_crash_once_fails_the_first_delivery_only() -> None:
    memory = InMemoryApp(payment.app)
    payload = {"amount": 10, "simulate": {"charge_payment": "crash-once"}}
    first = await memory.deliver("payment.charge", payload, step="charge_payment")
    assert first.outcome == "redeliver"
    assert "SimulatedCrash" in first.reason
    second = await memory.deliver("payment.charge", payload, step="charge_payment", delivery=2)
    assert second.reply.subject == "payment.charged"


async def test_the_hotel_honours_faults_of_the_trip_request() -> None:
    memory = InMemoryApp(hotel.app)
    trip = {"trip_id": "t-2", "nights": 3, "simulate": {"hotel": "reject"}}
    await memory.deliver("travel.requested", trip, saga_id="")
    delivered = await memory.deliver("travel.flight.booked", {"trip_id": "t-2"}, saga_id="t-2")
    assert delivered.reply.subject == "travel.hotel.full"
    assert delivered.reply.payload["reason"] == "simulated"


async def test_a_handler_bug_and_a_bad_message_are_dead_letters() -> None:
    app = App("buggy")

    @app.step("buggy.do", success="buggy.done")
    async def do(ctx: Context, payload: dict[str, object]) -> dict[str, object]:
        return {"not json": object()}

    memory = InMemoryApp(app)
    bug = await memory.deliver("buggy.do", {})
    assert bug.outcome == "dead-letter"
    assert bug.reason.startswith("handler-bug: handler of buggy.do returned a dict that is not")
    bad = await memory.deliver("buggy.do", b"[1, 2]")
    assert (bad.outcome, bad.reason) == (
        "dead-letter",
        "malformed: payload is a JSON list, not an object",
    )
    no_id = await memory.deliver("buggy.do", {}, saga_id="")
    assert no_id.outcome == "dead-letter"
    assert no_id.reason.startswith("no-saga-id")


async def test_the_decorator_returns_the_handler_as_written() -> None:
    """The wrapper runs in the route; calling the function directly skips the faults."""
    assert payment.app.routes["payment.charge"].handler is not payment.charge
    assert payment.app.routes["payment.charge"].handler.__wrapped__ is payment.charge  # type: ignore[attr-defined]


async def test_wrappers_run_in_order_around_every_handler() -> None:
    calls: list[str] = []

    def tag(label: str) -> Callable[[Handler], Handler]:
        def wrap(handler: Handler) -> Handler:
            async def tagged(ctx: Context, payload: dict[str, Any]) -> dict[str, Any] | None:
                calls.append(label)
                return await handler(ctx, payload)

            return tagged

        return wrap

    app = App("tagged", wrap=[tag("outer"), tag("inner")])

    @app.step("tagged.do", success="tagged.done")
    async def do(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        calls.append("handler")
        return {}

    @app.on("tagged.seen")
    async def seen(ctx: Context, payload: dict[str, Any]) -> None:
        calls.append("listener")

    memory = InMemoryApp(app)
    assert (await memory.deliver("tagged.do", {})).reply.subject == "tagged.done"
    assert (await memory.deliver("tagged.seen", {})).outcome == "ack"
    assert calls == ["outer", "inner", "handler", "outer", "inner", "listener"]
