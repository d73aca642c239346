"""The instance record and the store seam every implementation honours.

The record carries, beside the state, the commands of the transition that wrote
it (the *outbox*) and which message caused it (*origin*). If the engine dies after
the write but before publishing, the redelivered message finds its own origin on
the record and publishes the outbox again; ``Nats-Msg-Id`` dedupe makes that safe.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, Field

from saga.core.state import InstanceState


class InstanceRecord(BaseModel):
    state: InstanceState
    outbox: list[dict[str, Any]] = Field(default_factory=list)
    """JSON form of the commands of the last transition (``command_to_json``)."""
    origin: str | None = None
    """``<stream>:<sequence>`` of the message whose transition wrote this record."""
    trace: dict[str, str] = Field(default_factory=dict)
    """The saga's root trace context (``traceparent``…): later steps, timers and
    compensations join the same trace, even after an engine restart."""
    traced: int = 0
    """History entries below this index have their saga spans known exported
    (:mod:`saga.telemetry.recovery`); the rest are written again after a crash."""
    admitted: str | None = None
    """The ack subject of the trigger that started the instance, when its saga has
    ``limits.max_running``: the trigger stays unacked (it holds a slot) until the transition
    that ends the instance acks it (:mod:`saga.engine.admission`)."""


_SERIALIZER = InstanceRecord.__pydantic_serializer__


def record_json(record: InstanceRecord) -> bytes:
    """The record's bytes in the store: without the model fields that are None.

    Every field that may be None has None as its default, so a field left out loads as
    the None it was (``tests/unit/test_record_json.py`` checks each model's fields);
    ``None`` values inside plain dicts and lists (the saga's context, the outbox's
    payloads) are kept. A quarter less to write, send and store than the full encoding,
    which every reader still loads (``InstanceRecord.model_validate_json``)."""
    return _SERIALIZER.to_json(record, exclude_none=True)


Write = tuple[str, InstanceRecord, int | None]
"""A key, its new record and the revision it replaces (None: the key must not exist)."""


async def write_each(store: InstanceStore, writes: Sequence[Write]) -> list[int | Exception]:
    """:meth:`InstanceStore.write_all` as one create or update after the other."""
    results: list[int | Exception] = []
    for key, record, revision in writes:
        try:
            if revision is None:
                results.append(await store.create(key, record))
            else:
                results.append(await store.update(key, record, revision))
        except Exception as exc:
            results.append(exc)
    return results


@dataclass(frozen=True)
class Stored:
    record: InstanceRecord
    revision: int


class InstanceStore(Protocol):
    """Revision-checked storage; a lost race raises :class:`saga.errors.RevisionConflict`."""

    async def load(self, key: str) -> Stored | None:
        """The record, possibly from a replica that lags (fast; a write on a stale copy
        loses its race, so only a decision not to write needs :meth:`load_latest`)."""
        ...

    async def load_latest(self, key: str) -> Stored | None:
        """The record as the store's leader holds it: never older than the last write."""
        ...

    async def create(self, key: str, record: InstanceRecord) -> int: ...

    async def update(self, key: str, record: InstanceRecord, revision: int) -> int: ...

    async def write_all(self, writes: Sequence[Write]) -> list[int | Exception]:
        """Several keys' writes at once: per write, its new revision or what it raised
        (:class:`saga.errors.RevisionConflict` for a lost race), as create and update would."""
        ...

    def scan(self) -> AsyncIterator[InstanceRecord]: ...

    async def keys(self) -> list[str]: ...
