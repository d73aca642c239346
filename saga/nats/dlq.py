"""Dead letters: a message we cannot use is moved aside with its reason, never dropped.

Published to ``saga.dlq.<code>`` (captured by the ``SAGA_DLQ`` stream) with the
original payload and headers, plus headers saying why and where it came from.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from saga import protocol
from saga.nats.topology import dlq_subject

log = logging.getLogger("saga.dlq")

HEADER_REASON = "Saga-Dlq-Reason"
HEADER_CODE = "Saga-Dlq-Code"
HEADER_SUBJECT = "Saga-Dlq-Subject"
HEADER_STREAM = "Saga-Dlq-Stream"
HEADER_SEQUENCE = "Saga-Dlq-Sequence"
HEADER_CONSUMER = "Saga-Dlq-Consumer"
MAX_REASON = 512


class DeadLetterCode(StrEnum):
    MALFORMED = "malformed"
    """Not JSON, not an object, or too large."""
    NON_FINITE_NUMBER = "non-finite-number"
    """``NaN``, ``Infinity`` or a number too large for a double (``1e400``): RFC 8259 JSON
    cannot carry it, and a copy passed on would be unreadable to other parsers."""
    NO_SAGA_ID = "no-saga-id"
    UNKNOWN_INSTANCE = "unknown-instance"
    UNKNOWN_EVENT = "unknown-event"
    HANDLER_FAILED = "handler-failed"
    """A participant's handler kept raising until ``max_deliver``."""
    HANDLER_BUG = "handler-bug"
    """A participant's handler returned something it must not (not a JSON object): a
    programming mistake no redelivery can fix."""
    ENGINE_ERROR = "engine-error"
    SCHEMA_VIOLATION = protocol.SCHEMA_VIOLATION
    """The payload breaks the JSON Schema its definition declares (``schema``). A trigger
    starts nothing; a step's success is kept here as a copy and counts as the step failing."""


async def dead_letter(
    js: JetStreamContext,
    msg: Msg,
    code: DeadLetterCode,
    reason: str,
    subject: str | None = None,
    *,
    term: bool = True,
) -> None:
    """Copy ``msg`` to the dead-letter subject, then terminate it so it is never redelivered.

    ``subject``: the subject to record (and replay to) when it is not the message's own, as
    for an event routed to a partition. ``term=False``: only copy it (the message is still
    used, e.g. a success that breaks its schema fails its step)."""
    headers = {k: v for k, v in (msg.headers or {}).items() if not k.startswith("Nats-")}
    meta = msg.metadata
    headers.update(
        {
            HEADER_CODE: code.value,
            HEADER_REASON: reason[:MAX_REASON],
            HEADER_SUBJECT: subject or msg.subject,
            HEADER_STREAM: meta.stream,
            HEADER_SEQUENCE: str(meta.sequence.stream),
            HEADER_CONSUMER: meta.consumer,
            "Nats-Msg-Id": f"dlq:{meta.stream}:{meta.sequence.stream}",
        }
    )
    await js.publish(dlq_subject(code.value), msg.data, headers=headers)
    log.warning(
        "dead-lettered %s seq %s (%s): %s",
        msg.subject,
        meta.sequence.stream,
        code.value,
        reason[:MAX_REASON],
    )
    if term:
        await msg.term()
