"""Every outcome of the example sagas in definitions/, run with saga.testing in memory.

Given scripted participants, when a saga runs, then its outcome and the exact commands the
engine published (subjects, payloads, saga headers) are as the definition says.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from saga.testing import Behaviour, Message, SagaHarness, fail, no_reply, reply, sequence
from tests.conftest import DEFINITIONS

ORDER = DEFINITIONS / "order-fulfilment.yaml"
TRAVEL = DEFINITIONS / "travel-booking.yaml"
ITEMS = [{"sku": "SKU-1", "qty": 2}]
PLACED = {"order_id": "o1", "customer_id": "c1", "items": ITEMS, "total": 40, "address": "1 Way"}
TRIP = {
    "trip_id": "t1",
    "traveller": "Ada",
    "route": "LIS-BER",
    "date": "2030-05-01",
    "destination": "Berlin",
    "nights": 3,
}


def trace(commands: list[Message]) -> list[tuple[str, str | None, str | None, int | None]]:
    """``(subject, Saga-Step, Saga-Kind, Saga-Attempt)`` of each command."""
    return [(c.subject, c.step, c.kind, c.attempt) for c in commands]


# -- order-fulfilment -----------------------------------------------------------------------


def shop(overrides: dict[str, Behaviour] | None = None) -> SagaHarness:
    """Every order participant answering well, unless overridden by subject."""
    h = SagaHarness.from_file(ORDER)
    h.on("inventory.reserve", reply("inventory.reserved", reservation_id="r1"))
    h.on("payment.charge", reply("payment.charged", payment_id="p1", amount=40))
    h.on("shipping.schedule", reply("shipping.scheduled", tracking_id="tr1"))
    h.on("inventory.release", reply("inventory.released"))
    h.on("payment.refund", reply("payment.refunded"))
    for subject, behaviour in (overrides or {}).items():
        h.on(subject, behaviour)
    return h


async def test_order_completes_with_every_command_exactly_as_published() -> None:
    result = await shop().run(PLACED)

    assert result.status == "completed"
    reserve, charge, ship = result.commands
    assert reserve == Message(
        "inventory.reserve",
        {"order_id": "o1", "items": ITEMS},
        {
            "Saga-Id": "o1",
            "Saga-Name": "order-fulfilment",
            "Saga-Step": "reserve_inventory",
            "Saga-Attempt": "1",
            "Saga-Kind": "step",
            "Nats-Msg-Id": "order-fulfilment:o1:reserve_inventory:step:1",
        },
    )
    assert charge.payload == {
        "order_id": "o1",
        "customer_id": "c1",
        "amount": 40,
        "currency": "EUR",
    }
    assert ship.payload == {"order_id": "o1", "address": "1 Way", "items": ITEMS}
    assert result.context["steps"] == {
        "reserve_inventory": {"reservation_id": "r1"},
        "charge_payment": {"payment_id": "p1", "amount": 40},
        "schedule_shipping": {"tracking_id": "tr1"},
    }
    assert [e.subject for e in result.status_events] == ["saga.status.order-fulfilment.completed"]
    assert result.status_events[0].payload["reason"] is None


async def test_unknown_sku_is_rejected_and_nothing_is_undone() -> None:
    h = shop({"inventory.reserve": fail("inventory.rejected", "unknown-sku")})

    result = await h.run(PLACED)

    assert result.status == "compensated"
    assert result.published_subjects == ["inventory.reserve"]
    assert (result.failure_step, result.failure_reason) == ("reserve_inventory", "unknown-sku")
    assert result.status_events[0].payload["reason"] == "unknown-sku"


async def test_declined_payment_releases_the_reservation() -> None:
    h = shop({"payment.charge": fail("payment.declined", "limit-exceeded")})

    result = await h.run({**PLACED, "total": 5000})

    assert result.status == "compensated"
    assert trace(result.commands) == [
        ("inventory.reserve", "reserve_inventory", "step", 1),
        ("payment.charge", "charge_payment", "step", 1),
        ("inventory.release", "reserve_inventory", "compensation", 1),
    ]
    assert result.commands[1].payload["amount"] == 5000
    assert result.commands[2].payload == {"order_id": "o1", "reservation_id": "r1"}
    assert result.commands[2].msg_id == "order-fulfilment:o1:reserve_inventory:compensation:1"


async def test_failed_shipping_refunds_then_releases_newest_first() -> None:
    h = shop({"shipping.schedule": fail("shipping.failed", "no-courier")})

    result = await h.run(PLACED)

    assert result.status == "compensated"
    assert result.published_subjects == [
        "inventory.reserve",
        "payment.charge",
        "shipping.schedule",
        "payment.refund",
        "inventory.release",
    ]
    refund = result.commands[3]
    assert refund.payload == {"order_id": "o1", "payment_id": "p1", "amount": 40}
    assert (refund.step, refund.kind) == ("charge_payment", "compensation")


async def test_reserve_timeout_is_retried_after_the_backoff_on_the_harness_clock() -> None:
    h = shop(
        {
            "inventory.reserve": sequence(
                no_reply(), reply("inventory.reserved", reservation_id="r2")
            )
        }
    )
    t0 = h.now

    result = await h.run(PLACED)

    assert result.status == "completed"
    assert trace(result.commands)[:2] == [
        ("inventory.reserve", "reserve_inventory", "step", 1),
        ("inventory.reserve", "reserve_inventory", "step", 2),
    ]
    first, second = result.commands[:2]
    assert second.at is not None
    assert first.at is not None
    assert second.at - first.at == timedelta(seconds=10.2)  # timeout 10s + backoff 200ms
    assert second.msg_id == "order-fulfilment:o1:reserve_inventory:step:2"
    assert result.answers[0].msg_id == "order-fulfilment:o1:reserve_inventory:step:reply:2"
    assert h.now - t0 == timedelta(seconds=10.2)
    assert result.step("reserve_inventory").attempt == 2


async def test_reserve_that_never_answers_gives_up_after_three_attempts() -> None:
    result = await shop({"inventory.reserve": no_reply()}).run(PLACED)

    assert result.status == "compensated"
    assert [c.attempt for c in result.commands] == [1, 2, 3]
    assert result.failure_reason == "timed out after 3 attempt(s)"
    assert result.step("reserve_inventory").status == "timed-out"


async def test_a_release_that_never_confirms_parks_the_saga_after_five_attempts() -> None:
    h = shop({"payment.charge": fail("payment.declined", "limit"), "inventory.release": no_reply()})

    result = await h.run(PLACED)

    assert result.status == "parked"
    releases = [c for c in result.commands if c.subject == "inventory.release"]
    assert [c.attempt for c in releases] == [1, 2, 3, 4, 5]
    assert [e.subject for e in result.status_events] == ["saga.status.order-fulfilment.parked"]
    assert result.status_events[0].payload["reason"] == "compensation timed out after 5 attempt(s)"


async def test_the_timeout_clock_is_driven_step_by_step_with_advance() -> None:
    h = shop({"inventory.reserve": no_reply()})
    await h.start(PLACED)

    await h.advance(9.999)
    assert [c.attempt for c in (await h.result()).commands] == [1]
    await h.advance(0.001 + 0.2)  # the timeout fires, then the backoff
    result = await h.result()

    assert [c.attempt for c in result.commands] == [1, 2]
    assert result.status == "running"


# -- travel-booking ---------------------------------------------------------------------------


def travel() -> SagaHarness:
    """Flight and car answer well; the hotel (observed) is left to each test."""
    h = SagaHarness.from_file(TRAVEL)
    h.on("travel.flight.book", reply("travel.flight.booked", booking_ref="F1"))
    h.on("travel.flight.cancel", reply("travel.flight.cancelled"))
    h.on("travel.hotel.cancel", reply("travel.hotel.cancelled"))
    h.on("travel.car.rent", reply("travel.car.rented", rental_ref="C1"))
    h.on("travel.car.return", reply("travel.car.returned"))
    return h


async def test_trip_completes_when_the_test_books_the_observed_hotel_itself() -> None:
    h = travel()
    await h.start(TRIP)
    assert (await h.result()).step("book_hotel").status == "active"

    await h.emit("travel.hotel.booked", {"reservation_ref": "H1"})
    result = await h.settle()

    assert result.status == "completed"
    assert result.published_subjects == ["travel.flight.book", "travel.car.rent"]
    assert result.commands[1].payload == {"trip_id": "t1", "city": "Berlin", "days": 3}
    hotel = next(m for m in result.answers if m.subject == "travel.hotel.booked")
    assert (hotel.step, hotel.kind) == ("book_hotel", "step")


async def test_trip_completes_when_the_hotel_reacts_to_the_flight_on_its_own() -> None:
    h = travel().on("travel.flight.booked", reply("travel.hotel.booked", reservation_ref="H1"))

    result = await h.run(TRIP)

    assert result.status == "completed"
    assert result.context["steps"]["book_hotel"] == {"reservation_ref": "H1"}
    hotel = next(m for m in result.answers if m.subject == "travel.hotel.booked")
    assert hotel.msg_id == "travel-booking:t1:book_hotel:step:reply:1"


async def test_a_full_hotel_cancels_the_flight() -> None:
    h = travel().on("travel.flight.booked", fail("travel.hotel.full", "no-rooms"))

    result = await h.run({**TRIP, "nights": 21, "no_car": True})

    assert result.status == "compensated"
    assert result.failure_step == "book_hotel"
    assert result.step("rent_car").status.value == "skipped"  # its condition was false
    assert trace(result.commands) == [
        ("travel.flight.book", "book_flight", "step", 1),
        ("travel.flight.cancel", "book_flight", "compensation", 1),
    ]
    assert result.commands[1].payload == {"trip_id": "t1", "booking_ref": "F1"}


async def test_a_full_hotel_waits_for_the_parallel_car_then_returns_it() -> None:
    """Issue 12: ``rent_car`` had no compensation, so a full hotel left a car rented."""
    h = travel().on("travel.flight.booked", fail("travel.hotel.full", "no-rooms"))
    h.on("travel.car.rent", reply("travel.car.rented", rental_ref="C1"))
    h.on("travel.car.return", reply("travel.car.returned", rental_ref="C1"))

    result = await h.run({**TRIP, "nights": 21})

    assert result.status == "compensated"
    assert result.failure_step == "book_hotel"
    assert result.step("rent_car").compensation.value == "done"
    assert trace(result.commands) == [
        ("travel.flight.book", "book_flight", "step", 1),
        ("travel.car.rent", "rent_car", "step", 1),
        ("travel.car.return", "rent_car", "compensation", 1),
        ("travel.flight.cancel", "book_flight", "compensation", 1),
    ]
    assert result.commands[2].payload == {"trip_id": "t1", "rental_ref": "C1"}


async def test_a_hotel_that_never_answers_times_out_and_the_flight_is_cancelled() -> None:
    h = travel()
    t0 = h.now

    result = await h.run({**TRIP, "no_car": True})

    assert result.status == "compensated"
    assert result.failure_reason == "timed out after 1 attempt(s)"
    assert result.published_subjects == ["travel.flight.book", "travel.flight.cancel"]
    assert h.now - t0 == timedelta(seconds=5)


async def test_no_car_undoes_hotel_then_flight() -> None:
    h = travel().on("travel.flight.booked", reply("travel.hotel.booked", reservation_ref="H1"))
    h.on("travel.car.rent", fail("travel.car.unavailable", "sold-out"))

    result = await h.run(TRIP)

    assert result.status == "compensated"
    assert trace(result.commands)[2:] == [
        ("travel.hotel.cancel", "book_hotel", "compensation", 1),
        ("travel.flight.cancel", "book_flight", "compensation", 1),
    ]
    assert result.commands[2].payload == {"trip_id": "t1", "reservation_ref": "H1"}


async def test_a_hotel_answer_before_the_flight_is_held_until_the_step_starts() -> None:
    h = travel()
    h.on("travel.flight.book", reply("travel.flight.booked", booking_ref="F1").after(1))
    await h.start(TRIP)

    await h.emit("travel.hotel.booked", {"reservation_ref": "H1"})
    result = await h.settle()

    assert result.status == "completed"
    assert result.step("book_hotel").status == "succeeded"
    assert [m.subject for m in result.answers] == [
        "travel.hotel.booked",
        "travel.flight.booked",
        "travel.car.rented",
    ]


async def test_a_flight_timeout_is_retried_once_then_the_trip_is_compensated() -> None:
    h = travel().on("travel.flight.book", no_reply())

    result = await h.run(TRIP)

    assert result.status == "compensated"
    assert [c.attempt for c in result.commands] == [1, 2]
    assert result.failure_reason == "timed out after 2 attempt(s)"


@pytest.mark.parametrize("definition", [ORDER, TRAVEL])
async def test_a_second_trigger_for_the_same_id_starts_nothing(definition: object) -> None:
    h = shop() if definition == ORDER else travel()
    trigger = PLACED if definition == ORDER else TRIP
    first = await h.run(trigger)

    again = await h.run(trigger, headers={"Nats-Msg-Id": "a-new-message"})

    assert again.saga_id == first.saga_id
    assert again.commands == first.commands
    assert len([m for m in again.messages if m.role == "trigger"]) == 2
