"""Names of everything the engine creates on JetStream, and how ids become subject tokens.

Documented in ``docs/protocol.md`` and ``docs/operations.md``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from saga.protocol import started_subject

if TYPE_CHECKING:  # names only: a participant imports this module without the DSL
    from saga.definition.model import SagaDefinition

_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

STATUS_PREFIX = "saga.status"
"""``saga.status.<saga>.<status>``: lifecycle events the engine publishes."""
TIMER_SCHEDULE_PREFIX = "saga.timer.at"
TIMER_FIRE_PREFIX = "saga.timer.fire"
DLQ_PREFIX = "saga.dlq"

WORK_PREFIX = "saga.work"
"""``saga.work.<partition>.<original subject>``: events routed to the replica owning the
partition of their instance (partitioned mode only)."""
INDEX_PREFIX = "saga.index"
"""``saga.index.<saga>.<status>.<id>``: one entry per instance, in the subject of its status
(see :mod:`saga.index`)."""
SEARCH_PREFIX = "saga.search"
"""``saga.search.<saga>.<attribute>.<value>.<id>``: one entry per declared search attribute."""
HEADER_ORIGIN = "Saga-Origin"
"""On a routed event: ``<stream>:<sequence>`` of the message it was routed from."""


@dataclass(frozen=True)
class Topology:
    """Stream, consumer and bucket names; change them to run several engines side by side."""

    events_stream: str = "SAGA_EVENTS"
    timers_stream: str = "SAGA_TIMERS"
    dlq_stream: str = "SAGA_DLQ"
    instances_bucket: str = "saga_instances"
    replies_bucket: str = "saga_replies"
    engine_consumer: str = "saga-engine"
    timer_consumer: str = "saga-engine-timers"
    work_stream: str = "SAGA_WORK"
    members_bucket: str = "saga_engines"
    definitions_bucket: str = "saga_definitions"
    """The newest version of each saga the engine runs, for ``saga start`` (``saga.nats.served``)."""
    index_stream: str = "SAGA_INDEX"

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


def listened_subjects(definition: SagaDefinition) -> list[str]:
    """Subjects the engine consumes for this saga: trigger, replies and confirmations, and
    the started reports of steps with a ``queue_timeout``."""
    subjects = [definition.trigger.event]
    for step in definition.steps:
        subjects += [*step.success, *step.failure]
        if step.queue_timeout is not None:
            subjects.append(started_subject(definition.name, step.name))
        if step.compensate is not None:
            subjects += [*(step.compensate.success or ()), *(step.compensate.failure or ())]
    return subjects


def published_subjects(definition: SagaDefinition) -> list[str]:
    """Commands the engine publishes for this saga (steps and compensations)."""
    subjects = []
    for step in definition.steps:
        if step.publish is not None:
            subjects.append(step.publish.event)
        if step.compensate is not None:
            subjects.append(step.compensate.publish.event)
    return subjects
