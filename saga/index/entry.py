"""What the index stores per instance, and which writes a state change makes (pure, no I/O).

One entry per instance on ``saga.index.<saga>.<status>.<id>`` (the stream keeps one message
per subject), so a subject filter lists one saga's instances in one status. A status change
writes the new subject and replaces the old one with an empty *tombstone* that expires after a
second: both are plain publishes, pipelined with the engine's other writes. Each declared
search attribute adds ``saga.search.<saga>.<attribute>.<value>.<id>``. Entries of a finished
instance carry the same TTL as its record, so they expire together.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, TypeAdapter
from typing_extensions import TypedDict

from saga.core.state import InstanceState, ParentLink, Status
from saga.definition.expressions import evaluator
from saga.definition.model import SagaDefinition
from saga.nats.topology import token
from saga.protocol import INDEX_PREFIX, SEARCH_PREFIX

TOMBSTONE_TTL = 1
"""Seconds a tombstone (an emptied entry) lives; the server's minimum per-message TTL."""
REASON_CHARS = 200
"""Failure reasons are cut to this length in the index (the record keeps all of it)."""


class SagaSummary(BaseModel):
    """One instance as the index knows it: enough to list and find it, not its history."""

    model_config = ConfigDict(frozen=True)

    saga_id: str
    saga_name: str
    saga_version: int
    status: Status
    started_at: datetime
    updated_at: datetime
    """When the instance entered this status (the time ``since``/``until`` select on)."""
    finished_at: datetime | None = None
    search: dict[str, str] = {}
    """The declared search attributes' values (``search:`` in the definition)."""
    failure_step: str | None = None
    failure_reason: str | None = None
    parent: ParentLink | None = None
    """A child saga's parent step (see ``Step.saga``)."""
    sequence: int = 0
    """The entry's sequence in the index stream: newer entries have higher ones (not stored)."""

    @classmethod
    def of(cls, state: InstanceState, search: dict[str, str]) -> SagaSummary:
        reason = state.failure_reason
        return cls(
            saga_id=state.saga_id,
            saga_name=state.saga_name,
            saga_version=state.saga_version,
            status=state.status,
            started_at=state.started_at,
            updated_at=state.updated_at,
            finished_at=state.finished_at,
            search=search,
            failure_step=state.failure_step,
            failure_reason=reason[:REASON_CHARS] if reason else None,
            parent=state.parent,
        )

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude={"sequence"}, exclude_defaults=True).encode()


class _Fields(TypedDict, total=False):
    """:class:`SagaSummary`'s stored fields, in its order: what :func:`summary_json` encodes."""

    saga_id: str
    saga_name: str
    saga_version: int
    status: Status
    started_at: datetime
    updated_at: datetime
    finished_at: datetime
    search: dict[str, str]
    failure_step: str
    failure_reason: str
    parent: ParentLink


_FIELDS = TypeAdapter(_Fields).serializer


def summary_json(state: InstanceState, search: dict[str, str]) -> bytes:
    """``SagaSummary.of(state, search).to_json()``'s bytes, without building and validating
    the model: the fields it would keep (those not at their default), encoded by the same
    pydantic-core serializers (``exclude_defaults`` reaches the parent link). Twice as fast,
    and the engine writes one at each status change (``test_index_entries.py`` compares)."""
    fields: _Fields = {
        "saga_id": state.saga_id,
        "saga_name": state.saga_name,
        "saga_version": state.saga_version,
        "status": state.status,
        "started_at": state.started_at,
        "updated_at": state.updated_at,
    }
    if state.finished_at is not None:
        fields["finished_at"] = state.finished_at
    if search:
        fields["search"] = search
    if state.failure_step is not None:
        fields["failure_step"] = state.failure_step
    if state.failure_reason:
        fields["failure_reason"] = state.failure_reason[:REASON_CHARS]
    if state.parent is not None:
        fields["parent"] = state.parent
    return _FIELDS.to_json(fields, exclude_defaults=True)


_STATUS_TOKENS = {s.value: s.value for s in Status}
"""Each status's subject token, by member or by name: a lookup (``Status(s).value`` is a
call into ``enum`` and a descriptor, ~1 µs, at each of the engine's index writes)."""


@lru_cache(maxsize=1024)
def _name_token(saga_name: str) -> str:
    return token(saga_name)  # an engine runs a few sagas; their tokens are worked out once


def entry_subject(saga_name: str, status: Status | str, saga_id: str) -> str:
    state = _STATUS_TOKENS.get(status) or Status(status).value  # ValueError if unknown
    return f"{INDEX_PREFIX}.{_name_token(saga_name)}.{state}.{token(saga_id)}"


def entry_filter(saga_name: str | None = None, status: Status | str | None = None) -> str:
    """The subject filter of the entries of one saga and/or one status (``*`` for any)."""
    saga = token(saga_name) if saga_name else "*"
    state = Status(status).value if status else "*"
    return f"{INDEX_PREFIX}.{saga}.{state}.*"


def id_filter(saga_id: str, saga_name: str | None = None) -> str:
    """Every entry (any status) of the instances with this id."""
    saga = token(saga_name) if saga_name else "*"
    return f"{INDEX_PREFIX}.{saga}.*.{token(saga_id)}"


def search_subject(saga_name: str, attribute: str, value: str, saga_id: str) -> str:
    return f"{SEARCH_PREFIX}.{token(saga_name)}.{attribute}.{token(value)}.{token(saga_id)}"


def search_filter(attribute: str, value: str, saga_name: str | None = None) -> str:
    saga = token(saga_name) if saga_name else "*"
    return f"{SEARCH_PREFIX}.{saga}.{attribute}.{token(value)}.*"


@lru_cache(maxsize=1024)
def _compiled(expression: str) -> Any:
    return evaluator(expression)


def search_text(value: Any) -> str | None:
    """How a search attribute's value is stored and compared: strings as they are, other
    scalars as JSON (``12.5``, ``true``); nothing for null, objects and lists."""
    if value is None or isinstance(value, dict | list):
        return None
    return value if isinstance(value, str) else json.dumps(value, allow_nan=False)


def search_values(definition: SagaDefinition, state: InstanceState) -> dict[str, str]:
    """The values of the definition's search attributes over the instance's context."""
    if not definition.search:
        return {}
    context = state.template_context()
    found = {}
    for name, expression in definition.search.items():
        text = search_text(_compiled(expression)(context))
        if text is not None:
            found[name] = text
    return found


class IndexWrite(NamedTuple):
    """One publish to the index stream (a tuple: made at every status change, and a frozen
    dataclass's constructor costs three times as much)."""

    subject: str
    data: bytes
    """Empty for a tombstone."""
    ttl: int | None = None
    """Seconds until the server removes it (``Nats-TTL``); ``None``: kept."""


def index_writes(
    before: InstanceState | None,
    after: InstanceState,
    search_before: dict[str, str],
    search_after: dict[str, str],
    finished_ttl: int | None,
    repair: bool = False,
) -> list[IndexWrite]:
    """The publishes that bring the index from ``before`` to ``after``; none when nothing it
    shows changed. ``repair``: ``before`` is unknown (a transition written before a crash), so
    every other status's entry is emptied."""
    terminal = after.status.terminal
    moved = before is not None and before.status != after.status
    ttl = finished_ttl if terminal and finished_ttl else None
    if not (repair or before is None or moved or terminal or search_before != search_after):
        return []
    name, saga_id = after.saga_name, after.saga_id
    writes = [
        IndexWrite(
            entry_subject(name, after.status, saga_id),
            summary_json(after, search_after),
            ttl,
        )
    ]
    if repair:
        gone = [s for s in Status if s != after.status]
    else:
        gone = [before.status] if before is not None and moved else []
    writes += [IndexWrite(entry_subject(name, s, saga_id), b"", TOMBSTONE_TTL) for s in gone]
    if search_after:  # most sagas declare no search attributes: no marker to encode
        marker = json.dumps({"saga_id": saga_id}, allow_nan=False).encode()
        for attribute, value in search_after.items():
            if repair or terminal or search_before.get(attribute) != value:
                subject = search_subject(name, attribute, value, saga_id)
                writes.append(IndexWrite(subject, marker, ttl))
    for attribute, value in search_before.items():
        if search_after.get(attribute) != value:
            writes.append(
                IndexWrite(search_subject(name, attribute, value, saga_id), b"", TOMBSTONE_TTL)
            )
    return writes
