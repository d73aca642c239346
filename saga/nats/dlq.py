"""Dead letters: a message we cannot use is moved aside with its reason, never dropped.

Published to ``saga.dlq.<code>`` (captured by the ``SAGA_DLQ`` stream) with the
original payload and headers, plus headers saying why and where it came from.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from saga.nats.topology import dlq_subject
from saga.protocol import (
    HEADER_DLQ_CODE,
    HEADER_DLQ_CONSUMER,
    HEADER_DLQ_REASON,
    HEADER_DLQ_SEQUENCE,
    HEADER_DLQ_STREAM,
    HEADER_DLQ_SUBJECT,
    HEADER_MSG_ID,
    SERVER_HEADER_PREFIX,
)

log = logging.getLogger("saga.dlq")

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


async def dead_letter(
    js: JetStreamContext, msg: Msg, code: DeadLetterCode, reason: str, subject: str | None = None
) -> None:
    """Copy ``msg`` to the dead-letter subject, then terminate it so it is never redelivered.

    ``subject``: the subject to record (and replay to) when it is not the message's own, as
    for an event routed to a partition."""
    headers = {
        k: v for k, v in (msg.headers or {}).items() if not k.startswith(SERVER_HEADER_PREFIX)
    }
    meta = msg.metadata
    headers.update(
        {
            HEADER_DLQ_CODE: code.value,
            HEADER_DLQ_REASON: reason[:MAX_REASON],
            HEADER_DLQ_SUBJECT: subject or msg.subject,
            HEADER_DLQ_STREAM: meta.stream,
            HEADER_DLQ_SEQUENCE: str(meta.sequence.stream),
            HEADER_DLQ_CONSUMER: meta.consumer,
            HEADER_MSG_ID: f"dlq:{meta.stream}:{meta.sequence.stream}",
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
    await msg.term()
