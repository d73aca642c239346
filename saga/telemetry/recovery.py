"""No saga span lost to an engine crash: an "exported up to" mark on the record.

The engine's saga spans are derived from the instance record (:mod:`saga.telemetry.saga_spans`),
so what a killed engine had not exported yet can be written again from the record. The mark
``InstanceRecord.traced`` says up to which history entry the spans are known exported:

- an engine writes the spans a transition closes right after storing it;
- once a saga ends (or parks), its key waits here until the exporter has flushed, then the
  mark is written (one revision-checked write, skipped if the saga moved on);
- an engine that touches an instance for the first time (after a restart, a handover, a
  redelivery of a message whose transition was stored) writes again every span past the
  mark; one that starts reads the instances written in the last hour (``SCAN_WINDOW``)
  for ended ones past their mark.

Copies carry the same span ids; a viewer keeps one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from nats.aio.client import Client
from nats.js import JetStreamContext

from saga.core.state import Status
from saga.errors import RevisionConflict
from saga.nats.reader import StoredMessage, read_stream
from saga.protocol import kv_prefix, kv_stream
from saga.store.base import InstanceRecord, InstanceStore
from saga.telemetry.saga_spans import emit_closed
from saga.telemetry.setup import Telemetry

log = logging.getLogger("saga.telemetry")
SCAN_WINDOW = 3600.0
"""Seconds back an engine that starts looks for ended sagas whose spans may be lost."""
ENDED_STATUSES = (b'"status":"completed"', b'"status":"compensated"', b'"status":"parked"')
SEEN_MAX = 65_536
"""Instances this engine remembers having written spans for (older ones are re-emitted
from their mark if they come back: harmless copies)."""
ENDED_MAX = 10_000
"""Ended instances whose marks may wait for the exporter at once. While the exporter does
not flush (a collector down), more would keep every ended record in memory; beyond this the
oldest are given up: their marks are not written, so after a crash their spans may be
sent again (copies, which a viewer keeps one of)."""


def ended(record: InstanceRecord) -> bool:
    return record.state.status.terminal or record.state.status is Status.PARKED


class SpanMarks:
    def __init__(self, telemetry: Telemetry, interval: float = 5.0) -> None:
        self.telemetry = telemetry
        self.interval = interval
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._ended: dict[str, tuple[InstanceRecord, int]] = {}
        self._wake = asyncio.Event()
        self.given_up = 0
        """Marks not written because :data:`ENDED_MAX` were waiting (see there)."""
        self._warned = False

    def transition(
        self, key: str, before: InstanceRecord | None, after: InstanceRecord, revision: int
    ) -> None:
        """Write the spans ``after`` closes (and, on first sight, those past the mark)."""
        if not self.telemetry.enabled:
            return
        state = after.state
        lo = len(before.state.history) if before is not None else 0
        if before is not None and key not in self._seen:
            lo = min(lo, before.traced)
        self._remember(key)
        emit_closed(self.telemetry, state, after.trace, lo, len(state.history))
        if ended(after):
            self._wait_for_flush(key, after, revision)

    def recovered(self, key: str, record: InstanceRecord, revision: int) -> None:
        """A stored transition met again (its message redelivered): write what may be lost."""
        if not self.telemetry.enabled or key in self._seen or not record.trace:
            return
        self._remember(key)
        state = record.state
        emit_closed(self.telemetry, state, record.trace, record.traced, len(state.history))
        if ended(record):
            self._wait_for_flush(key, record, revision)

    def _wait_for_flush(self, key: str, record: InstanceRecord, revision: int) -> None:
        self._ended.pop(key, None)  # the newest last: given up last
        self._ended[key] = (record, revision)
        self._trim()

    def _trim(self) -> None:
        """Give up the oldest waiting marks beyond :data:`ENDED_MAX`."""
        ended = self._ended
        over = len(ended) - ENDED_MAX
        if over <= 0:
            return
        for key in list(itertools.islice(ended, over)):
            del ended[key]
        self.given_up += over
        if not self._warned:
            self._warned = True
            log.warning(
                "the span exporter has not flushed for a while: %d ended sagas wait for "
                "their spans' mark; older ones are given up (after a crash their spans may "
                "be sent twice)",
                ENDED_MAX,
            )

    def _remember(self, key: str) -> None:
        self._seen[key] = None
        self._seen.move_to_end(key)
        if len(self._seen) > SEEN_MAX:
            self._seen.popitem(last=False)

    async def scan(
        self,
        js: JetStreamContext,
        bucket: str,
        window: float = SCAN_WINDOW,
        nc: Client | None = None,
    ) -> int:
        """Re-emit the spans of instances that ended or parked in the last ``window``
        seconds and are past their mark; returns how many instances.

        Reads the bucket's stream from that moment on (one consumer, in batches), not
        every key: a record of a saga that was not traced, or has not ended, is skipped
        before it is parsed. With ``nc`` (the connection of ``js``), pulled raw (cheaper)."""
        since = datetime.now(UTC) - timedelta(seconds=window)
        latest: dict[str, StoredMessage] = {}
        for message in await read_stream(js, kv_stream(bucket), since=since, nc=nc):
            latest[message.subject] = message  # in stream order: the last one wins
        prefix, count = kv_prefix(bucket), 0
        for subject, message in latest.items():
            key = subject.removeprefix(prefix)
            data = message.data
            if key in self._seen or not data or b'"trace":{}' in data:
                continue
            if not any(status in data for status in ENDED_STATUSES):
                continue
            record = InstanceRecord.model_validate_json(data)
            if ended(record) and record.traced < len(record.state.history):
                self.recovered(key, record, message.sequence)
                count += 1
        return count

    async def keep_marking(
        self, store: Callable[[], InstanceStore | None], stop: asyncio.Event
    ) -> None:
        """Write the marks of ended instances once the exporter has flushed their spans."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
            target = store()
            if not self._ended or target is None:
                continue
            batch, self._ended = self._ended, {}
            if not await asyncio.to_thread(self.telemetry.flush):
                # try again after the next interval; what ended meanwhile is newer
                self._ended = {**batch, **self._ended}
                self._trim()
                continue
            self._warned = False
            for key, (record, revision) in batch.items():
                marked = record.model_copy(update={"traced": len(record.state.history)})
                try:  # a conflict: the saga moved on (its next end is marked then)
                    await target.update(key, marked, revision)
                except RevisionConflict:
                    pass
                except Exception:
                    log.warning("could not mark the spans of %s exported", key, exc_info=True)
