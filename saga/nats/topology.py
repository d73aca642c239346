"""The streams, consumers and buckets one engine uses, and how ids become subject tokens.

The names themselves (and their defaults) are in :mod:`saga.protocol`.

Documented in ``docs/protocol.md`` and ``docs/operations.md``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from saga.protocol import (
    DEFINITIONS_BUCKET,
    DLQ_PREFIX,
    DLQ_STREAM,
    ENGINE_CONSUMER,
    EVENTS_STREAM,
    INDEX_STREAM,
    INSTANCES_BUCKET,
    MEMBERS_BUCKET,
    REPLIES_BUCKET,
    TIMER_CONSUMER,
    TIMER_FIRE_PREFIX,
    TIMER_SCHEDULE_PREFIX,
    TIMERS_STREAM,
    WORK_PREFIX,
    WORK_STREAM,
)

if TYPE_CHECKING:  # names only: a participant imports this module without the DSL
    pass

_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Topology:
    """Stream, consumer and bucket names; change them to run several engines side by side."""

    events_stream: str = EVENTS_STREAM
    timers_stream: str = TIMERS_STREAM
    dlq_stream: str = DLQ_STREAM
    instances_bucket: str = INSTANCES_BUCKET
    replies_bucket: str = REPLIES_BUCKET
    engine_consumer: str = ENGINE_CONSUMER
    timer_consumer: str = TIMER_CONSUMER
    work_stream: str = WORK_STREAM
    members_bucket: str = MEMBERS_BUCKET
    definitions_bucket: str = DEFINITIONS_BUCKET
    """The newest version of each saga the engine runs, for ``saga start`` (``saga.nats.served``)."""
    index_stream: str = INDEX_STREAM

    def partition_consumer(self, partition: int) -> str:
        return f"{self.engine_consumer}-p{partition}"


def token(value: str) -> str:
    """A subject/KV-key token for an arbitrary id: kept when safe, else a stable hash."""
    if _SAFE_TOKEN.match(value):
        return value
    return "h" + hashlib.sha256(value.encode()).hexdigest()[:40]


def instance_key(saga_name: str, saga_id: str) -> str:
    return f"{token(saga_name)}.{token(saga_id)}"


def timer_schedule_subject(saga_name: str, saga_id: str, timer_key: str) -> str:
    return f"{TIMER_SCHEDULE_PREFIX}.{instance_key(saga_name, saga_id)}.{timer_key}"


def timer_fire_subject(saga_name: str, saga_id: str, timer_key: str) -> str:
    return f"{TIMER_FIRE_PREFIX}.{instance_key(saga_name, saga_id)}.{timer_key}"


def work_subject(partition: int, subject: str) -> str:
    return f"{WORK_PREFIX}.{partition}.{subject}"


def unwrap_work_subject(subject: str) -> str:
    """The original subject of a routed event (``saga.work.<p>.`` removed)."""
    parts = subject.split(".", 3)
    return parts[3] if len(parts) == 4 else subject


def dlq_subject(reason_code: str) -> str:
    return f"{DLQ_PREFIX}.{reason_code}"
