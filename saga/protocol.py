"""Every name on the wire, in one place: headers, subjects, streams and buckets.

Shared by the engine, the participant SDK, the CLI and the harness, and read by
other-language services through ``docs/protocol.md``; change nothing here without changing
that page. Pure names and the functions that compose them: no I/O, no imports from the
rest of ``saga``.
"""

from __future__ import annotations

from collections.abc import Mapping

# -- headers on saga messages ------------------------------------------------------------------

HEADER_SAGA_ID = "Saga-Id"
HEADER_SAGA_NAME = "Saga-Name"
HEADER_STEP = "Saga-Step"
HEADER_ATTEMPT = "Saga-Attempt"
HEADER_KIND = "Saga-Kind"
"""``step`` for a step command, ``compensation`` for an undo command."""
HEADER_REPLAY = "Saga-Replay"
"""``1`` on a command the engine sends again from a transition's outbox (after a crash or
a failed send): a participant then looks for the reply it stored before running anything."""

HEADER_RUN = "Saga-Run"
"""On a command of a redriven instance: the run (1, 2, ...; absent on the first). A new run
is a new idempotency key, so a participant handles a step run again afresh."""

HEADER_REPORT_START = "Saga-Report-Start"
"""``1`` on a step command whose step has a ``queue_timeout``: the participant reports the
start of the work (``saga.started.<saga>.<step>``) before running it. Absent on every other
command, which needs no report (one sent anyway is dropped)."""


def wants_start_report(headers: Mapping[str, str]) -> bool:
    """Whether a command asks its participant for a start report."""
    return headers.get(HEADER_REPORT_START) == "1"


KIND_STEP = "step"
KIND_COMPENSATION = "compensation"

HEADER_PARENT_NAME = "Saga-Parent-Name"
"""On a child saga's trigger and undo request: the parent saga's name (the trigger's
``Saga-Step`` and ``Saga-Attempt`` name the parent's step attempt that started it)."""
HEADER_PARENT_ID = "Saga-Parent-Id"
"""On a child saga's trigger and undo request: the parent instance's id."""

HEADER_TARGET = "Saga-Target"
"""On a step's command held back by ``max_in_flight`` (``saga.admit.<saga>.<step>``): the
subject the engine sends it on once admitted."""

HEADER_TRACEPARENT = "traceparent"
TRACE_HEADERS = (HEADER_TRACEPARENT, "tracestate")
"""W3C trace context; a participant copies them from a command onto its reply."""

HEADER_TIMER = "Saga-Timer"
"""On a timer message: the timer's key (``saga.core.events.Timer.key``)."""
HEADER_TIMER_DUE = "Saga-Timer-Due"
"""On a fallback-mode timer message: when it is due (ISO 8601)."""
HEADER_ORIGIN = "Saga-Origin"
"""On a routed event: ``<stream>:<sequence>`` of the message it was routed from."""
HEADER_AUTHORIZATION = "Authorization"
"""On an operator request (and the admin HTTP API): ``Bearer <admin token>`` when the
engine requires one."""
HEADER_NEXT_CURSOR = "Saga-Next-Cursor"
"""On an admin HTTP API page of instances: the cursor of the next page."""

DLQ_HEADER_PREFIX = "Saga-Dlq-"
"""Headers a dead letter carries beside the original ones: why, and where it came from."""
HEADER_DLQ_CODE = DLQ_HEADER_PREFIX + "Code"
HEADER_DLQ_REASON = DLQ_HEADER_PREFIX + "Reason"
HEADER_DLQ_SUBJECT = DLQ_HEADER_PREFIX + "Subject"
HEADER_DLQ_STREAM = DLQ_HEADER_PREFIX + "Stream"
HEADER_DLQ_SEQUENCE = DLQ_HEADER_PREFIX + "Sequence"
HEADER_DLQ_CONSUMER = DLQ_HEADER_PREFIX + "Consumer"

# -- headers the NATS server reads or sets -----------------------------------------------------

SERVER_HEADER_PREFIX = "Nats-"
"""Headers the server acts on (``Nats-Expected-*``, ``Nats-Rollup``, ``Nats-TTL``, ...): a
copy of a message (a dead letter, a replay, a routed event) is a new publish of the
original content, so none of them is carried over."""
HEADER_MSG_ID = "Nats-Msg-Id"
HEADER_TTL = "Nats-TTL"
TTL_NEVER = "never"
"""A ``Nats-TTL`` that exempts the message from the stream's ``max_age`` (a schedule)."""
HEADER_EXPECTED_STREAM = "Nats-Expected-Stream"
HEADER_EXPECTED_LAST_SUBJECT_SEQUENCE = "Nats-Expected-Last-Subject-Sequence"
HEADER_SCHEDULE = "Nats-Schedule"
HEADER_SCHEDULE_TARGET = "Nats-Schedule-Target"
HEADER_SCHEDULER = "Nats-Scheduler"
"""On a message the server fired from a schedule: the schedule's subject."""
HEADER_SCHEDULE_NEXT = "Nats-Schedule-Next"
"""On a message the server fired from a schedule: the next tick (RFC 3339, UTC)."""
HEADER_SAGA_SCHEDULE = "Saga-Schedule"
"""On a saga's schedule message (and so on every trigger it fires): the ``Nats-Schedule``
pattern, from which the engine works out the tick, hence the saga id."""
HEADER_PIN_ID = "Nats-Pin-Id"
PIN_GROUP = "owner"
"""The priority group of a partition's pinned consumer (one replica pulls at a time)."""
HEADER_STORED_SUBJECT = "Nats-Subject"
"""On a direct-get answer: the stored message's subject (so its sequence and time)."""
HEADER_STORED_SEQUENCE = "Nats-Sequence"
HEADER_STORED_TIME = "Nats-Time-Stamp"

MAX_PAYLOAD_BYTES = 1024 * 1024
"""A body larger than this (1 MiB) is dead-lettered as ``malformed``."""
MAX_SAGA_ID_LENGTH = 256
"""Characters of a ``Saga-Id``; a longer one is dead-lettered as ``malformed``."""
SCHEMA_VIOLATION = "schema-violation"
"""Dead-letter code of a payload that breaks its definition's ``schema``, and the prefix of
the failure reason of a step whose success payload does."""

# -- subjects ------------------------------------------------------------------------------------

STATUS_PREFIX = "saga.status"
"""``saga.status.<saga>.<status>``: lifecycle events the engine publishes."""
STARTED_PREFIX = "saga.started"
"""``saga.started.<saga>.<step>``: a participant reports that it started a step's command
(same ``Saga-*`` headers as its reply); the step's run ``timeout`` counts from there."""
SCHEDULE_PREFIX = "saga.schedule"
"""``saga.schedule.<saga>``: the one schedule message of a scheduled saga, in the events
stream; the server fires it on the saga's trigger subject."""
ADMIT_PREFIX = "saga.admit"
"""``saga.admit.<saga>.<step>``: a command of a step with ``max_in_flight``, waiting in the
events stream for a slot; once admitted the engine sends it on its subject (``Saga-Target``)."""
TIMER_SCHEDULE_PREFIX = "saga.timer.at"
TIMER_FIRE_PREFIX = "saga.timer.fire"
DLQ_PREFIX = "saga.dlq"
"""``saga.dlq.<code>``: dead letters."""
WORK_PREFIX = "saga.work"
"""``saga.work.<partition>.<original subject>``: events routed to the replica owning the
partition of their instance (partitioned mode only)."""
INDEX_PREFIX = "saga.index"
"""``saga.index.<saga>.<status>.<id>``: one entry per instance, in the subject of its status
(see :mod:`saga.index`)."""
SEARCH_PREFIX = "saga.search"
"""``saga.search.<saga>.<attribute>.<value>.<id>``: one entry per declared search attribute."""
OPERATOR_SUBJECT = "saga.admin.action"
"""Operator requests (abort, retry, resume), answered by the engine (request-reply)."""
OPERATOR_QUEUE = "saga-engine"
"""The queue group the engines answer operator requests in: one of them answers each."""
CHILD_PREFIX = "saga.child"
"""``saga.child.<saga>.start`` and ``.undo``: start a saga as a child of a step (or undo a
completed child); ``saga.child.<parent>.<step>.<outcome>``: the child's outcome, for its
parent (see :data:`CHILD_OUTCOMES`)."""
CHILD_COMPLETED = "completed"
CHILD_FAILED = "failed"
"""The child compensated on its own (one of its steps failed): the parent's step failed."""
CHILD_UNDONE = "undone"
"""The parent asked to undo a completed child and it is compensated."""
CHILD_UNDO_FAILED = "undo-failed"
"""The parent asked to undo a completed child and one of its compensations parked it."""
CHILD_OUTCOMES = (CHILD_COMPLETED, CHILD_FAILED, CHILD_UNDONE, CHILD_UNDO_FAILED)
JS_API_PREFIX = "$JS.API."
"""JetStream's API subjects, for the requests nats-py has no call for."""


def status_subject(saga_name: str, status: str) -> str:
    return f"{STATUS_PREFIX}.{saga_name}.{status}"


def admit_subject(saga_name: str, step: str) -> str:
    return f"{ADMIT_PREFIX}.{saga_name}.{step}"


def schedule_subject(saga_name: str) -> str:
    return f"{SCHEDULE_PREFIX}.{saga_name}"


def started_subject(saga_name: str, step: str) -> str:
    return f"{STARTED_PREFIX}.{saga_name}.{step}"


def child_start_subject(saga_name: str) -> str:
    """Where a parent's step starts ``saga_name`` as its child (each saga listens to it)."""
    return f"{CHILD_PREFIX}.{saga_name}.start"


def child_undo_subject(saga_name: str) -> str:
    """Where a compensating parent asks a completed child of ``saga_name`` to undo itself."""
    return f"{CHILD_PREFIX}.{saga_name}.undo"


def child_outcome_subject(parent: str, step: str, outcome: str) -> str:
    """A child's outcome (one of :data:`CHILD_OUTCOMES`), for its parent's step."""
    return f"{CHILD_PREFIX}.{parent}.{step}.{outcome}"


def child_saga_id(parent_id: str, step: str) -> str:
    """The id of the child a parent's step starts: one child per parent step (step names
    have no ``-``, so the last ``-`` splits it back)."""
    return f"{parent_id}-{step}"


# -- message ids (``Nats-Msg-Id``): deterministic, so the server drops a resend ----------------


def idempotency_key(saga: str, saga_id: str, step: str, kind: str, run: int = 0) -> str:
    """One step (or one undo) of one instance: the same for every attempt and delivery of
    one run (a redrive starts run 1, 2, ...)."""
    key = f"{saga}:{saga_id}:{step}:{kind}"
    return f"{key}:run{run}" if run else key


def command_message_id(
    saga: str, saga_id: str, step: str, kind: str, attempt: int, run: int = 0
) -> str:
    """The engine's command (or undo command) for one attempt of one run."""
    return f"{idempotency_key(saga, saga_id, step, kind, run)}:{attempt}"


def reply_message_id(key: str, attempt: int) -> str:
    """A participant's answer to the command of ``attempt`` (``key``: :func:`idempotency_key`)."""
    return f"{key}:reply:{attempt}"


def started_message_id(key: str, attempt: int) -> str:
    """A participant's started report for the command of ``attempt``."""
    return f"{key}:started:{attempt}"


def trigger_message_id(saga: str, saga_id: str) -> str:
    """The ``Nats-Msg-Id`` of a trigger: a resent trigger is dropped by the server's duplicate
    window, whoever sends it (``saga start``, a front end, another language)."""
    return f"{saga}:{saga_id}:trigger"


# -- streams, consumers and buckets (defaults of ``saga.nats.topology.Topology``) ---------------

EVENTS_STREAM = "SAGA_EVENTS"
TIMERS_STREAM = "SAGA_TIMERS"
DLQ_STREAM = "SAGA_DLQ"
WORK_STREAM = "SAGA_WORK"
INDEX_STREAM = "SAGA_INDEX"
ENGINE_CONSUMER = "saga-engine"
TIMER_CONSUMER = "saga-engine-timers"
INSTANCES_BUCKET = "saga_instances"
REPLIES_BUCKET = "saga_replies"
MEMBERS_BUCKET = "saga_engines"
DEFINITIONS_BUCKET = "saga_definitions"
DEFINITIONS_KEY = "newest"
"""The key of ``saga_definitions``: ``{name: definition}`` of the newest version of each saga."""
EFFECTS_BUCKET = "saga_effects"
"""The participant SDK's record of side effects (``ctx.once``)."""


def kv_stream(bucket: str) -> str:
    """The stream behind a Key-Value bucket."""
    return f"KV_{bucket}"


def kv_prefix(bucket: str) -> str:
    """The subject prefix of a bucket's keys: ``$KV.<bucket>.<key>``."""
    return f"$KV.{bucket}."


JS_ACK_PREFIX = "$JS.ACK."
"""The reply subject of a message delivered by a JetStream consumer: its metadata and where
its ack goes (``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>...``)."""
