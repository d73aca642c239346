"""Inventory: reserves stock for an order, and releases it when the order is undone.

Rules (deterministic, from the payload):
- ``items`` must be a non-empty list, else ``no-items``;
- a SKU starting with ``UNKNOWN`` is not in the catalogue: ``unknown-sku``;
- ``qty`` must be a whole number from 1 to ``MAX_QTY`` (100): else ``invalid-quantity``
  (below 1) or ``insufficient-stock`` (above).
"""

from __future__ import annotations

import uuid
from typing import Any

from saga.participant import App, Context, Reject
from saga.participant.chaos import simulated_faults
from services._cli import main

MAX_QTY = 100
"""Stock of every SKU: asking for more than this is rejected."""

app = App("inventory", wrap=[simulated_faults()])


def check_items(items: Any) -> None:
    """Raise ``Reject`` with the first rule the items break."""
    if not isinstance(items, list) or not items:
        raise Reject("no-items")
    for item in items:
        sku = str(item.get("sku", "")) if isinstance(item, dict) else ""
        qty = item.get("qty") if isinstance(item, dict) else None
        if not sku or sku.startswith("UNKNOWN"):
            raise Reject("unknown-sku", {"sku": sku})
        if not isinstance(qty, int) or isinstance(qty, bool) or qty < 1:
            raise Reject("invalid-quantity", {"sku": sku, "qty": qty})
        if qty > MAX_QTY:
            raise Reject("insufficient-stock", {"sku": sku, "available": MAX_QTY})


@app.step("inventory.reserve", success="inventory.reserved", failure="inventory.rejected")
async def reserve(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    check_items(payload.get("items"))

    async def create() -> dict[str, Any]:
        return {"reservation_id": f"res-{uuid.uuid4().hex[:12]}", "items": payload["items"]}

    reservation = await ctx.once("reserve", create)
    return {"reservation_id": reservation["reservation_id"]}


@app.compensation("inventory.release", success="inventory.released")
async def release(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    reservation_id = payload.get("reservation_id")

    async def free() -> dict[str, Any]:
        return {"reservation_id": reservation_id}

    await ctx.once("release", free)
    return {"reservation_id": reservation_id, "released": True}


if __name__ == "__main__":
    main(app)
