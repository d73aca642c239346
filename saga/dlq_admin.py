"""Dead letters for operators: list them, and re-drive them onto their original subject.

A dead letter (:mod:`saga.nats.dlq`) is a copy of the original payload and headers on
``saga.dlq.<code>`` plus ``Saga-Dlq-*`` headers saying why and where it came from.
Replaying one publishes the original payload and headers (without ``Saga-Dlq-*``) to
the original subject, then deletes the dead letter. The replay carries
``Nats-Msg-Id: replay:<dlq stream>:<sequence>``, so a replay repeated within the
duplicate window (say, after a crash between publish and delete) is dropped by the server.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from saga.errors import SagaError
from saga.nats.dlq import (
    HEADER_CODE,
    HEADER_CONSUMER,
    HEADER_REASON,
    HEADER_SEQUENCE,
    HEADER_STREAM,
    HEADER_SUBJECT,
)
from saga.nats.topology import DLQ_PREFIX, Topology
from saga.protocol import HEADER_MSG_ID, HEADER_SAGA_ID, HEADER_SAGA_NAME

DLQ_HEADER_PREFIX = "Saga-Dlq-"


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
            code=headers.get(HEADER_CODE, ""),
            reason=headers.get(HEADER_REASON, ""),
            subject=headers.get(HEADER_SUBJECT, ""),
            origin=f"{headers.get(HEADER_STREAM, '?')}:{headers.get(HEADER_SEQUENCE, '?')}",
            consumer=headers.get(HEADER_CONSUMER, ""),
            saga_name=headers.get(HEADER_SAGA_NAME),
            saga_id=headers.get(HEADER_SAGA_ID),
            time=msg.time,
            data=msg.data or b"",
            headers=headers,
        )

    def replay_headers(self, stream: str) -> dict[str, str]:
        """The original headers: ``Saga-Dlq-*`` and the dead letter's message id removed."""
        kept = {
            k: v
            for k, v in self.headers.items()
            if not k.startswith(DLQ_HEADER_PREFIX) and k != HEADER_MSG_ID
        }
        kept[HEADER_MSG_ID] = f"replay:{stream}:{self.sequence}"
        return kept

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


def _filter(code: str | None) -> str:
    return f"{DLQ_PREFIX}.{code}" if code else f"{DLQ_PREFIX}.>"


async def list_dead_letters(
    js: JetStreamContext,
    topology: Topology | None = None,
    code: str | None = None,
    limit: int | None = None,
) -> list[DeadLetter]:
    """Dead letters oldest first, optionally of one ``code``."""
    stream = (topology or Topology()).dlq_stream
    found: list[DeadLetter] = []
    sequence = 1
    while limit is None or len(found) < limit:
        try:
            msg = await js.get_msg(stream, seq=sequence, subject=_filter(code), next=True)
        except NotFoundError:
            break
        found.append(DeadLetter.from_stored(msg))
        sequence = int(msg.seq or sequence) + 1
    return found


async def get_dead_letter(
    js: JetStreamContext, sequence: int, topology: Topology | None = None
) -> DeadLetter:
    stream = (topology or Topology()).dlq_stream
    try:
        msg = await js.get_msg(stream, seq=sequence)
    except NotFoundError:
        raise DeadLetterError(f"no dead letter {sequence} in {stream}") from None
    letter = DeadLetter.from_stored(msg)
    if not letter.subject:
        raise DeadLetterError(f"message {sequence} of {stream} has no {HEADER_SUBJECT} header")
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
) -> list[Replayed]:
    """Replay the given dead letters, or every one (of ``code``) when ``sequences`` is None."""
    if sequences is None:
        letters = await list_dead_letters(js, topology, code)
    else:
        letters = [await get_dead_letter(js, s, topology) for s in sequences]
        if code is not None:
            letters = [letter for letter in letters if letter.code == code]
    return [await replay(js, letter, topology) for letter in letters]


async def purge_dead_letter(
    js: JetStreamContext, sequence: int, topology: Topology | None = None
) -> None:
    """Delete one dead letter for good (it is not replayed)."""
    stream = (topology or Topology()).dlq_stream
    try:
        await js.delete_msg(stream, sequence)
    except NotFoundError:
        raise DeadLetterError(f"no dead letter {sequence} in {stream}") from None
