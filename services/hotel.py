"""Hotel: books the room of an *observed* step (pure choreography).

Nobody commands the hotel. It takes note of every trip request
(``travel.requested``), and when that trip's flight is booked
(``travel.flight.booked``) it books a room on its own and reports the outcome
of step ``book_hotel`` (``travel.hotel.booked`` / ``travel.hotel.full``); the
engine only watches. The engine does command the undo (``travel.hotel.cancel``).

Rules (deterministic, from the trip request):
- ``nights`` must be a whole number of at least 1, else ``invalid-nights``;
- more than ``MAX_NIGHTS`` (14) nights cannot be booked: ``hotel-full``.

A flight booked for a trip the hotel has not seen yet (the two events can be
handled out of order) is retried shortly, and dead-lettered if the trip never shows up.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from nats.js.errors import KeyNotFoundError

from saga.nats.topology import token
from saga.participant import App, Context, Reject, Retry
from saga.participant.chaos import simulated_faults
from services._cli import main

MAX_NIGHTS = 14
TRIPS_BUCKET = "hotel_trips"
"""The hotel's own view of trip requests, by ``token(trip_id)``."""


async def trip_faults(ctx: Context, payload: dict[str, Any]) -> Any:
    """Faults asked for by the command, or, for the booking, by the trip request we recorded
    (the flight's reply carries no ``simulate``); noting a trip never misbehaves."""
    if ctx.subject == "travel.requested":
        return None
    if ctx.subject == "travel.flight.booked" and not payload.get("simulate"):
        trip = await find_trip(ctx, str(payload.get("trip_id") or ctx.saga_id))
        return trip.get("simulate")
    return payload.get("simulate")


app = App("hotel", wrap=[simulated_faults(trip_faults)])


@app.on("travel.requested")
async def note_trip(ctx: Context, payload: dict[str, Any]) -> None:
    trip_id = payload.get("trip_id") or ctx.saga_id
    if not trip_id:
        return
    trip = {k: payload.get(k) for k in ("trip_id", "destination", "nights", "simulate")}
    kv = await ctx.bucket(TRIPS_BUCKET)
    await kv.put(token(str(trip_id)), json.dumps(trip, allow_nan=False).encode())


async def find_trip(ctx: Context, trip_id: str) -> dict[str, Any]:
    kv = await ctx.bucket(TRIPS_BUCKET)
    try:
        entry = await kv.get(token(trip_id))
    except KeyNotFoundError:
        raise Retry(f"trip {trip_id} not seen yet", delay=0.5) from None
    trip: dict[str, Any] = json.loads(entry.value or b"{}")
    return trip


def check_nights(nights: Any) -> int:
    if not isinstance(nights, int) or isinstance(nights, bool) or nights < 1:
        raise Reject("invalid-nights", {"nights": nights})
    if nights > MAX_NIGHTS:
        raise Reject("hotel-full", {"nights": nights, "max_nights": MAX_NIGHTS})
    return nights


@app.on(
    "travel.flight.booked",
    step="book_hotel",
    success="travel.hotel.booked",
    failure="travel.hotel.full",
)
async def book(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    trip = await find_trip(ctx, str(payload.get("trip_id") or ctx.saga_id))
    nights = check_nights(trip.get("nights"))

    async def reserve() -> dict[str, Any]:
        return {
            "reservation_ref": f"HT{uuid.uuid4().hex[:8].upper()}",
            "city": trip.get("destination"),
            "nights": nights,
        }

    reservation = await ctx.once("book", reserve)
    return {"reservation_ref": reservation["reservation_ref"]}


@app.compensation("travel.hotel.cancel", success="travel.hotel.cancelled")
async def cancel(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    reservation_ref = payload.get("reservation_ref")

    async def void() -> dict[str, Any]:
        return {"reservation_ref": reservation_ref}

    await ctx.once("cancel", void)
    return {"reservation_ref": reservation_ref, "cancelled": True}


if __name__ == "__main__":
    main(app)
