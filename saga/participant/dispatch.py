"""One message in, one ending out: the only place that acks, naks or dead-letters.

``verdict`` turns a delivery into an outcome (handler results and exceptions
included) and never raises; ``settle`` carries the outcome out on the message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry import trace

from saga.logs import CURRENT_SAGA
from saga.nats.acks import AckGroup, Acks
from saga.nats.delivery import Delivery, delivery_of
from saga.nats.dlq import DeadLetterCode
from saga.nats.settle import ACK, Nak, Term, Verdict, ack_all, at_last_delivery, settle
from saga.participant.context import Context, Runtime
from saga.participant.eager import start
from saga.participant.envelope import (
    KIND_EVENT,
    BadMessage,
    Envelope,
    command_envelope,
    parse_payload,
    reply_body,
    reply_headers,
)
from saga.participant.ledger import ReplyLedger, StoredReply
from saga.participant.locks import Hold, KeyedLocks
from saga.participant.outcomes import NoReply, Reject, Retry
from saga.participant.routes import Route, RouteKind
from saga.participant.settings import ParticipantSettings
from saga.participant.stale import StaleUndos
from saga.protocol import (
    HEADER_MSG_ID,
    HEADER_REPLAY,
    HEADER_SAGA_ID,
    HEADER_SAGA_NAME,
    HEADER_STEP,
    KIND_COMPENSATION,
    KIND_STEP,
    started_message_id,
    started_subject,
    wants_start_report,
)
from saga.telemetry import Telemetry
from saga.telemetry.participant_spans import delivery_attributes, mark_business_failure
from saga.telemetry.spans import consuming, mark_error, sending

log = logging.getLogger("saga.participant")


def _failed(subject: str, exc: BaseException) -> Nak:
    """An exception out of handling: deliver again (later, if a ``Retry`` says when)."""
    if isinstance(exc, Retry):
        return Nak(exc.reason, exc.delay)
    log.warning("handler of %s failed: %r", subject, exc, exc_info=exc)
    return Nak(f"{type(exc).__name__}: {exc}")


def _outcome_of(run: asyncio.Future[StoredReply | Verdict], subject: str) -> StoredReply | Verdict:
    """A handler run's outcome (its task cancelled: deliver the message again)."""
    if run.cancelled():
        return Nak("handling was cancelled")
    error = run.exception()
    return _failed(subject, error) if error is not None else run.result()


@dataclass(frozen=True, slots=True)
class _Answer:
    """A first answer handled with its batch (:meth:`Dispatcher.handle_batch`)."""

    msg: Msg
    meta: Delivery
    route: Route
    envelope: Envelope
    payload: dict[str, Any]
    hold: Hold


def first_answer(headers: Mapping[str, str], envelope: Envelope, delivered: int) -> bool:
    """No reply can be stored yet (create-first: skip the ledger read, one KV op per step):
    the first delivery of a first attempt the engine did not send again from its outbox.
    A copy that has one after all (a replay beyond the duplicate window) loses the
    ``kv.create`` race and publishes the stored reply instead of its own."""
    return envelope.attempt <= 1 and HEADER_REPLAY not in headers and delivered <= 1


class Dispatcher:
    """Routes deliveries of one app to its handlers."""

    def __init__(
        self,
        service: str,
        routes: Mapping[str, Route],
        runtime: Runtime,
        ledger: ReplyLedger,
        settings: ParticipantSettings,
        telemetry: Telemetry | None = None,
        acks: Acks | None = None,
    ) -> None:
        self._service = service
        self._routes = routes
        self._runtime = runtime
        self._ledger = ledger
        self._settings = settings
        self._locks = KeyedLocks()
        self._telemetry = telemetry or Telemetry.disabled()
        self._stale = StaleUndos(runtime.js, settings.topology)
        if acks is None and runtime.nc is not None:
            acks = Acks(runtime.nc, settings.publish_timeout)
        self._acks = acks
        """Replies are pipelined through one ack inbox (``publish_async`` costs about twice as
        much per message), the app's ledger writes too; without a connection (the testing
        kit) through ``js``."""

    @property
    def js(self) -> JetStreamContext:
        return self._runtime.js

    async def handle(self, msg: Msg) -> None:
        headers = msg.headers or {}
        saga_id = headers.get(HEADER_SAGA_ID)
        token = CURRENT_SAGA.set((headers.get(HEADER_SAGA_NAME, ""), saga_id) if saga_id else None)
        meta = delivery_of(msg)
        try:
            with consuming(
                self._telemetry,
                msg.subject,
                headers,
                saga_id=saga_id,
                message_id=f"{meta.stream}:{meta.sequence}",
                attributes=(
                    delivery_attributes(headers, meta.delivered)
                    if self._telemetry.enabled
                    else None
                ),
            ) as span:
                verdict = self._final(meta, await self._verdict(msg, meta))
                if isinstance(verdict, Term):
                    mark_error(span, verdict.code.value, verdict.reason)
                elif isinstance(verdict, Nak):
                    mark_error(span, "redelivery", verdict.reason)
                await self.settle(msg, verdict)
        finally:
            CURRENT_SAGA.reset(token)

    async def handle_batch(self, msgs: Sequence[Msg]) -> None:
        """A fetched batch. The common case, a first answer (see :func:`first_answer`) to a
        command, is handled with the others of its batch: their handlers are started at once
        (a task only for one that waits, :mod:`saga.participant.eager`), and as they finish,
        their ledger writes, then their replies, then their acks go out together, each
        round's acks awaited once for all. Everything else (redeliveries, replays, listeners, malformed
        messages), and every message while tracing is on, goes through :meth:`handle`."""
        answers: list[_Answer] = []
        others: list[Msg] = []
        together = self._acks is not None and self._ledger.pipelined
        together = together and not self._telemetry.enabled
        for msg in msgs:
            answer = self._answerable(msg) if together else None
            if answer is None:
                others.append(msg)
            else:
                answers.append(answer)
        for answer in answers:
            await answer.hold.take()  # free (none held it): taken at once, before the others'
        alone = [asyncio.create_task(self.handle(msg)) for msg in others]
        if answers:
            await self._answer_together(answers)
        if alone:
            await asyncio.gather(*alone)

    def _answerable(self, msg: Msg) -> _Answer | None:
        """``msg`` as a first answer, a user of its key's lock; None: for :meth:`handle`."""
        route = self._routes.get(msg.subject)
        headers = msg.headers
        if route is None or route.kind is RouteKind.LISTENER or not headers:
            return None
        meta = delivery_of(msg)
        try:
            payload = parse_payload(msg.data)
            envelope = command_envelope(
                headers,
                kind=KIND_COMPENSATION if route.kind is RouteKind.COMPENSATION else KIND_STEP,
                step=route.step,
                observed=route.kind is RouteKind.REACTION,
            )
        except BadMessage:
            return None  # handle() dead-letters it
        key = envelope.idempotency_key
        if not first_answer(headers, envelope, meta.delivered) or key in self._locks:
            return None  # another delivery of it is in hand: handle() waits for its lock
        return _Answer(msg, meta, route, envelope, payload, self._locks.hold(key))

    async def _answer_together(self, answers: list[_Answer]) -> None:
        """Start every handler; commit those done, round by round, as the others finish."""
        runs = {start(self._run(a.msg, a.meta, a.route, a.envelope, a.payload)): a for a in answers}
        done = [run for run in runs if run.done()]
        pending = {run for run in runs if not run.done()}
        while True:
            if done:
                outcomes = [(runs[run], _outcome_of(run, runs[run].msg.subject)) for run in done]
                await self._commit(outcomes)
            if not pending:
                return
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            done = list(finished)

    async def _commit(self, outcomes: list[tuple[_Answer, StoredReply | Verdict]]) -> None:
        """Ledger writes, then replies, then acks, each kind sent for all, then awaited once
        for all; when a round's acks fail, each message goes on alone as :meth:`handle` would."""
        writes: list[tuple[_Answer, StoredReply]] = []
        for answer, outcome in outcomes:
            if isinstance(outcome, StoredReply):
                writes.append((answer, outcome))
            else:
                await self._end(answer, outcome)
        if not writes:
            return
        acks = self._acks
        assert acks is not None  # a batch's first answers are handled together only with it
        try:
            group = AckGroup()
            for answer, reply in writes:
                await self._ledger.send_first(answer.envelope.idempotency_key, reply, group)
            await group.wait()
            replies = writes
        except Exception:  # a conflict, a timeout: one by one (a stored reply is found)
            replies = []
            for answer, reply in writes:
                try:
                    key = answer.envelope.idempotency_key
                    replies.append((answer, await self._ledger.record(key, reply, None)))
                except Exception as exc:
                    await self._end(answer, _failed(answer.msg.subject, exc))
        try:
            group = AckGroup()
            for _, reply in replies:  # pipelined: each ack counts towards the group
                await acks.send_in(group, reply.subject, reply.data, reply.headers)
            await group.wait()
        except Exception:  # published again one by one: Nats-Msg-Id drops what was stored
            for answer, reply in replies:
                try:
                    await self._publish(reply)
                except Exception as exc:
                    await self._end(answer, _failed(answer.msg.subject, exc))
                else:
                    await self._end(answer, ACK)
            return
        for answer, _ in replies:
            answer.hold.release()
        await ack_all(acks.nc, [answer.msg for answer, _ in replies], log)

    def _end(self, answer: _Answer, verdict: Verdict) -> Coroutine[Any, Any, None]:
        """Release the key, then settle (the coroutine to await: no frame of its own)."""
        answer.hold.release()
        if verdict is not ACK:  # an ack is an ack at any delivery
            verdict = self._final(answer.meta, verdict)
        return self.settle(answer.msg, verdict)

    def _final(self, meta: Delivery, verdict: Verdict) -> Verdict:
        """A redelivery past the last allowed delivery is a dead letter (and is marked so)."""
        max_deliver = self._settings.stream.max_deliver
        return at_last_delivery(verdict, meta.delivered, max_deliver, DeadLetterCode.HANDLER_FAILED)

    async def verdict(self, msg: Msg) -> Verdict:
        return await self._verdict(msg, delivery_of(msg))

    async def _verdict(self, msg: Msg, meta: Delivery) -> Verdict:
        route = self._routes.get(msg.subject)
        if route is None:
            return self._unhandled(msg, meta)
        headers = msg.headers or {}
        try:
            payload = parse_payload(msg.data)
            if route.kind is RouteKind.LISTENER:
                await route.handler(self._listener_context(msg, meta, route, headers), payload)
                return ACK
            envelope = command_envelope(
                headers,
                kind=KIND_COMPENSATION if route.kind is RouteKind.COMPENSATION else KIND_STEP,
                step=route.step,
                observed=route.kind is RouteKind.REACTION,
            )
            return await self._answer(msg, meta, route, envelope, payload)
        except BadMessage as exc:
            return Term(exc.code, exc.reason)
        except (Reject, NoReply) as exc:  # only a listener gets here: nobody to tell
            log.info("%s on %s: %s", type(exc).__name__, msg.subject, exc)
            return ACK
        except Exception as exc:
            return _failed(msg.subject, exc)

    def _unhandled(self, msg: Msg, meta: Delivery) -> Verdict:
        """Another copy of the app (another version) handles this subject: leave it to it,
        and dead-letter it only once no copy took it in ``max_deliver`` deliveries."""
        delivered = meta.delivered
        max_deliver = self._settings.stream.max_deliver
        reason = f"no handler for {msg.subject} in this copy of {self._service}"
        if 0 < max_deliver <= delivered:
            return Term(
                DeadLetterCode.UNKNOWN_EVENT,
                f"{reason}, nor in any copy that received it in {delivered} deliveries",
            )
        return Nak(f"{reason}: left to a copy that has one")

    async def _answer(
        self, msg: Msg, meta: Delivery, route: Route, envelope: Envelope, payload: dict[str, Any]
    ) -> Verdict:
        """Publish the stored reply, or run the handler and store its reply first."""
        key = envelope.idempotency_key
        headers = msg.headers or {}
        async with self._locks.hold(key):
            first = first_answer(headers, envelope, meta.delivered)
            found = None if first else await self._ledger.find(key)
            if found is not None and found.reply.answers(envelope.attempt):
                log.debug("%s: replaying the stored reply %s", key, found.reply.subject)
                trace.get_current_span().set_attribute("saga.reply.duplicate", True)
                await self._publish(found.reply)
                return ACK
            stale = await self._stale.resolved(envelope, meta.delivered)
            if stale is not None:
                log.info("%s: not run again, %s", key, stale)
                trace.get_current_span().set_attribute("saga.delivery.stale", stale)
                return ACK
            outcome = await self._run(msg, meta, route, envelope, payload)
            if not isinstance(outcome, StoredReply):
                return outcome
            await self._publish(await self._ledger.record(key, outcome, found))
            return ACK

    async def _run(
        self, msg: Msg, meta: Delivery, route: Route, envelope: Envelope, payload: dict[str, Any]
    ) -> StoredReply | Verdict:
        """Run the handler (in a batch, in a context of its own: :func:`start`)."""
        CURRENT_SAGA.set((envelope.saga_name, envelope.saga_id))
        command = msg.headers or {}
        ctx = self._context(msg, meta, envelope, command)
        headers = reply_headers(envelope, command)
        if route.kind is RouteKind.STEP and wants_start_report(command):
            await self._report_started(envelope, headers)
        try:
            result = await route.handler(ctx, payload)
        except Reject as rejection:
            mark_business_failure(trace.get_current_span(), rejection.reason)
            if route.failure is None:
                return Term(
                    DeadLetterCode.HANDLER_FAILED,
                    f"rejected ({rejection.reason}) but {route.subject} has no failure subject",
                )
            failure = reply_body(rejection.payload())
            if isinstance(failure, str):
                return Term(DeadLetterCode.HANDLER_BUG, f"Reject of {route.subject} {failure}")
            return StoredReply(route.failure, failure, headers, True, envelope.attempt)
        except NoReply as exc:
            log.info("%s: no reply on purpose (%s)", envelope.idempotency_key, exc.reason)
            return ACK
        except Exception as exc:  # logged here, with the saga of the handler's context
            return _failed(msg.subject, exc)
        body = reply_body(result)
        if isinstance(body, str):
            return Term(DeadLetterCode.HANDLER_BUG, f"handler of {route.subject} {body}")
        assert route.success is not None
        return StoredReply(route.success, body, headers, False, envelope.attempt)

    async def _report_started(self, envelope: Envelope, headers: Mapping[str, str]) -> None:
        """Tell the engine the work begins (``saga.started.<saga>.<step>``), so a step with a
        ``queue_timeout`` starts its run timeout now; only commands marked ``Saga-Report-Start``
        ask for it. A plain publish (no ack awaited): a lost report only means the queue
        timeout fires (then the step is retried or compensated)."""
        nc = self._runtime.nc
        if nc is None:
            return
        subject = started_subject(envelope.saga_name, envelope.step)
        report = {
            **headers,
            HEADER_MSG_ID: started_message_id(envelope.idempotency_key, envelope.attempt),
        }
        try:
            await nc.publish(subject, b"", headers=report)
        except Exception as exc:  # a report is best effort; the reply is what counts
            log.debug("%s: start not reported: %r", envelope.idempotency_key, exc)

    async def _publish(self, reply: StoredReply) -> None:
        headers = dict(reply.headers)
        with sending(
            self._telemetry,
            reply.subject,
            headers,
            saga_id=headers.get(HEADER_SAGA_ID),
            message_id=headers.get(HEADER_MSG_ID),
        ):
            if self._acks is not None:
                await (await self._acks.send(reply.subject, reply.data, headers))
                return
            future = await self.js.publish_async(reply.subject, reply.data, headers=headers)
            await asyncio.wait_for(future, self._settings.publish_timeout)

    def _context(
        self, msg: Msg, meta: Delivery, envelope: Envelope, headers: dict[str, str]
    ) -> Context:
        return Context(
            service=self._service,
            subject=msg.subject,
            saga_id=envelope.saga_id,
            saga_name=envelope.saga_name,
            step=envelope.step,
            kind=envelope.kind,
            attempt=envelope.attempt,
            delivery=meta.delivered,
            idempotency_key=envelope.idempotency_key,
            headers=MappingProxyType(headers),
            _runtime=self._runtime,
        )

    def _listener_context(
        self, msg: Msg, meta: Delivery, route: Route, headers: Mapping[str, str]
    ) -> Context:
        return Context(
            service=self._service,
            subject=msg.subject,
            saga_id=headers.get(HEADER_SAGA_ID, ""),
            saga_name=headers.get(HEADER_SAGA_NAME, ""),
            step=route.step or headers.get(HEADER_STEP, ""),
            kind=KIND_EVENT,
            attempt=1,
            delivery=meta.delivered,
            idempotency_key=f"{meta.stream}:{meta.sequence}",
            headers=MappingProxyType(dict(headers)),
            _runtime=self._runtime,
        )

    async def settle(self, msg: Msg, verdict: Verdict) -> None:
        """Ack, nak with delay, or dead-letter; a failure here leaves it to the ack wait."""
        await settle(
            self.js, msg, verdict, self._settings.redelivery_delay, log, nak_level=logging.INFO
        )
