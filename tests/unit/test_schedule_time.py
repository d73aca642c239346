"""The ``Nats-Schedule`` header of a native timer (:func:`saga.nats.timers.schedule_time`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from saga.nats.timers import schedule_time

CET = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("at", "text"),
    [
        (datetime(2026, 12, 3, 9, 0, 10, tzinfo=UTC), "@at 2026-12-03T09:00:10.000000Z"),
        (datetime(2026, 12, 3, 9, 0, 10, 5, tzinfo=UTC), "@at 2026-12-03T09:00:10.000005Z"),
        (datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "@at 2026-12-31T23:59:59.999999Z"),
        (datetime(2027, 1, 1, 0, 30, tzinfo=CET), "@at 2026-12-31T23:30:00.000000Z"),
    ],
)
def test_a_schedule_is_utc_to_the_microsecond(at: datetime, text: str) -> None:
    assert schedule_time(at) == text
    assert schedule_time(at) == "@at " + at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
