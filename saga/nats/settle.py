"""How a consumed message ends: ack, nak (delivered again later) or term (dead-lettered first).

Both consumers decide one :data:`Verdict` per message and end it here: the engine
(:mod:`saga.engine.apply`) and a participant (:mod:`saga.participant.dispatch`). Settling
never raises: a message the server did not take back returns after the ack wait.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from saga.nats.delivery import delivery_of
from saga.nats.dlq import DeadLetterCode, dead_letter
from saga.nats.wire import publish_empty


@dataclass(frozen=True)
class Ack:
    """Done. ``note`` says why nothing changed, for a no-op (an operator is told)."""

    note: str | None = None


@dataclass(frozen=True)
class Nak:
    """Not now: deliver again later (a transient failure)."""

    reason: str
    delay: float | None = None
    """Seconds before redelivery; the consumer's backoff for the delivery when None."""


@dataclass(frozen=True)
class Term:
    """Never usable: copy it to the dead-letter subject with a reason, then terminate it."""

    code: DeadLetterCode
    reason: str


Verdict = Ack | Nak | Term
ACK = Ack()


def at_last_delivery(
    verdict: Verdict, delivered: int, max_deliver: int, code: DeadLetterCode
) -> Verdict:
    """A nak of the last allowed delivery is a term: the server would never deliver it again."""
    if isinstance(verdict, Nak) and 0 < max_deliver <= delivered:
        return Term(code, f"gave up after {delivered} deliveries: {verdict.reason}")
    return verdict


async def settle(
    js: JetStreamContext,
    msg: Msg,
    verdict: Verdict,
    backoff: Callable[[int], float],
    log: logging.Logger,
    subject: str | None = None,
    nak_level: int = logging.WARNING,
) -> bool:
    """End ``msg`` as ``verdict`` says (see :func:`at_last_delivery` first); False, logged,
    when the server did not take it. ``backoff(deliveries)`` is a nak's delay when it names
    none; ``subject`` is recorded on a dead letter when it is not the message's own;
    ``nak_level``: how loudly a nak is logged (a participant's retry is ordinary business)."""
    try:
        if isinstance(verdict, Ack):
            await msg.ack()  # an empty message to the reply subject, no ack of the ack
        elif isinstance(verdict, Term):
            await dead_letter(js, msg, verdict.code, verdict.reason, subject)
        else:
            meta = delivery_of(msg)
            delay = verdict.delay if verdict.delay is not None else backoff(meta.delivered)
            log.log(
                nak_level,
                "%s seq %s, delivery %d: %s; again in %.1fs",
                msg.subject,
                meta.sequence,
                meta.delivered,
                verdict.reason,
                delay,
            )
            await msg.nak(delay=delay)
    except Exception as exc:
        _unsettled(log, msg, type(verdict).__name__, exc)
        return False
    return True


async def ack_all(nc: Client, msgs: Sequence[Msg], log: logging.Logger) -> None:
    """Ack each of ``msgs`` as :func:`settle` does an :class:`Ack`: together, in one write
    (:func:`saga.nats.wire.publish_empty`); if that cannot be sent, one by one, each
    failure logged."""
    try:
        await publish_empty(nc, [msg.reply for msg in msgs])
        return
    except Exception:  # closed, or an ack subject publish refuses: each said below
        pass
    for msg in msgs:
        try:
            await nc.publish(msg.reply)
        except Exception as exc:
            _unsettled(log, msg, "Ack", exc)


def _unsettled(log: logging.Logger, msg: Msg, verdict: str, exc: Exception) -> None:
    log.error(
        "could not settle %s (ack subject %s, %s): %r; it returns after the ack wait",
        msg.subject,
        msg.reply,
        verdict,
        exc,
    )
