"""What the harness sees on the wire: messages, and what each subject means to one saga.

Both transports (in memory and on a real nats-server) describe traffic with the same
:class:`Message`, so one scenario asserts the same transcript in either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from saga.definition.model import SagaDefinition
from saga.definition.saga_id import saga_id_of
from saga.definition.subjects import Role, Use
from saga.protocol import (
    HEADER_ATTEMPT,
    HEADER_KIND,
    HEADER_MSG_ID,
    HEADER_PARENT_ID,
    HEADER_RUN,
    HEADER_SAGA_ID,
    HEADER_SAGA_NAME,
    HEADER_STEP,
    KIND_COMPENSATION,
    KIND_STEP,
    TRACE_HEADERS,
    idempotency_key,
    reply_message_id,
    trigger_message_id,
)


@dataclass(frozen=True)
class Message:
    """One message as it crossed the wire; equality ignores when it did and the derived fields."""

    subject: str
    payload: Any
    """The decoded JSON body: an object, per the protocol."""
    headers: dict[str, str] = field(default_factory=dict)
    role: Role = field(default=Role.OTHER, compare=False)
    saga_id: str | None = field(default=None, compare=False)
    """The instance it belongs to (the ``Saga-Id`` header, else as the engine would derive it)."""
    at: datetime | None = field(default=None, compare=False)
    """The harness clock (in memory) or the stream's timestamp (on nats-server)."""

    @property
    def step(self) -> str | None:
        return self.headers.get(HEADER_STEP)

    @property
    def kind(self) -> str | None:
        """``step`` or ``compensation``."""
        return self.headers.get(HEADER_KIND)

    @property
    def attempt(self) -> int | None:
        text = self.headers.get(HEADER_ATTEMPT)
        return int(text) if text and text.isdigit() else None

    @property
    def msg_id(self) -> str | None:
        return self.headers.get(HEADER_MSG_ID)

    def __str__(self) -> str:
        attempt = f" #{self.attempt}" if self.attempt is not None else ""
        where = f" [{self.step} {self.kind}{attempt}]" if self.step else ""
        body = json.dumps(self.payload, sort_keys=True, default=str)
        return f"{self.role.value:<19} {self.subject}{where} {body}"


class WireReader:
    """How the harness reads one saga's traffic: what a message means (the definition's
    :class:`~saga.definition.subjects.SubjectIndex`, told apart by headers), whether it
    wants an answer, and the :class:`Message` it is recorded as."""

    def __init__(self, definition: SagaDefinition) -> None:
        self.definition = definition
        self.subjects = definition.subjects
        self.consumed = self.subjects.consumed
        self.commands = self.subjects.commands

    def known(self, subject: str) -> bool:
        return self.subjects.known(subject)

    def meaning(self, subject: str, headers: dict[str, str] | None = None) -> Use:
        """A command subject shared by several steps is told apart by its headers."""
        headers = headers or {}
        return self.subjects.meaning(subject, headers.get(HEADER_STEP), headers.get(HEADER_KIND))

    def expects_answer(self, meaning: Use) -> bool:
        """Whether a participant must answer: every step command, and undos with a ``success``."""
        if meaning.role is Role.COMMAND:
            return True
        if meaning.role is Role.COMPENSATION and meaning.step is not None:
            comp = self.definition.step(meaning.step).compensate
            return comp is not None and comp.success is not None
        return False

    def message(
        self,
        subject: str,
        payload: Any,
        headers: dict[str, str],
        at: datetime | None = None,
    ) -> Message:
        """A message with its role and saga id filled in, as the engine would see them."""
        role = self.meaning(subject, headers).role
        # a child saga's trigger and undo, and a scripted answer to them, belong to the parent:
        # the harness runs one saga and plays its children like services
        saga_id = (
            headers.get(HEADER_PARENT_ID)
            or headers.get(HEADER_SAGA_ID)
            or saga_id_of(self.definition, subject, payload, headers)
        )
        return Message(subject, payload, dict(headers), role, saga_id, at)


def trigger_headers(
    definition: SagaDefinition,
    payload: dict[str, Any],
    saga_id: str | None,
    extra: dict[str, str],
) -> tuple[str, dict[str, str]]:
    """Headers of a trigger and the saga id it starts.

    ``Saga-Id`` is set only when the id is given or cannot be derived, so the definition's
    ``trigger.id`` rule is exercised as in production.
    """
    headers = dict(extra)
    derived = saga_id_of(definition, definition.trigger.event, payload, headers)
    if saga_id is not None and saga_id != derived:
        headers[HEADER_SAGA_ID] = saga_id
    sid = saga_id or derived
    if sid is None:
        raise ValueError("no saga id")
    headers.setdefault(HEADER_MSG_ID, trigger_message_id(definition.name, sid))
    return sid, headers


def run_of(cause: Message) -> int:
    """The run (``Saga-Run``) a command belongs to: 0 before any redrive."""
    text = cause.headers.get(HEADER_RUN, "0")
    return int(text) if text.isascii() and text.isdigit() else 0


def answer_headers(index: WireReader, subject: str, cause: Message) -> dict[str, str]:
    """The headers a participant puts on an answer, per docs/protocol.md.

    ``Saga-Step`` and ``Saga-Kind`` come from what the answer means in the definition, so an
    observed step's outcome published in reaction to another step's event names its own step.
    """
    meaning = index.meaning(subject)
    compensating = meaning.role in (Role.COMPENSATED, Role.COMPENSATION_FAILED)
    step = meaning.step or cause.step or ""
    kind = KIND_COMPENSATION if compensating else (KIND_STEP if meaning.step else cause.kind or "")
    saga_id = cause.saga_id or ""
    name = index.definition.name
    headers = {
        HEADER_SAGA_ID: saga_id,
        HEADER_SAGA_NAME: name,
        HEADER_STEP: step,
        HEADER_KIND: kind,
        HEADER_MSG_ID: reply_message_id(
            idempotency_key(name, saga_id, step, kind, run_of(cause)), cause.attempt or 1
        ),
    }
    if cause.attempt is not None and (cause.step, cause.kind) == (step, kind):
        headers[HEADER_ATTEMPT] = str(cause.attempt)  # a reply answers its command's attempt
    headers.update({k: cause.headers[k] for k in TRACE_HEADERS if k in cause.headers})
    return headers


def emitted_headers(
    index: WireReader, subject: str, saga_id: str, extra: dict[str, str], serial: int
) -> dict[str, str]:
    """Headers of an event the test publishes itself, as the service that owns it would."""
    meaning = index.meaning(subject)
    name = index.definition.name
    headers = {HEADER_SAGA_ID: saga_id, HEADER_SAGA_NAME: name}
    if meaning.step is not None:
        compensating = meaning.role in (Role.COMPENSATED, Role.COMPENSATION_FAILED)
        kind = KIND_COMPENSATION if compensating else KIND_STEP
        headers |= {HEADER_STEP: meaning.step, HEADER_KIND: kind}
        headers[HEADER_MSG_ID] = (
            f"{idempotency_key(name, saga_id, meaning.step, kind)}:emit:{serial}"
        )
    else:
        headers[HEADER_MSG_ID] = f"{name}:{saga_id}:emit:{serial}"
    return headers | extra


@dataclass(frozen=True)
class DeadLettered:
    """A message of the run the engine could not use and moved to ``saga.dlq.<code>``, as the
    harness saw it (an operator's view of the dead-letter stream is ``saga.nats.dlq.DeadLetter``)."""

    code: str
    """``no-saga-id``, ``unknown-instance``, ... (``saga.nats.dlq.DeadLetterCode``)."""
    reason: str
    message: Message
