"""List and find instances through the index: cost in proportion to what is returned.

The one query API the CLI, the admin JSON API and the console call::

    index = SagaIndex(nc, topology)
    page = await index.list(SagaQuery(saga="shop", state="parked", since=t, limit=50))
    page.items        # list[SagaSummary], newest first (by when they entered their status)
    page.cursor       # pass as SagaQuery(cursor=...) for the next page; None: no more
    await index.find("order-1")          # list[SagaSummary]: every saga's instance with this id
    await index.find("order-1", "shop")  # at most one

How it reads (see ``docs/operations.md``, "Finding instances"):

- a listing filters the index stream by subject (``saga.index.<saga>.<status>.*``) and reads
  it newest first in windows of stream sequences that grow while they hold too few entries,
  so it reads about ``limit`` entries, not the stream;
- ``where`` reads the instances with that attribute value (``saga.search...``), then their
  entries in one ``multi_last`` request per hundred ids;
- ``find`` is one ``multi_last`` request on ``saga.index.*.*.<id>``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from nats.aio.client import Client
from nats.errors import Error as NatsError
from pydantic import ValidationError

from saga.core.state import Status
from saga.errors import StoreError
from saga.index.entry import SagaSummary, entry_filter, id_filter, search_filter
from saga.nats.direct import DirectMsg, direct_get
from saga.nats.topology import Topology
from saga.protocol import INDEX_PREFIX

MAX_LIMIT = 10_000
IDS_PER_REQUEST = 100
"""Filters per ``multi_last`` request when fetching the entries of many ids."""
_SEARCH_BATCH = 1000
DENSE = 0.2
"""Above this share of matching messages a window is read whole and filtered here."""
MAX_BATCH = 1000
Msgs = list[DirectMsg]
Summaries = list[SagaSummary]


@dataclass(frozen=True)
class SagaQuery:
    """What to list. Every filter is optional; all given ones must hold."""

    saga: str | None = None
    """Only instances of this saga (any version)."""
    state: Status | str | None = None
    """Only instances in this status (``running``, ``parked``…)."""
    since: datetime | None = None
    """Only instances that entered their status at or after this (timezone-aware)."""
    until: datetime | None = None
    """…and at or before this."""
    where: Mapping[str, str] = field(default_factory=dict)
    """Search attributes that must have these values (``{"customer": "cus-1"}``)."""
    limit: int = 50
    """At most this many items (1 to 10,000)."""
    cursor: str | None = None
    """From a previous page's ``cursor``: go on after its last item."""

    def check(self) -> None:
        """Raise ``ValueError`` for a query that cannot be run."""
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        if self.state is not None:
            Status(self.state)  # ValueError for an unknown status
        if self.cursor is not None and not self.cursor.isdigit():
            raise ValueError(f"bad cursor {self.cursor!r}")
        for bound in (self.since, self.until):
            if bound is not None and bound.tzinfo is None:
                raise ValueError("since and until must be timezone-aware")


@dataclass(frozen=True)
class SagaPage:
    items: list[SagaSummary]
    """Newest first."""
    cursor: str | None
    """Give it back in :attr:`SagaQuery.cursor` for the next page; ``None`` when this is the
    last one."""


def _summary(msg: DirectMsg) -> SagaSummary | None:
    """The entry a message holds; ``None`` for a tombstone or a malformed entry."""
    if not msg.data:
        return None
    try:
        return SagaSummary.model_validate_json(msg.data).model_copy(
            update={"sequence": msg.sequence}
        )
    except ValidationError:
        return None


def _matches(item: SagaSummary, query: SagaQuery) -> bool:
    return (
        (query.saga is None or item.saga_name == query.saga)
        and (query.state is None or item.status == Status(query.state))
        and (query.since is None or item.updated_at >= query.since)
        and (query.until is None or item.updated_at <= query.until)
        and all(item.search.get(k) == v for k, v in query.where.items())
    )


class SagaIndex:
    """Reads the index stream (``Topology.index_stream``) with direct gets."""

    def __init__(self, nc: Client, topology: Topology | None = None, timeout: float = 5.0) -> None:
        self.nc = nc
        self.stream = (topology or Topology()).index_stream
        self.timeout = timeout

    async def available(self) -> bool:
        """True when the index stream exists (and this connection may read it)."""
        try:
            await self._bounds()
        except StoreError:
            return False
        return True

    async def find(self, saga_id: str, saga: str | None = None) -> Summaries:
        """The instances with this id (of ``saga`` only when given): one request."""
        msgs = await self._get({"multi_last": [id_filter(saga_id, saga)]})
        return _newest_per_saga(m for m in map(_summary, msgs) if m and m.saga_id == saga_id)

    async def list(self, query: SagaQuery) -> SagaPage:
        """One page of the instances ``query`` selects, newest first."""
        query.check()
        if query.where:
            return await self._list_where(query)
        return await self._list_scan(query)

    async def _get(self, request: dict[str, object]) -> Msgs:
        return await direct_get(self.nc, self.stream, request, self.timeout)

    async def _bounds(self) -> tuple[int, int]:
        """First and last sequence of the index stream (0, 0 when empty). From the stream's
        info: a direct get of the last message on ``>`` finds nothing once that message has
        expired (nats-server 2.15)."""
        try:
            info = await self.nc.jetstream(timeout=self.timeout).stream_info(self.stream)
        except NatsError as exc:
            raise StoreError(f"no index stream {self.stream}: {exc}") from exc
        if not info.state.messages:
            return 0, 0
        return info.state.first_seq, info.state.last_seq

    async def _seq_at(self, moment: datetime, low: int, high: int) -> int:
        """The last sequence in ``[low, high]`` whose entry entered its status at or before
        ``moment`` (entries are written in time order): a binary search, O(log n) gets."""
        while low < high:
            middle = (low + high + 1) // 2
            found = await self._entry_from(middle, high)
            if found is None:
                high = middle - 1
            elif found.updated_at <= moment:
                low = found.sequence
            else:
                high = middle - 1
        return low

    async def _entry_from(self, seq: int, high: int, tries: int = 16) -> SagaSummary | None:
        """The first entry at or after ``seq`` (up to ``high``), stepping over search entries
        and tombstones one message at a time (unfiltered gets cost the server least)."""
        for _ in range(tries):
            found = await self._get({"seq": seq, "next_by_subj": ">"})
            if not found or found[0].sequence > high:
                return None
            item = _summary(found[0]) if found[0].subject.startswith(INDEX_PREFIX) else None
            if item is not None:
                return item
            seq = found[0].sequence + 1
        return None

    async def _window(
        self, subjects: str, low: int, high: int, batch: int, cap: int, filtered: bool
    ) -> Msgs | None:
        """The messages on ``subjects`` with sequences in ``[low, high]``, read ``batch`` at a
        time; ``None`` when there are more than ``cap``.

        ``filtered``: the server filters (what a sparse filter needs). Otherwise every message
        of the window is read and filtered here: for a dense wildcard filter that is much
        cheaper for the server, which otherwise matches the filter against every subject of
        the block for each message it returns (nats-server 2.15, ~1 s for 50 entries of
        ``saga.index.*.*.*`` among a million)."""
        found: Msgs = []
        seq = low
        while True:
            request: dict[str, object] = {"seq": seq, "batch": batch}
            if filtered:
                request["next_by_subj"] = subjects
            got = await self._get(request)
            inside = [m for m in got if m.sequence <= high]
            found += (
                inside if filtered else [m for m in inside if subject_matches(subjects, m.subject)]
            )
            if len(found) > cap:
                return None
            if len(inside) < batch:
                return found
            seq = inside[-1].sequence + 1

    async def _list_scan(self, query: SagaQuery) -> SagaPage:
        """Newest first: read windows of sequences backwards from the newest, each sized by
        the density of matching entries seen so far to hold about what is still wanted."""
        subjects = entry_filter(query.saga, query.state)
        first, last = await self._bounds()
        if last == 0:
            return SagaPage([], None)
        high = int(query.cursor) - 1 if query.cursor else last
        if query.until is not None:
            high = await self._seq_at(query.until, first - 1, high)
        items: Summaries = []
        seen_seqs, seen_msgs = 0, 0
        span = query.limit + 1
        density = 1.0  # the first window is read whole: it tells the density
        while high >= first and len(items) <= query.limit:
            wanted = query.limit + 1 - len(items)
            low = max(first, high - span + 1)
            dense = density >= DENSE
            batch = min(high - low + 1, MAX_BATCH) if dense else wanted + 8
            msgs = await self._window(subjects, low, high, batch, 4 * wanted + 16, not dense)
            if msgs is None:  # much denser than expected: a narrower window
                span = max(1, span // 4)
                continue
            for item in (s for s in map(_summary, reversed(msgs)) if s is not None):
                if query.since is not None and item.updated_at < query.since:
                    return SagaPage(items[: query.limit], None)
                if _matches(item, query):
                    items.append(item)
            seen_seqs += high - low + 1
            seen_msgs += len(msgs)
            high = low - 1
            wanted = query.limit + 1 - len(items)
            density = seen_msgs / seen_seqs
            span = int(1.5 * wanted / density) + 1 if density > 0 else span * 8
        page = items[: query.limit]
        more = len(items) > query.limit
        return SagaPage(page, str(page[-1].sequence) if more and page else None)

    async def _list_where(self, query: SagaQuery) -> SagaPage:
        attribute, value = next(iter(query.where.items()))
        markers = await self._all(search_filter(attribute, value, query.saga))
        ids = sorted({i for i in map(_marked_id, markers) if i is not None})
        items: Summaries = []
        for start in range(0, len(ids), IDS_PER_REQUEST):
            chunk = ids[start : start + IDS_PER_REQUEST]
            msgs = await self._get({"multi_last": [id_filter(i, query.saga) for i in chunk]})
            items += [s for s in map(_summary, msgs) if s is not None and _matches(s, query)]
        items = _newest_per_saga(items)
        if query.cursor:
            items = [i for i in items if i.sequence < int(query.cursor)]
        page = items[: query.limit]
        more = len(items) > query.limit
        return SagaPage(page, str(page[-1].sequence) if more and page else None)

    async def _all(self, subjects: str) -> Msgs:
        """Every message on ``subjects``, oldest first (for filters that select few)."""
        found: Msgs = []
        seq = 1
        while True:
            msgs = await self._get({"seq": seq, "next_by_subj": subjects, "batch": _SEARCH_BATCH})
            found += msgs
            if len(msgs) < _SEARCH_BATCH:
                return found
            seq = msgs[-1].sequence + 1


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching of ``*`` tokens (the index's filters use no ``>``)."""
    wanted, tokens = pattern.split("."), subject.split(".")
    return len(wanted) == len(tokens) and all(
        w in ("*", t) for w, t in zip(wanted, tokens, strict=True)
    )


def _marked_id(msg: DirectMsg) -> str | None:
    if not msg.data:
        return None
    try:
        saga_id = json.loads(msg.data).get("saga_id")
    except (ValueError, AttributeError):
        return None
    return saga_id if isinstance(saga_id, str) else None


def _newest_per_saga(items: Iterable[SagaSummary]) -> list[SagaSummary]:
    """One entry per (saga, id), the newest (a stale one is left after a crash until
    ``saga reindex``), newest first."""
    best: dict[tuple[str, str], SagaSummary] = {}
    for item in items:
        key = (item.saga_name, item.saga_id)
        if key not in best or best[key].sequence < item.sequence:
            best[key] = item
    found = list(best.values())
    found.sort(key=lambda s: s.sequence, reverse=True)
    return found


__all__ = ["MAX_LIMIT", "SagaIndex", "SagaPage", "SagaQuery", "SagaSummary"]
