"""Flight: books the trip's flight, and cancels it when the trip is undone.

Rules (deterministic, from the payload):
- a ``route`` containing ``XXX`` (e.g. ``AMS-XXX``) has no seats: ``route-unavailable``.
"""

from __future__ import annotations

import uuid
from typing import Any

from saga.participant import App, Context, Reject
from saga.participant.chaos import simulated_faults
from services._cli import main

app = App("flight", wrap=[simulated_faults()])


@app.step("travel.flight.book", success="travel.flight.booked", failure="travel.flight.unavailable")
async def book(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    route = str(payload.get("route", ""))
    if "XXX" in route:
        raise Reject("route-unavailable", {"route": route})

    async def issue() -> dict[str, Any]:
        return {"booking_ref": f"FL{uuid.uuid4().hex[:8].upper()}", "route": route}

    booking = await ctx.once("book", issue)
    # trip_id lets the hotel (which reacts to this event) find the trip.
    return {"booking_ref": booking["booking_ref"], "trip_id": payload.get("trip_id")}


@app.compensation("travel.flight.cancel", success="travel.flight.cancelled")
async def cancel(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    booking_ref = payload.get("booking_ref")

    async def void() -> dict[str, Any]:
        return {"booking_ref": booking_ref}

    await ctx.once("cancel", void)
    return {"booking_ref": booking_ref, "cancelled": True}


if __name__ == "__main__":
    main(app)
