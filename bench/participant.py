"""The engine side's participants: three SDK apps that answer at once, with no side effects.

Run one per process, as the benchmark does::

    python -m saga participant bench.participant:inventory --nats URL

They still do what every SDK participant does: a reply-ledger lookup and write
(``saga_replies``) per command, so a redelivered command gets the same answer.
``schedule_shipping`` is rejected when the command says ``fail: true``, which
makes the engine compensate the other two steps.

The same apps also serve ``bench-observed`` (observed steps, pure choreography): each
reacts to the previous step's success event and publishes its own step's outcome.
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


OBSERVED = "bench.observed"


@inventory.on(
    f"{OBSERVED}.placed",
    success=f"{OBSERVED}.inventory.reserved",
    failure=f"{OBSERVED}.inventory.rejected",
    step="reserve_inventory",
)
async def reserve_observed(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    return {"reservation_id": f"res-{ctx.saga_id}", "amount": payload.get("total")}


@payment.on(
    f"{OBSERVED}.inventory.reserved",
    success=f"{OBSERVED}.payment.charged",
    failure=f"{OBSERVED}.payment.declined",
    step="charge_payment",
)
async def charge_observed(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    return {"payment_id": f"pay-{ctx.saga_id}", "amount": payload.get("amount")}


@shipping.on(
    f"{OBSERVED}.payment.charged",
    success=f"{OBSERVED}.shipping.scheduled",
    failure=f"{OBSERVED}.shipping.failed",
    step="schedule_shipping",
)
async def schedule_observed(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    return {"tracking_id": f"trk-{ctx.saga_id}"}


APPS = {"inventory": inventory, "payment": payment, "shipping": shipping}
"""Process name -> app; each runs in a process of its own."""
