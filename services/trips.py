"""Trips: the front door of ``travel-booking``; it publishes ``travel.requested`` triggers.

    python -m services.trips --count 10 [--fail hotel] [--nats URL]

``new_trip(fail=...)`` builds a trip that breaks one service's rule on purpose:
``flight`` (a route through ``XXX``), ``hotel`` (more than 14 nights) or ``car``
(destination ``Atlantis``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from nats.js import JetStreamContext

from services._publish import front_end_main, publish_triggers

SAGA = "travel-booking"
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
    return await publish_triggers(js, SAGA, SUBJECT, "trip_id", trips)


def main(argv: Sequence[str] | None = None) -> None:
    front_end_main("trips", __doc__, SAGA, SUBJECT, "trip_id", FAILURES, new_trip, argv)


if __name__ == "__main__":
    main()
