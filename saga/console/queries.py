"""The list page's question (filters, search, paging) and its answer, apart from HTML.

:class:`ListQuery` is parsed once from the page's query string, with every problem
reported together; :func:`list_page` answers it from the instance store.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from saga.client import find_record, list_instances
from saga.core.state import InstanceState, Status
from saga.definition.duration import parse_duration
from saga.index import SagaIndex, SagaQuery, SagaSummary
from saga.index.entry import entry_filter
from saga.store import InstanceStore, KvInstanceStore

log = logging.getLogger("saga.console")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@dataclass(frozen=True)
class ListQuery:
    saga: str | None = None
    state: str | None = None
    since: datetime | None = None
    """Entered its state at or after (UTC)."""
    until: datetime | None = None
    """Entered its state at or before (UTC)."""
    where: dict[str, str] = field(default_factory=dict)
    """Search attributes that must equal these values."""
    search: str | None = None
    """A saga id, or a business key (the value of a search attribute)."""
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
    items: list[SagaSummary]
    """Newest first: the latest to enter its state first."""
    next_cursor: str | None
    exact: SagaSummary | None = None
    """The one instance whose id is exactly the search text, if there is one."""


def index_of(store: InstanceStore) -> SagaIndex | None:
    """The store's index (:mod:`saga.index`); ``None`` when listings must read every instance."""
    return store.index if isinstance(store, KvInstanceStore) else None


async def list_page(
    store: InstanceStore, query: ListQuery, attributes: Sequence[tuple[str, str]] = ()
) -> Page:
    """One page of ``query``, through the index when there is one.

    A search is a saga id, or the value of any declared search attribute (``attributes``:
    ``(saga, attribute)`` pairs): a business key such as a customer id.
    """
    index = index_of(store)
    if index is None:
        return await _scan_page(store, query)
    if query.search is None:
        found = await index.list(
            SagaQuery(
                saga=query.saga,
                state=query.state,
                since=query.since,
                until=query.until,
                where=query.where,
                limit=query.limit,
                cursor=query.cursor,
            )
        )
        return Page(found.items, found.cursor)
    by_id = await index.find(query.search, query.saga)
    hits = list(by_id)
    for saga, attribute in attributes:
        if query.saga in (None, saga):
            where = {**query.where, attribute: query.search}
            hits += (await index.list(SagaQuery(saga=saga, where=where, limit=query.limit))).items
    unique = {(h.saga_name, h.saga_id): h for h in hits if _summary_matches(h, query)}
    items = sorted(unique.values(), key=lambda h: h.sequence, reverse=True)[: query.limit]
    return Page(items, None, by_id[0] if len(by_id) == 1 else None)


def _summary_matches(item: SagaSummary, query: ListQuery) -> bool:
    return (
        (query.state is None or item.status.value == query.state)
        and (query.since is None or item.updated_at >= query.since)
        and (query.until is None or item.updated_at <= query.until)
        and all(item.search.get(k) == v for k, v in query.where.items())
    )


def _position(state: InstanceState) -> tuple[str, str, str]:
    return (state.updated_at.astimezone(UTC).isoformat(), state.saga_name, state.saga_id)


def encode_cursor(state: InstanceState) -> str:
    return base64.urlsafe_b64encode("\x1f".join(_position(state)).encode()).decode()


def decode_cursor(cursor: str) -> tuple[str, str, str] | None:
    try:
        parts = base64.urlsafe_b64decode(cursor.encode()).decode().split("\x1f")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None


def _matches(state: InstanceState, query: ListQuery) -> bool:
    if query.since is not None and state.updated_at < query.since:
        return False
    if query.until is not None and state.updated_at > query.until:
        return False
    if query.search is not None and not _mentions(state, query.search):
        return False
    trigger = state.context.get("trigger", {})
    return all(str(trigger.get(k)) == v for k, v in query.where.items())


def _mentions(state: InstanceState, text: str) -> bool:
    """The id is ``text``, or a kept trigger field equals it (a business key)."""
    if text == state.saga_id:
        return True
    trigger = state.context.get("trigger", {})
    return isinstance(trigger, dict) and any(str(v) == text for v in trigger.values())


async def _scan_page(store: InstanceStore, query: ListQuery) -> Page:
    """Without an index: read every instance (``where`` then compares kept trigger fields)."""
    exact = None
    if query.search is not None:
        record = await find_record(store, query.search, query.saga)
        exact = SagaSummary.of(record.state, {}) if record is not None else None
    found = await list_instances(store, query.state, query.saga, limit=10**9)
    after = decode_cursor(query.cursor) if query.cursor else None
    matching = [s for s in found if _matches(s, query) and (after is None or _position(s) < after)]
    matching.sort(key=_position, reverse=True)
    items = matching[: query.limit]
    more = len(matching) > query.limit
    return Page(
        [SagaSummary.of(s, {}) for s in items],
        encode_cursor(items[-1]) if more and items else None,
        exact,
    )


async def counts_by_state(
    store: InstanceStore, js: JetStreamContext, saga: str
) -> dict[str, int] | None:
    """Instances of ``saga`` per state; ``None`` when NATS refuses to count. With the index:
    the pending count of a throwaway consumer per state (the server counts; an entry just
    replaced may count for a second)."""
    try:
        return await _counts(store, js, saga)
    except NatsError as exc:
        log.warning("cannot count the instances of %s: %s: %s", saga, type(exc).__name__, exc)
        return None


async def _counts(store: InstanceStore, js: JetStreamContext, saga: str) -> dict[str, int]:
    counts = {s.value: 0 for s in Status}
    index = index_of(store)
    if index is None:
        for state in await list_instances(store, name=saga, limit=10**9):
            counts[state.status.value] += 1
        return counts
    for status in Status:
        config = ConsumerConfig(
            filter_subject=entry_filter(saga, status),
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.NONE,
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=10.0,
        )
        info = await js.add_consumer(index.stream, config)
        counts[status.value] = int(info.num_pending or 0)
        with contextlib.suppress(Exception):
            await js.delete_consumer(index.stream, info.name)
    return counts
