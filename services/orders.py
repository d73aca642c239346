"""Orders: the front door of ``order-fulfilment``; it publishes ``orders.placed`` triggers.

    python -m services.orders --count 10 [--fail payment] [--nats URL]

``new_order(fail=...)`` builds an order that breaks one service's rule on purpose:
``inventory`` (an ``UNKNOWN-`` SKU), ``payment`` (a total above the 1000 limit) or
``shipping`` (an address in Antarctica, ``AQ``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from nats.js import JetStreamContext

from saga.nats.connection import NatsSettings, connect
from saga.participant.runner import NATS_URL_ENV
from services._publish import publish_triggers

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
    return await publish_triggers(js, SUBJECT, "order_id", orders)


async def place_order(js: JetStreamContext, order: dict[str, Any]) -> str:
    return (await place_orders(js, [order]))[0]


async def _start(url: str | None, count: int, fail: str | None) -> None:
    nc = await connect(NatsSettings(url=url or NatsSettings().url, name="orders"))
    try:
        ids = await place_orders(nc.jetstream(), (new_order(fail=fail) for _ in range(count)))
        print("\n".join(ids))
    finally:
        await nc.drain()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.orders", description=__doc__)
    parser.add_argument("--nats", metavar="URL", help=f"server URL (default: ${NATS_URL_ENV})")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--fail", choices=FAILURES, help="make every order fail at this service")
    args = parser.parse_args(argv)
    asyncio.run(_start(args.nats or os.environ.get(NATS_URL_ENV), args.count, args.fail))


if __name__ == "__main__":
    main()
