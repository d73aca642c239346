"""The scripted participants: which subject gets which answer, and the answers as messages.

Shared by both transports, so a scenario's participants behave the same in memory and on
a real nats-server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from saga.definition.subjects import Role
from saga.protocol import (
    HEADER_KIND,
    HEADER_MSG_ID,
    HEADER_SAGA_ID,
    HEADER_STEP,
    idempotency_key,
    started_message_id,
    started_subject,
    wants_start_report,
)
from saga.testing.answers import Behaviour, Reply, resolve
from saga.testing.errors import HarnessError, UnhandledCommand
from saga.testing.wire import Message, WireReader, answer_headers, run_of


@dataclass(frozen=True)
class Outgoing:
    """An answer ready to publish: after ``delay`` seconds, on ``subject``."""

    subject: str
    payload: dict[str, Any]
    headers: dict[str, str]
    delay: float = 0.0


class Script:
    """Handlers by subject, each a fixed answer or a function of the received message."""

    def __init__(self, index: WireReader) -> None:
        self.index = index
        self.handlers: dict[str, Behaviour] = {}

    def on(self, subject: str, behaviour: Behaviour) -> None:
        if not self.index.known(subject):
            raise HarnessError(
                f"{subject!r} is not a subject of saga {self.index.definition.name!r}; "
                f"its commands are {sorted(self.index.commands)}"
            )
        if isinstance(behaviour, Reply):
            self.check_answer(behaviour)
        self.handlers[subject] = behaviour

    def check_answer(self, answer: Reply) -> None:
        """An answer the saga does not consume would be lost (or refused by the stream)."""
        if answer.subject not in self.index.consumed:
            raise HarnessError(
                f"the saga does not consume {answer.subject!r}: answer on one of "
                f"{sorted(self.index.consumed)}"
            )

    def unhandled(self, message: Message) -> UnhandledCommand | None:
        """The error for a command that needs an answer nobody scripted."""
        if message.subject in self.handlers:
            return None
        meaning = self.index.meaning(message.subject, message.headers)
        if not self.index.expects_answer(meaning):
            return None
        return UnhandledCommand(
            f"no handler for {message.subject!r} ({meaning.role.value} of step "
            f"{meaning.step!r}); register one with harness.on({message.subject!r}, ...), "
            "e.g. reply(...), fail(...) or no_reply()"
        )

    def started(self, message: Message) -> Outgoing | None:
        """The start report a participant sends before working on a step command, as the
        SDK does: only for a command marked ``Saga-Report-Start`` (a step with ``queue_timeout``)."""
        if not wants_start_report(message.headers):
            return None
        meaning = self.index.meaning(message.subject, message.headers)
        if meaning.role is not Role.COMMAND or meaning.step is None:
            return None
        if message.subject not in self.handlers:
            return None
        subject = started_subject(self.index.definition.name, meaning.step)
        headers = answer_headers(self.index, subject, message)
        key = idempotency_key(
            self.index.definition.name,
            headers[HEADER_SAGA_ID],
            headers[HEADER_STEP],
            headers[HEADER_KIND],
            run_of(message),
        )
        headers[HEADER_MSG_ID] = started_message_id(key, message.attempt or 1)
        return Outgoing(subject, {}, headers)

    async def answer(self, message: Message) -> Outgoing | None:
        """The answer to ``message``, if any.

        Raises :class:`UnhandledCommand` for a command that needs an answer and has no handler.
        """
        missing = self.unhandled(message)
        if missing is not None:
            raise missing
        behaviour = self.handlers.get(message.subject)
        if behaviour is None:
            return None
        found = await resolve(behaviour, message)
        if found is None:
            return None
        self.check_answer(found)
        headers = answer_headers(self.index, found.subject, message)
        return Outgoing(found.subject, dict(found.payload), headers, found.delay)
