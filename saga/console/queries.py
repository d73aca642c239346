"""The list page's question (filters, search, paging) and its answer, apart from HTML.

:class:`ListQuery` is parsed once from the page's query string, with every problem
reported together; :func:`list_page` answers it from the instance store.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from saga.core.state import InstanceState, Status
from saga.definition.duration import parse_duration
from saga.inspect import find_record, list_instances
from saga.store import InstanceStore

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@dataclass(frozen=True)
class ListQuery:
    saga: str | None = None
    state: str | None = None
    since: datetime | None = None
    """Started at or after (UTC)."""
    until: datetime | None = None
    """Started before (UTC)."""
    where: dict[str, str] = field(default_factory=dict)
    """Search attributes that must equal these values."""
    search: str | None = None
    """A saga id or business key."""
    cursor: str | None = None
    """Opaque: where the previous page ended."""
    limit: int = DEFAULT_LIMIT

    def fields(self) -> dict[str, str | int | None]:
        """The query string that asks this again (without the cursor)."""
        return {
            "saga": self.saga,
            "state": self.state,
            "since": _iso(self.since),
            "until": _iso(self.until),
            "where": " ".join(f"{k}={v}" for k, v in self.where.items()) or None,
            "q": self.search,
            "limit": self.limit if self.limit != DEFAULT_LIMIT else None,
        }


def _iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def parse_time(text: str, now: datetime) -> datetime:
    """``1h`` (that long ago), or an ISO date/time (UTC unless it says otherwise)."""
    text = text.strip()
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (1h, 30m, 7d) nor a date/time (2026-01-31T12:00)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_where(text: str) -> dict[str, str]:
    """``customer=cus-1 total=20``: space-separated ``key=value`` pairs."""
    pairs: dict[str, str] = {}
    for part in text.split():
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ValueError(f"{part!r}: expected key=value")
        pairs[key] = value
    return pairs


def parse_query(
    params: Mapping[str, str], sagas: list[str], now: datetime
) -> tuple[ListQuery, list[str]]:
    """The query and the problems found (each field that could not be read is left out)."""
    problems: list[str] = []
    query = ListQuery(search=(params.get("q") or "").strip() or None)
    saga = params.get("saga") or None
    if saga is not None and saga not in sagas:
        problems.append(f"no saga named {saga!r}")
    else:
        query = replace(query, saga=saga)
    state = params.get("state") or None
    if state is not None and state not in {s.value for s in Status}:
        problems.append(f"state must be one of {', '.join(s.value for s in Status)}")
    else:
        query = replace(query, state=state)
    since, until = _time(params, "since", now, problems), _time(params, "until", now, problems)
    query = replace(query, since=since, until=until)
    if params.get("where"):
        try:
            query = replace(query, where=parse_where(params["where"]))
        except ValueError as exc:
            problems.append(f"where: {exc}")
    if params.get("limit"):
        try:
            limit = int(params["limit"])
            if not 1 <= limit <= MAX_LIMIT:
                raise ValueError
            query = replace(query, limit=limit)
        except ValueError:
            problems.append(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    if params.get("cursor"):
        query = replace(query, cursor=params["cursor"])
    return query, problems


def _time(
    params: Mapping[str, str], name: str, now: datetime, problems: list[str]
) -> datetime | None:
    if not params.get(name):
        return None
    try:
        return parse_time(params[name], now)
    except ValueError as exc:
        problems.append(f"{name}: {exc}")
        return None


@dataclass(frozen=True)
class Page:
    items: list[InstanceState]
    next_cursor: str | None
    exact: InstanceState | None = None
    """The instance whose id is exactly the search text, if any."""


def _position(state: InstanceState) -> tuple[str, str, str]:
    return (state.started_at.astimezone(UTC).isoformat(), state.saga_name, state.saga_id)


def encode_cursor(state: InstanceState) -> str:
    return base64.urlsafe_b64encode("\x1f".join(_position(state)).encode()).decode()


def decode_cursor(cursor: str) -> tuple[str, str, str] | None:
    try:
        parts = base64.urlsafe_b64decode(cursor.encode()).decode().split("\x1f")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None


def _matches(state: InstanceState, query: ListQuery) -> bool:
    if query.since is not None and state.started_at < query.since:
        return False
    if query.until is not None and state.started_at >= query.until:
        return False
    if query.search is not None and not _mentions(state, query.search):
        return False
    trigger = state.context.get("trigger", {})
    return all(str(trigger.get(k)) == v for k, v in query.where.items())


def _mentions(state: InstanceState, text: str) -> bool:
    """The id contains ``text``, or a kept trigger field equals it (a business key)."""
    if text.lower() in state.saga_id.lower():
        return True
    trigger = state.context.get("trigger", {})
    return isinstance(trigger, dict) and any(str(v) == text for v in trigger.values())


async def list_page(store: InstanceStore, query: ListQuery) -> Page:
    """Newest first; the cursor is the position (start time, saga, id) of the last one shown."""
    exact = None
    if query.search is not None:
        record = await find_record(store, query.search, query.saga)
        exact = record.state if record is not None else None
    found = await list_instances(store, query.state, query.saga, limit=10**9)
    after = decode_cursor(query.cursor) if query.cursor else None
    matching = [s for s in found if _matches(s, query) and (after is None or _position(s) < after)]
    matching.sort(key=_position, reverse=True)
    items = matching[: query.limit]
    more = len(matching) > query.limit
    return Page(items, encode_cursor(items[-1]) if more and items else None, exact)


async def counts_by_state(store: InstanceStore, saga: str) -> dict[str, int]:
    counts = {s.value: 0 for s in Status}
    for state in await list_instances(store, name=saga, limit=10**9):
        counts[state.status.value] += 1
    return counts
