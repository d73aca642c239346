"""Shipping: books a courier for an order (the last step: it has no undo).

Rules (deterministic, from the payload):
- an ``address`` whose ``country`` is ``AQ`` (Antarctica, case-insensitive) is
  outside the delivery area: ``no-delivery-area``; any other address is accepted.
"""

from __future__ import annotations

import uuid
from typing import Any

from saga.participant import App, Context, Reject
from saga.participant.chaos import simulated_faults
from services._cli import main

NO_DELIVERY = frozenset({"AQ"})
"""ISO country codes no courier serves."""

app = App("shipping", wrap=[simulated_faults()])


@app.step("shipping.schedule", success="shipping.scheduled", failure="shipping.failed")
async def schedule(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    address = payload.get("address")
    country = str(address.get("country", "")).upper() if isinstance(address, dict) else ""
    if country in NO_DELIVERY:
        raise Reject("no-delivery-area", {"country": country})

    async def book() -> dict[str, Any]:
        return {"tracking_id": f"trk-{uuid.uuid4().hex[:12]}", "country": country}

    booking = await ctx.once("schedule", book)
    return {"tracking_id": booking["tracking_id"]}


if __name__ == "__main__":
    main(app)
