"""Car: rents a car at the destination, and returns it when the trip is undone.

Rules (deterministic, from the payload):
- ``city`` ``Atlantis`` (case-insensitive) has no rental desk: ``no-cars``.
"""

from __future__ import annotations

import uuid
from typing import Any

from saga.participant import App, Context, Reject
from saga.participant.chaos import simulated_faults
from services._cli import main

NO_CARS = frozenset({"atlantis"})
"""Cities (lower case) without a rental desk."""

app = App("car", wrap=[simulated_faults()])


@app.step("travel.car.rent", success="travel.car.rented", failure="travel.car.unavailable")
async def rent(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    city = str(payload.get("city", ""))
    if city.casefold() in NO_CARS:
        raise Reject("no-cars", {"city": city})

    async def hire() -> dict[str, Any]:
        return {"rental_ref": f"CAR-{uuid.uuid4().hex[:8].upper()}", "city": city}

    rental = await ctx.once("rent", hire)
    return {"rental_ref": rental["rental_ref"]}


@app.compensation("travel.car.return", success="travel.car.returned")
async def give_back(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    rental_ref = payload.get("rental_ref")

    async def end_rental() -> dict[str, Any]:
        return {"rental_ref": rental_ref}

    await ctx.once("return", end_rental)
    return {"rental_ref": rental_ref, "returned": True}


if __name__ == "__main__":
    main(app)
