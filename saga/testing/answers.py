"""How scripted participants answer: ``reply``, ``fail``, ``no_reply``, ``sequence`` or a callable.

The helpers build plain values, so a callable handler returns the same things a scripted
one registers::

    def charge(command: Message) -> Answer:
        if command.payload["amount"] > 1000:
            return fail("payment.declined", "limit")
        return reply("payment.charged", payment_id="p1")
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from saga.testing.wire import Message


@dataclass(frozen=True)
class Reply:
    """An event a participant publishes in answer: the subject and its JSON payload."""

    subject: str
    payload: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds between receiving the message and answering (harness clock, or real time on nats)."""

    def after(self, seconds: float) -> Reply:
        """The same answer, sent ``seconds`` later: a slow service, or a reply after a timeout."""
        if seconds < 0:
            raise ValueError("a delay cannot be negative")
        return replace(self, delay=seconds)


@dataclass(frozen=True)
class NoAnswer:
    """Take the message and say nothing, as a service that is down or slow: the step times out."""


Answer = Reply | NoAnswer | None
"""What a handler returns; ``None`` is the same as :class:`NoAnswer`."""
Responder = Callable[[Message], Answer | Awaitable[Answer]]
"""A function (or coroutine function) of the received message."""
Behaviour = Reply | NoAnswer | Responder
"""What :meth:`SagaHarness.on` accepts: a fixed answer, or a handler that decides."""


def reply(subject: str, data: Mapping[str, Any] | None = None, /, **fields: Any) -> Reply:
    """Answer on ``subject`` with ``data`` and/or keyword fields as the payload."""
    return Reply(subject, {**(data or {}), **fields})


def fail(subject: str, reason: str = "failed", /, **fields: Any) -> Reply:
    """Answer on a failure ``subject`` with ``{"reason": reason, **fields}``."""
    return Reply(subject, {"reason": reason, **fields})


def no_reply() -> NoAnswer:
    """Never answer: the step (or undo) runs into its timeout."""
    return NoAnswer()


def sequence(*answers: Behaviour) -> Responder:
    """One answer per message of a saga, in turn; the last one repeats.

    ``sequence(no_reply(), reply("inventory.reserved"))`` lets attempt 1 time out and
    answers the retry. Counting is per saga id, so several sagas in one harness each start
    at the first answer.
    """
    if not answers:
        raise ValueError("sequence() needs at least one answer")
    seen: dict[str | None, int] = {}

    async def next_answer(message: Message) -> Answer:
        turn = seen.get(message.saga_id, 0)
        seen[message.saga_id] = turn + 1
        return await resolve(answers[min(turn, len(answers) - 1)], message)

    return next_answer


async def resolve(behaviour: Behaviour, message: Message) -> Reply | None:
    """The reply a behaviour gives to one message, or ``None`` for silence."""
    if isinstance(behaviour, Reply):
        return behaviour
    if isinstance(behaviour, NoAnswer):
        return None
    result = behaviour(message)
    if inspect.isawaitable(result):
        result = await result
    if result is None or isinstance(result, NoAnswer):
        return None
    if not isinstance(result, Reply):
        raise TypeError(
            f"a handler returns reply(...), fail(...), no_reply() or None, got {result!r}"
        )
    return result
