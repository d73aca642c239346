"""Trips: the front door of ``travel-booking``; it publishes ``travel.requested`` triggers.

    python -m services.trips --count 10 [--fail hotel] [--nats URL]

``new_trip(fail=...)`` builds a trip that breaks one service's rule on purpose:
``flight`` (a route through ``XXX``), ``hotel`` (more than 14 nights) or ``car``
(destination ``Atlantis``).
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

SUBJECT = "travel.requested"
FAILURES = ("flight", "hotel", "car")


def new_trip(trip_id: str | None = None, fail: str | None = None, **fields: Any) -> dict[str, Any]:
    """A bookable trip (or one failing at service ``fail``); ``fields`` override anything."""
    trip: dict[str, Any] = {
        "trip_id": trip_id or f"trip-{uuid.uuid4().hex[:10]}",
        "traveller": "Ada Lovelace",
        "route": "AMS-LIS",
        "date": "2026-06-01",
        "destination": "Lisbon",
        "nights": 3,
    }
    if fail == "flight":
        trip["route"] = "AMS-XXX"
    elif fail == "hotel":
        trip["nights"] = 21
    elif fail == "car":
        trip["destination"] = "Atlantis"
    elif fail is not None:
        raise ValueError(f"fail must be one of {FAILURES}, not {fail!r}")
    return {**trip, **fields}


async def request_trips(js: JetStreamContext, trips: Iterable[dict[str, Any]]) -> list[str]:
    """Publish ``travel.requested`` for each trip; returns the saga ids (the trip ids)."""
    return await publish_triggers(js, SUBJECT, "trip_id", trips)


async def _start(url: str | None, count: int, fail: str | None) -> None:
    nc = await connect(NatsSettings(url=url or NatsSettings().url, name="trips"))
    try:
        ids = await request_trips(nc.jetstream(), (new_trip(fail=fail) for _ in range(count)))
        print("\n".join(ids))
    finally:
        await nc.drain()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.trips", description=__doc__)
    parser.add_argument("--nats", metavar="URL", help=f"server URL (default: ${NATS_URL_ENV})")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--fail", choices=FAILURES, help="make every trip fail at this service")
    args = parser.parse_args(argv)
    asyncio.run(_start(args.nats or os.environ.get(NATS_URL_ENV), args.count, args.fail))


if __name__ == "__main__":
    main()
