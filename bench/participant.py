"""The engine side's participants: three SDK apps that answer at once, with no side effects.

Run one per process, as the benchmark does::

    python -m saga participant bench.participant:inventory --nats URL

They still do what every SDK participant does: a reply-ledger lookup and write
(``saga_replies``) per command, so a redelivered command gets the same answer.
``schedule_shipping`` is rejected when the command says ``fail: true``, which
makes the engine compensate the other two steps.
"""

from __future__ import annotations

from typing import Any

from saga.participant import App, Context, Reject

inventory = App("bench-inventory")
payment = App("bench-payment")
shipping = App("bench-shipping")


@inventory.step(
    "bench.inventory.reserve",
    success="bench.inventory.reserved",
    failure="bench.inventory.rejected",
)
async def reserve(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    return {"reservation_id": f"res-{ctx.saga_id}"}


@inventory.compensation("bench.inventory.release", success="bench.inventory.released")
async def release(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    return {"released": payload.get("reservation_id")}


@payment.step(
    "bench.payment.charge", success="bench.payment.charged", failure="bench.payment.declined"
)
async def charge(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    return {"payment_id": f"pay-{ctx.saga_id}", "amount": payload.get("amount")}


@payment.compensation("bench.payment.refund", success="bench.payment.refunded")
async def refund(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    return {"refunded": payload.get("payment_id")}


@shipping.step(
    "bench.shipping.schedule", success="bench.shipping.scheduled", failure="bench.shipping.failed"
)
async def schedule(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    if payload.get("fail"):
        raise Reject("bench-failure")
    return {"tracking_id": f"trk-{ctx.saga_id}"}


APPS = {"inventory": inventory, "payment": payment, "shipping": shipping}
"""Process name -> app; each runs in a process of its own."""
