"""Schedules: when the server starts a saga by itself (``schedule:`` in a definition).

The engine keeps one message per scheduled saga in the events stream with a
``Nats-Schedule`` header (nats-server 2.12+ message schedules); the server fires it on the
trigger subject at every tick, once, whatever the number of engine replicas. This module is
pure: the pattern the server reads, the checks ``saga validate`` runs, the next fire time
``saga schedules`` prints, and the saga id of a tick.

What the bundled server (2.15) accepts, measured: six-field cron (seconds first: ``0 0 2 * *
*``), month and day names, ``?``, ``*/n``; ``@yearly`` ``@annually`` ``@monthly``
``@weekly`` ``@daily`` ``@midnight`` ``@hourly``; ``@every <d>`` of 1 s or more. A
five-field cron is refused (10189), so the engine adds the seconds field. Times are UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

PREDEFINED = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
_FIELDS = (  # name, low, high, names (value of the first name)
    ("second", 0, 59, None),
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, (_MONTHS, 1)),
    ("day of week", 0, 6, (_DAYS, 0)),
)
MIN_EVERY = timedelta(seconds=1)
_HORIZON = 5 * 366
"""Days searched for a next fire time: a pattern that never matches in 5 years is refused."""


@dataclass(frozen=True)
class Cron:
    """A parsed six-field cron: the allowed values of each field."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    """Day of month is ``*`` or ``?``: then only the day of week restricts (and vice versa);
    when both are restricted, either matching is enough (as in classic cron)."""
    any_weekday: bool

    def day_matches(self, day: datetime) -> bool:
        dom, dow = day.day in self.days, (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def next_after(self, after: datetime) -> datetime | None:
        """The first fire time strictly after ``after`` (UTC), or None within 5 years."""
        t = after.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        day = t.replace(hour=0, minute=0, second=0)
        for _ in range(_HORIZON):
            if day.month in self.months and self.day_matches(day):
                for h in sorted(self.hours):
                    for m in sorted(self.minutes):
                        for s in sorted(self.seconds):
                            at = day.replace(hour=h, minute=m, second=s)
                            if at >= t:
                                return at
            day += timedelta(days=1)
        return None

    def previous_before(self, before: datetime) -> datetime | None:
        """The last fire time strictly before ``before``, or None within 5 years."""
        window = timedelta(seconds=2)
        while window <= timedelta(days=_HORIZON):
            at = self.next_after(before - window - timedelta(seconds=1))
            if at is not None and at < before:
                last = at
                while (following := self.next_after(last)) is not None and following < before:
                    last = following
                return last
            window *= 2
        return None


def parse_cron(text: str) -> Cron:
    """A cron pattern (5 fields, minute first, or 6, second first, or ``@daily``...);
    ``ValueError`` says what is wrong."""
    expanded = PREDEFINED.get(text.strip().lower(), text)
    if expanded.startswith("@"):
        raise ValueError(f"unknown {expanded!r} (have: {', '.join(PREDEFINED)}; or use every:)")
    parts = expanded.split()
    if len(parts) == 5:
        parts = ["0", *parts]
    if len(parts) != 6:
        raise ValueError(
            f"a cron has 5 fields (minute hour day-of-month month day-of-week), not {len(parts)}"
        )
    sec, minute, hour, day, month, weekday = (
        _field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)
    )
    cron = Cron(
        sec, minute, hour, day, month, weekday, parts[3] in ("*", "?"), parts[5] in ("*", "?")
    )
    if cron.next_after(datetime(2000, 1, 1, tzinfo=UTC)) is None:
        raise ValueError(f"{text!r} never fires")
    return cron


def _field(
    text: str, name: str, low: int, high: int, names: tuple[list[str], int] | None
) -> frozenset[int]:
    if text == "?" and name.startswith("day"):
        text = "*"
    values: set[int] = set()
    for item in text.split(","):
        base, _, step_text = item.partition("/")
        step = _number(step_text, name, names=None) if step_text else 1
        if step < 1:
            raise ValueError(f"{name}: step {step_text!r} must be 1 or more")
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = _number(a, name, names), _number(b, name, names)
        else:
            first = _number(base, name, names)
            last = high if step_text else first
        if name == "day of week" and last == 7:
            last = 6 if first <= 6 else 0
            values.add(0)  # 7 is Sunday too
        if not low <= first <= last <= high:
            raise ValueError(f"{name}: {item!r} is outside {low}-{high}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _number(text: str, name: str, names: tuple[list[str], int] | None) -> int:
    if names is not None and text.upper() in names[0]:
        return names[0].index(text.upper()) + names[1]
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{name}: {text!r} is not a number")
    return int(text)


def server_pattern(cron: str | None, every: timedelta | None) -> str:
    """The ``Nats-Schedule`` header the server reads for this schedule."""
    if every is not None:
        return f"@every {int(every.total_seconds())}s"
    assert cron is not None
    text = cron.strip()
    if text.lower() in PREDEFINED:
        return text.lower()
    parts = text.split()
    return " ".join(["0", *parts] if len(parts) == 5 else parts)


def every_problem(every: timedelta) -> str | None:
    """Why the server would refuse this ``every`` (below 1 s, or not whole seconds)."""
    if every < MIN_EVERY:
        return "every: must be at least 1s (the server refuses shorter intervals)"
    if every.microseconds:
        return "every: must be whole seconds"
    return None


def following_tick(pattern: str, after: datetime) -> datetime | None:
    """The tick after ``after`` (an ``@every`` interval counts from ``after`` itself)."""
    if pattern.startswith("@every "):
        return after + timedelta(seconds=int(pattern.removeprefix("@every ").removesuffix("s")))
    return parse_cron(pattern).next_after(after)


def tick_of(pattern: str, next_fire: datetime) -> datetime | None:
    """The tick a fired message stands for, from its ``Nats-Schedule-Next`` (the tick after
    it): the same for every delivery of that message, so its saga id is stable."""
    if pattern.startswith("@every "):
        seconds = int(pattern.removeprefix("@every ").removesuffix("s"))
        return next_fire - timedelta(seconds=seconds)
    return parse_cron(pattern).previous_before(next_fire)


def tick_saga_id(saga: str, tick: datetime) -> str:
    """``<saga>-<tick>`` in ISO 8601 basic form (``shop-20261203T020000Z``): safe in subjects
    and KV keys, sorted by time."""
    return f"{saga}-{tick.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"
