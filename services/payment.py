"""Payment: charges the customer for an order, and refunds the charge when undone.

Rules (deterministic, from the payload):
- ``amount`` must be a finite number above 0, else ``invalid-amount`` (never echoing
  ``Infinity`` or ``NaN``, which JSON cannot carry);
- an amount above ``LIMIT`` (1000, the customer's limit) is declined: ``limit-exceeded``.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from saga.participant import App, Context, Reject
from saga.participant.chaos import simulated_faults
from services._cli import main

LIMIT = 1000
"""Largest amount a customer may be charged in one order."""

app = App("payment", wrap=[simulated_faults()])


def check_amount(amount: Any) -> float:
    number = isinstance(amount, int | float) and not isinstance(amount, bool)
    infinite = isinstance(amount, float) and not math.isfinite(amount)  # NaN too
    if not number or infinite or amount <= 0:
        raise Reject("invalid-amount", {"amount": str(amount) if infinite else amount})
    if amount > LIMIT:
        raise Reject("limit-exceeded", {"amount": amount, "limit": LIMIT})
    return float(amount)


@app.step("payment.charge", success="payment.charged", failure="payment.declined")
async def charge(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    amount = check_amount(payload.get("amount"))

    async def take() -> dict[str, Any]:
        return {
            "payment_id": f"pay-{uuid.uuid4().hex[:12]}",
            "amount": amount,
            "currency": payload.get("currency", "EUR"),
            "customer_id": payload.get("customer_id"),
        }

    payment = await ctx.once("charge", take)
    return {"payment_id": payment["payment_id"], "amount": payment["amount"]}


@app.compensation("payment.refund", success="payment.refunded")
async def refund(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:

    async def give_back() -> dict[str, Any]:
        return {
            "refund_id": f"ref-{uuid.uuid4().hex[:12]}",
            "payment_id": payload.get("payment_id"),
            "amount": payload.get("amount"),
        }

    return await ctx.once("refund", give_back)


if __name__ == "__main__":
    main(app)
