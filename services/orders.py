"""Orders: the front door of ``order-fulfilment``; it publishes ``orders.placed`` triggers.

    python -m services.orders --count 10 [--fail payment] [--nats URL]

``new_order(fail=...)`` builds an order that breaks one service's rule on purpose:
``inventory`` (an ``UNKNOWN-`` SKU), ``payment`` (a total above the 1000 limit) or
``shipping`` (an address in Antarctica, ``AQ``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from nats.js import JetStreamContext

from services._publish import front_end_main, publish_triggers

SAGA = "order-fulfilment"
SUBJECT = "orders.placed"
FAILURES = ("inventory", "payment", "shipping")


def new_order(
    order_id: str | None = None, fail: str | None = None, **fields: Any
) -> dict[str, Any]:
    """A valid order (or one failing at service ``fail``); ``fields`` override anything."""
    order: dict[str, Any] = {
        "order_id": order_id or f"ord-{uuid.uuid4().hex[:10]}",
        "customer_id": "cus-1",
        "items": [{"sku": "SKU-1", "qty": 2}, {"sku": "SKU-2", "qty": 1}],
        "total": 99.5,
        "currency": "EUR",
        "address": {"street": "1 Canal St", "city": "Amsterdam", "country": "NL"},
    }
    if fail == "inventory":
        order["items"] = [{"sku": "UNKNOWN-9", "qty": 1}]
    elif fail == "payment":
        order["total"] = 5000
    elif fail == "shipping":
        order["address"] = {"street": "1 Ice Rd", "city": "McMurdo", "country": "AQ"}
    elif fail is not None:
        raise ValueError(f"fail must be one of {FAILURES}, not {fail!r}")
    return {**order, **fields}


async def place_orders(js: JetStreamContext, orders: Iterable[dict[str, Any]]) -> list[str]:
    """Publish ``orders.placed`` for each order; returns the saga ids (the order ids)."""
    return await publish_triggers(js, SAGA, SUBJECT, "order_id", orders)


async def place_order(js: JetStreamContext, order: dict[str, Any]) -> str:
    return (await place_orders(js, [order]))[0]


def main(argv: Sequence[str] | None = None) -> None:
    front_end_main("orders", __doc__, SAGA, SUBJECT, "order_id", FAILURES, new_order, argv)


if __name__ == "__main__":
    main()
