"""Dead letters: a message we cannot use is moved aside with its reason, never dropped.

Published to ``saga.dlq.<code>`` (captured by the ``SAGA_DLQ`` stream) with the
original payload and headers, plus headers saying why and where it came from.

Operators list, show, replay and purge them with the functions below (``saga dlq`` and
the web console call them; none prints or exits). Replaying one publishes the original
payload and headers (without ``Saga-Dlq-*`` and without any ``Nats-*`` server directive,
such as the ``Nats-Expected-Stream`` a nats.js or nats-py publisher adds, which would
make the server refuse the copy) to the original subject, then deletes the dead letter.
The replay carries ``Nats-Msg-Id: replay:<dlq stream>:<sequence>``, so a replay repeated
within the duplicate window (say, after a crash between publish and delete) is dropped by
the server.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NoStreamResponseError, NotFoundError

from saga import jsonwire
from saga.errors import SagaError
from saga.nats.topology import Topology, dlq_subject
from saga.protocol import (
    DLQ_HEADER_PREFIX,
    DLQ_PREFIX,
    HEADER_DLQ_CODE,
    HEADER_DLQ_CONSUMER,
    HEADER_DLQ_REASON,
    HEADER_DLQ_SEQUENCE,
    HEADER_DLQ_STREAM,
    HEADER_DLQ_SUBJECT,
    HEADER_MSG_ID,
    HEADER_SAGA_ID,
    HEADER_SAGA_NAME,
    SCHEMA_VIOLATION,
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
    SCHEMA_VIOLATION = SCHEMA_VIOLATION
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
    if term:
        await msg.term()


class DeadLetterError(SagaError):
    """A dead letter cannot be found or replayed."""


@dataclass(frozen=True)
class DeadLetter:
    """One message of the dead-letter stream, as an operator needs to see it."""

    sequence: int
    """Sequence in the dead-letter stream: what ``saga dlq replay`` takes."""
    code: str
    reason: str
    subject: str
    """The subject it was consumed from, where a replay publishes it again."""
    origin: str
    """``<stream>:<sequence>`` of the original message."""
    consumer: str
    saga_name: str | None
    saga_id: str | None
    time: datetime | None
    data: bytes
    headers: dict[str, str]

    @classmethod
    def from_stored(cls, msg: RawStreamMsg) -> DeadLetter:
        headers = {str(k): str(v) for k, v in (msg.headers or {}).items()}
        return cls(
            sequence=int(msg.seq or 0),
            code=headers.get(HEADER_DLQ_CODE, ""),
            reason=headers.get(HEADER_DLQ_REASON, ""),
            subject=headers.get(HEADER_DLQ_SUBJECT, ""),
            origin=f"{headers.get(HEADER_DLQ_STREAM, '?')}:{headers.get(HEADER_DLQ_SEQUENCE, '?')}",
            consumer=headers.get(HEADER_DLQ_CONSUMER, ""),
            saga_name=headers.get(HEADER_SAGA_NAME),
            saga_id=headers.get(HEADER_SAGA_ID),
            time=msg.time,
            data=msg.data or b"",
            headers=headers,
        )

    def replay_headers(self, stream: str) -> dict[str, str]:
        """The original headers without ``Saga-Dlq-*`` and ``Nats-*`` (publish expectations
        such as ``Nats-Expected-Stream`` made the server refuse the replay, error 10060),
        plus a message id of the replay's own."""
        kept = {
            k: v
            for k, v in self.headers.items()
            if not k.startswith(DLQ_HEADER_PREFIX)
            and not k.lower().startswith(SERVER_HEADER_PREFIX.lower())
        }
        kept[HEADER_MSG_ID] = f"replay:{stream}:{self.sequence}"
        return kept

    def body_text(self) -> str:
        """The payload for a person: indented JSON when it is JSON, else text or base64."""
        try:
            text = self.data.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(self.data).decode()
        try:
            return json.dumps(jsonwire.loads(text), indent=2, ensure_ascii=False, allow_nan=False)
        except ValueError:  # not JSON, or NaN/Infinity: shown as it is
            return text

    def to_json(self) -> dict[str, Any]:
        try:
            body: dict[str, str] = {"data": self.data.decode("utf-8")}
        except UnicodeDecodeError:
            body = {"data_base64": base64.b64encode(self.data).decode()}
        return {
            "sequence": self.sequence,
            "code": self.code,
            "reason": self.reason,
            "subject": self.subject,
            "origin": self.origin,
            "consumer": self.consumer,
            "saga_name": self.saga_name,
            "saga_id": self.saga_id,
            "time": self.time.isoformat() if self.time else None,
            "headers": self.headers,
            **body,
        }


@dataclass(frozen=True)
class Replayed:
    letter: DeadLetter
    sequence: int
    """Where the replayed copy landed in the original subject's stream."""
    duplicate: bool
    """True when the server dropped it as a repeat of an earlier replay."""


@dataclass(frozen=True)
class ReplayFailed:
    """A dead letter that could not be replayed; it stays in the dead-letter stream."""

    sequence: int
    error: str
    letter: DeadLetter | None = None
    """None when the dead letter itself could not be read."""


@dataclass(frozen=True)
class LetterFilter:
    """Which dead letters an operation takes; every given field must match."""

    code: str | None = None
    """``Saga-Dlq-Code``, e.g. ``malformed`` (the ``saga.dlq.<code>`` subject)."""
    subject: str | None = None
    """The original subject (``Saga-Dlq-Subject``); NATS wildcards ``*`` and ``>`` work."""
    saga_id: str | None = None

    def matches(self, letter: DeadLetter) -> bool:
        return (
            (self.code is None or letter.code == self.code)
            and (self.subject is None or subject_matches(self.subject, letter.subject))
            and (self.saga_id is None or letter.saga_id == self.saga_id)
        )

    def __str__(self) -> str:
        given = {"code": self.code, "subject": self.subject, "saga id": self.saga_id}
        return ", ".join(f"{k} {v}" for k, v in given.items() if v is not None) or "all"


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">" and i == len(want) - 1:
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(have) == len(want)


def _filter(code: str | None) -> str:
    return f"{DLQ_PREFIX}.{code}" if code else f"{DLQ_PREFIX}.>"


async def list_dead_letters(
    js: JetStreamContext,
    topology: Topology | None = None,
    code: str | None = None,
    limit: int | None = None,
    where: LetterFilter | None = None,
) -> list[DeadLetter]:
    """Dead letters oldest first, optionally of one ``code`` or matching ``where``."""
    stream = (topology or Topology()).dlq_stream
    where = where or LetterFilter()
    code = code or where.code
    found: list[DeadLetter] = []
    sequence = 1
    while limit is None or len(found) < limit:
        try:
            msg = await js.get_msg(stream, seq=sequence, subject=_filter(code), next=True)
        except NotFoundError:
            break
        letter = DeadLetter.from_stored(msg)
        if where.matches(letter):
            found.append(letter)
        sequence = int(msg.seq or sequence) + 1
    return found


async def get_dead_letter(
    js: JetStreamContext, sequence: int, topology: Topology | None = None
) -> DeadLetter:
    """The dead letter at ``sequence``; ``DeadLetterError`` when there is none."""
    stream = (topology or Topology()).dlq_stream
    try:
        msg = await js.get_msg(stream, seq=sequence)
    except NotFoundError:
        raise DeadLetterError(f"no dead letter {sequence} in {stream}") from None
    letter = DeadLetter.from_stored(msg)
    if not letter.subject:
        raise DeadLetterError(f"message {sequence} of {stream} has no {HEADER_DLQ_SUBJECT} header")
    return letter


async def replay(
    js: JetStreamContext, letter: DeadLetter, topology: Topology | None = None
) -> Replayed:
    """Publish the original message again, then delete the dead letter."""
    stream = (topology or Topology()).dlq_stream
    ack = await js.publish(letter.subject, letter.data, headers=letter.replay_headers(stream))
    await js.delete_msg(stream, letter.sequence)
    return Replayed(letter, int(ack.seq), bool(ack.duplicate))


async def replay_many(
    js: JetStreamContext,
    sequences: list[int] | None = None,
    code: str | None = None,
    topology: Topology | None = None,
    where: LetterFilter | None = None,
) -> list[Replayed | ReplayFailed]:
    """Replay the given dead letters, or every one (of ``code``/``where``) when ``sequences``
    is None. One that fails (no stream takes its subject, a server refusal) is reported as
    :class:`ReplayFailed` and the others go on."""
    where = where or LetterFilter()
    if code is not None:
        where = replace(where, code=code)
    outcomes: list[Replayed | ReplayFailed] = []
    if sequences is None:
        letters: list[DeadLetter] = await list_dead_letters(js, topology, where=where)
    else:
        letters = []
        for sequence in sequences:
            try:
                letter = await get_dead_letter(js, sequence, topology)
            except DeadLetterError as exc:
                outcomes.append(ReplayFailed(sequence, str(exc)))
                continue
            if where.matches(letter):
                letters.append(letter)
    for letter in letters:
        outcomes.append(await _replay_one(js, letter, topology))
    return outcomes


async def _replay_one(
    js: JetStreamContext, letter: DeadLetter, topology: Topology | None
) -> Replayed | ReplayFailed:
    try:
        return await replay(js, letter, topology)
    except (NoRespondersError, NoStreamResponseError):
        return ReplayFailed(letter.sequence, f"no stream captures {letter.subject!r}", letter)
    except (NatsError, TimeoutError) as exc:
        return ReplayFailed(letter.sequence, str(exc) or type(exc).__name__, letter)


async def purge_dead_letters(
    js: JetStreamContext, sequences: list[int], topology: Topology | None = None
) -> list[int]:
    """Delete these dead letters (as listed by :func:`list_dead_letters` with a filter, so a
    letter arriving after an operator confirmed the list is kept); returns those deleted."""
    stream = (topology or Topology()).dlq_stream
    deleted = []
    for sequence in sequences:
        try:
            await js.delete_msg(stream, sequence)
        except NotFoundError:
            continue  # replayed or purged meanwhile
        deleted.append(sequence)
    return deleted


async def purge_dead_letter(
    js: JetStreamContext, sequence: int, topology: Topology | None = None
) -> None:
    """Delete one dead letter for good (it is not replayed)."""
    stream = (topology or Topology()).dlq_stream
    try:
        await js.delete_msg(stream, sequence)
    except NotFoundError:
        raise DeadLetterError(f"no dead letter {sequence} in {stream}") from None
