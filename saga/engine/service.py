"""The engine service: provision, fetch, parse, route (partitions), apply, settle.

Each event is applied to its instance, one at a time per instance, by the per-message loop
of :mod:`saga.engine.apply` (load -> decide -> write, revision-checked -> publish); every
message then ends in exactly one verdict (:meth:`Engine._settle`, :mod:`saga.nats.settle`):
ack, nak (delivered again later), or term (dead-lettered with a reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import NamedTuple

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from saga.client import find_record
from saga.core.events import Event
from saga.definition.catalog import Catalog
from saga.definition.model import SagaDefinition
from saga.engine.admission import Admission, admitted_command, gated_subjects
from saga.engine.apply import Applier, Received
from saga.engine.cache import InstanceCache
from saga.engine.effects import CommandSender
from saga.engine.intake import Intake, Work
from saga.engine.keyed import KeyedSerializer
from saga.engine.observe import Observer
from saga.engine.operator import ActionResult, serve_operator_requests
from saga.engine.ownership import Ownership
from saga.engine.partitions import partition_of
from saga.engine.settings import EngineSettings
from saga.engine.versions import Stranded, find_stranded, versions_of
from saga.engine.view import EngineView, Health
from saga.errors import ConfigError
from saga.index import SagaIndex
from saga.index.writer import IndexWriter
from saga.logs import CURRENT_SAGA
from saga.nats.acks import acks_for
from saga.nats.delivery import Delivery, delivery_of
from saga.nats.dlq import DeadLetterCode, dead_letter
from saga.nats.membership import Membership, new_member_id
from saga.nats.provision import Provisioned, provision_engine, provision_partitions
from saga.nats.pull import RawPull
from saga.nats.schedules import provision_schedules
from saga.nats.served import serve_definitions
from saga.nats.settle import ACK, Ack, Nak, Term, Verdict, ack_all, at_last_delivery, settle
from saga.nats.timers import BrokerTimers, due_at
from saga.nats.topology import instance_key, unwrap_work_subject, work_subject
from saga.protocol import (
    ADMIT_PREFIX,
    HEADER_MSG_ID,
    HEADER_ORIGIN,
    HEADER_PIN_ID,
    OPERATOR_SUBJECT,
    SERVER_HEADER_PREFIX,
    TIMER_FIRE_PREFIX,
)
from saga.store import InstanceStore, KvInstanceStore
from saga.telemetry import Telemetry
from saga.telemetry.engine_spans import refused_action
from saga.telemetry.recovery import SpanMarks
from saga.telemetry.spans import consuming, mark_error

log = logging.getLogger("saga.engine")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Engine:
    def __init__(
        self,
        nc: Client,
        definitions: Catalog | dict[str, SagaDefinition],
        settings: EngineSettings | None = None,
        clock: Callable[[], datetime] = utc_now,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.catalog = Catalog.of(definitions)
        self.settings = settings or EngineSettings()
        self.clock = clock
        self.intake = Intake(definitions)
        self.keyed = KeyedSerializer()
        self.cache = InstanceCache(self.settings.cache_size)
        self.timers = BrokerTimers(self.nc, self.settings.topology.timers_stream)
        self.telemetry = telemetry or Telemetry.disabled()
        self.observer = Observer(self.telemetry)
        self.marks = SpanMarks(self.telemetry)
        self.effects = CommandSender(self.nc, self.timers, self.telemetry)
        self.admission = Admission(nc, self.settings, self.telemetry.meter)
        self.store: InstanceStore | None = None
        self.applier: Applier | None = None
        self._ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: list[RawPull] = []
        self._operator: Subscription | None = None
        self._stranded: list[Stranded] = []
        """Unfinished instances whose version's file is gone (found at start or reload)."""
        self.member_id = new_member_id()
        self.ownership: Ownership | None = None
        if self.settings.partitions and self.settings.pin_timeout <= 2 * self.settings.fetch_wait:
            raise ValueError("pin_timeout must exceed twice fetch_wait, or pins flip when idle")

    async def provision(self) -> Provisioned:
        """Create (or check) the streams, consumers and bucket every loaded version needs."""
        defs = list(self.catalog)
        gated = gated_subjects(self.catalog, self.settings.topology.engine_consumer)
        position = await self.admission.engine_position()  # before its filter changes
        provisioned = await provision_engine(
            self.js,
            self.settings.topology,
            self.settings.streams,
            listened=[s for d in defs for s in d.subjects.listened if s not in gated],
            # a limited saga's triggers: in the stream, read by its admission consumer
            published=[*gated, *(s for d in defs for s in d.subjects.published)],
        )
        await self.admission.provision(self.catalog, position)
        topology, streams = self.settings.topology, self.settings.streams
        await serve_definitions(self.js, topology.definitions_bucket, self.catalog, streams)
        await provision_schedules(self.js, topology, self.catalog.newest().values())
        return provisioned

    async def reload(self, catalog: Catalog) -> None:
        """Run ``catalog`` from now on: its subjects are provisioned first, so no event of a
        new version is missed; raises (and changes nothing) when it cannot be used."""
        intake = Intake(catalog)  # refuses a subject claimed by two sagas
        previous = self.catalog
        self.catalog = catalog
        try:
            await self.provision()
        except Exception:
            self.catalog = previous
            raise
        if self.applier is not None:
            self.applier.catalog = catalog
        self.intake = intake

    async def start(self) -> None:
        """Provision streams, consumers and the bucket, then start consuming.

        Everything that can fail comes before the first task starts, so a failed start
        (a cluster still electing leaders) can simply be tried again."""
        topology = self.settings.topology
        streams = self.settings.streams
        provisioned = await self.provision()
        if self.settings.partitions:
            await provision_partitions(
                self.nc, topology, streams, self.settings.partitions, self.settings.pin_timeout
            )
            membership = Membership(
                self.js,
                topology.members_bucket,
                self.member_id,
                self.settings.member_ttl,
                streams.replicas,
                streams.storage,
            )
            self.ownership = Ownership(
                self.nc, self.settings, membership, self._consume, self._forget_partition
            )
        finished_ttl = self.settings.finished_ttl if provisioned.instances_expire else 0.0
        self.store = KvInstanceStore(
            self.nc,
            topology.instances_bucket,
            provisioned.instances,
            finished_ttl=finished_ttl,
            index=SagaIndex(self.nc, topology) if provisioned.index else None,
        )
        self.applier = Applier(
            self.store,
            self.cache,
            self.catalog,
            self.clock,
            self.effects.send,
            max_conflicts=self.settings.max_conflicts,
            index=IndexWriter(self.nc, finished_ttl) if provisioned.index else None,
            telemetry=self.telemetry,
            observer=self.observer,
            marks=self.marks,
            release=self.admission.release,
        )
        self.timers.native = provisioned.native_timers
        await self._refuse_stranded()
        for sub in self._subs:  # from a failed earlier attempt
            with contextlib.suppress(Exception):
                await sub.close()
        self._subs = [
            RawPull(self.nc, topology.events_stream, topology.engine_consumer),
            RawPull(self.nc, topology.timers_stream, topology.timer_consumer),
        ]
        self._operator = await serve_operator_requests(self.nc, self.act, self.settings.admin_token)
        events, timers = self._subs
        self.admission.start(self._admit, self.store.load)
        self._tasks = [
            asyncio.create_task(self._consume(self._fetcher(events)), name="saga-events"),
            asyncio.create_task(self._consume(self._fetcher(timers)), name="saga-timers"),
        ]
        if self.telemetry.enabled:
            self._tasks.append(asyncio.create_task(self._recover_spans(), name="saga-spans"))
        if self.ownership is not None:
            self._tasks.append(
                asyncio.create_task(
                    self.ownership.keep_balanced(self._stopping), name="saga-members"
                )
            )
        if self.timers.native:
            sweep = self.timers.keep_swept(
                topology.timer_consumer, self._stopping, self.settings.timer_sweep
            )
            self._tasks.append(asyncio.create_task(sweep, name="saga-timer-sweep"))
        self._ready.set()
        log.info(
            "engine consuming %d saga definition(s): %s",
            len(self.catalog),
            ", ".join(f"{d.name} v{d.version}" for d in self.catalog),
        )

    async def _refuse_stranded(self) -> None:
        """Refuse to start without a version that unfinished instances still run on."""
        bucket = self.settings.topology.instances_bucket
        self._stranded = await find_stranded(self.js, bucket, versions_of(self.catalog))
        if self._stranded:
            raise ConfigError(
                "refusing to start: unfinished instances run on saga versions that are not "
                "loaded (was a definition file removed?): "
                + "; ".join(s.describe() for s in self._stranded)
                + ". Put those versions' files back: a version is needed until its "
                "instances finish."
            )

    async def removed_versions(self, kept: set[tuple[str, int]]) -> list[Stranded]:
        """The unfinished instances of loaded versions not in ``kept`` (their files are gone):
        they stay loaded here, and :meth:`health` shows them until the next check."""
        found: list[Stranded] = []
        if versions_of(self.catalog) - kept:
            bucket = self.settings.topology.instances_bucket
            found = await find_stranded(self.js, bucket, kept)
        self._stranded = found
        return found

    def health(self) -> Health:
        """A read-only snapshot, for ``/readyz``."""
        return Health(
            connected=self.nc.is_connected,
            ready=self._ready.is_set(),
            replica=self.member_id,
            stranded=tuple(self._stranded),
            partitions=self.settings.partitions,
            owned=tuple(self.owned),
            limits=self.admission.health(),
        )

    def view(self) -> EngineView:
        """What the admin API and the console read and call."""
        return EngineView(
            self.nc,
            self.js,
            self.settings,
            self.act,
            self.health,
            lambda: self.catalog,
            lambda: self.store,
        )

    async def act(
        self, saga_id: str, name: str | None, event: Event, headers: dict[str, str] | None = None
    ) -> ActionResult:
        """Apply an operator action now, through the same ordered, revision-checked path."""
        assert self.store is not None
        assert self.applier is not None
        applier = self.applier
        record = await find_record(self.store, saga_id, name)
        if record is None:
            return ActionResult(
                False, f"no instance {saga_id!r}" + (f" of {name!r}" if name else "")
            )
        definition = self.catalog.get(record.state.saga_name, record.state.saga_version)
        if definition is None:
            return ActionResult(False, f"saga {record.state.saga_name!r} is not loaded here")
        work = Work(definition, saga_id, event)
        key = instance_key(definition.name, saga_id)
        received = Received(
            OPERATOR_SUBJECT, headers or {}, time.time_ns(), f"operator:{uuid.uuid4().hex}"
        )
        token = CURRENT_SAGA.set((definition.name, saga_id))
        try:
            verdict = await self.keyed.run(key, lambda: applier.apply(key, work, received))
        finally:
            CURRENT_SAGA.reset(token)
        if isinstance(verdict, Ack) and verdict.note is None:
            state = await find_record(self.store, saga_id, definition.name)
            status = state.state.status.value if state else None
            return ActionResult(True, f"{type(event).__name__} applied", status)
        reason = verdict.note if isinstance(verdict, Ack) else verdict.reason
        refused_action(self.telemetry, record, event, reason or "refused")
        return ActionResult(False, reason or "refused", record.state.status.value)

    async def _recover_spans(self) -> None:
        """Write again the spans a crashed engine may not have exported, then keep marking."""
        assert self.store is not None
        try:
            bucket = self.settings.topology.instances_bucket
            count = await self.marks.scan(self.js, bucket, nc=self.nc)
            if count:
                log.info("re-emitted the saga spans of %d ended instance(s)", count)
        except Exception:
            log.warning("could not scan instances for unexported spans", exc_info=True)
        await self.marks.keep_marking(lambda: self.store, self._stopping)

    async def stop(self) -> None:
        """Stop fetching and let in-flight messages finish; the caller drains the connection."""
        self._stopping.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.admission.stop()
        if self.ownership is not None:
            await self.ownership.leave()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.close()
        if self._operator is not None:
            with contextlib.suppress(Exception):
                await self._operator.unsubscribe()
            self._operator = None
        self._tasks, self._subs = [], []

    def _fetcher(self, sub: RawPull) -> Callable[[], Awaitable[list[Msg]]]:
        batch, wait = self.settings.fetch_batch, self.settings.fetch_wait
        return lambda: sub.fetch(batch, wait)

    @property
    def owned(self) -> list[int]:
        """The partitions this replica consumes now (partitioned mode)."""
        return self.ownership.owned if self.ownership is not None else []

    def _forget_partition(self, partition: int) -> None:
        """Another replica owns it now: what we cached of its instances will go stale."""
        count = self.settings.partitions
        self.cache.drop_where(lambda key: partition_of(key, count) == partition)

    async def _consume(
        self, fetch: Callable[[], Awaitable[list[Msg]]], stop: asyncio.Event | None = None
    ) -> None:
        while not self._stopping.is_set() and not (stop is not None and stop.is_set()):
            try:
                msgs = await fetch()
            except (TimeoutError, NatsTimeoutError):
                continue
            except ConnectionClosedError:
                return
            except Exception:
                log.exception("fetch failed; retrying")
                await asyncio.sleep(self.settings.retry_delay)
                continue
            await self._handle_batch(msgs)

    async def _handle_batch(self, msgs: list[Msg]) -> None:
        """A fetched batch: the next event of each instance not busy goes through
        :meth:`_apply_batch` (one coroutine for all of them); the rest, each in a task of
        its own, through :meth:`_process` or whatever else :meth:`_take` says."""
        work: list[Awaitable[None]] = []
        ready: list[_Ready] = []
        for msg in msgs:
            try:
                taken = self._take(msg)
            except Exception:
                log.exception("unexpected error handling a message")
                continue
            if isinstance(taken, _Ready):
                ready.append(taken)
            else:
                work.append(taken)
        batch: list[tuple[str, _Ready]] = []
        seen: set[str] = set()
        for item in ready:
            key = instance_key(item.work.definition.name, item.work.saga_id)
            if (
                key in seen  # its earlier event first: it waits for the turn
                or item.work.broken is not None
                or not self.keyed.claim(key)
            ):
                work.append(self._process(item.msg, item.work, item.received, item.meta))
            else:
                batch.append((key, item))
            seen.add(key)
        if batch:
            work.append(self._apply_batch(batch))
        if len(work) == 1:  # the whole batch in one coroutine: no task
            try:
                await work[0]
            except Exception as exc:
                log.error("unexpected error handling a message", exc_info=exc)
            return
        results = await asyncio.gather(*work, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.error("unexpected error handling a message", exc_info=result)

    def _take(self, msg: Msg) -> _Ready | Awaitable[None]:
        """A consumed message read (no I/O): an event to apply, or what else to do with it."""
        meta = delivery_of(msg)
        if meta.stream == self.settings.topology.work_stream:
            return self._take_routed(msg, meta)
        if meta.stream == self.settings.topology.timers_stream and not self.timers.native:
            due = due_at(msg.headers)
            wait = (due - self.clock()).total_seconds() if due else 0.0
            if wait > 0.005:
                return msg.nak(delay=wait)  # not due yet: the server holds it back
        received = Received(
            msg.subject, msg.headers or {}, time.time_ns(), f"{meta.stream}:{meta.sequence}"
        )
        parsed = self.intake.parse(msg.subject, msg.data, msg.headers, meta.stream, meta.sequence)
        if isinstance(parsed, Term):
            return self._settle(msg, parsed, received)
        if self.ownership is not None:
            partition = partition_of(
                instance_key(parsed.definition.name, parsed.saga_id), self.settings.partitions
            )
            if not self.ownership.owns(partition):
                return self._route_and_settle(msg, partition, received, meta)
        return _Ready(msg, parsed, received, meta)

    async def _route_and_settle(
        self, msg: Msg, partition: int, received: Received, meta: Delivery
    ) -> None:
        verdict = await self._route(msg, partition, received)
        await self._settle(msg, verdict, received, meta=meta)

    async def _apply_batch(self, batch: list[tuple[str, _Ready]]) -> None:
        """The next event of several instances, whose turns are held, applied together
        (:meth:`Applier.apply_batch`); those it leaves go the one-message way, still in turn."""
        assert self.applier is not None
        results: list[Verdict | Exception | None]
        try:
            results = await self.applier.apply_batch(
                [(key, item.work, item.received) for key, item in batch]
            )
        except Exception as exc:
            results = [exc] * len(batch)
        again: list[Awaitable[None]] = []
        done: list[tuple[_Ready, Verdict]] = []
        for (key, item), result in zip(batch, results, strict=True):
            if result is None:
                again.append(self._process(item.msg, item.work, item.received, item.meta, True))
                continue
            self.keyed.leave(key)
            if isinstance(result, Exception):
                result = self._failed(item.msg, key, result)
            done.append((item, result))
        await self._settle_all(done)
        if again:
            await asyncio.gather(*again)

    async def _settle_all(self, done: list[tuple[_Ready, Verdict]]) -> None:
        """:meth:`_settle` for each: the plain acks first, together (:func:`ack_all`: one
        write), then the rest one by one (naks, dead letters, non-native timers' acks)."""
        rest: list[tuple[_Ready, Verdict]] = []
        acked: list[Msg] = []
        for item, verdict in done:
            if isinstance(verdict, Ack) and not self._fallback_timer(item.meta):
                acked.append(item.msg)
            else:
                rest.append((item, verdict))
        if acked:
            await ack_all(self.nc, acked, log)
        for item, verdict in rest:
            try:
                await self._settle(item.msg, verdict, item.received, item.work.saga_id, item.meta)
            except Exception:
                log.exception("unexpected error settling %s", item.msg.subject)

    async def _admit(self, msg: Msg) -> None:
        """A limited saga's trigger, from its admission consumer: handled by the replica that
        got it, whatever the partition (its instance is new; the write is revision-checked)."""
        meta = delivery_of(msg)
        origin = f"{meta.stream}:{meta.sequence}"
        if msg.subject.startswith(ADMIT_PREFIX + "."):  # a step's command (max_in_flight)
            parsed: Work | Term = admitted_command(self.catalog, msg)
            admitted: str | None = msg.reply
        else:
            parsed = self.intake.parse(
                msg.subject, msg.data, msg.headers, meta.stream, meta.sequence
            )
            gate = (
                self.admission.gates.get(parsed.definition.name)
                if isinstance(parsed, Work)
                else None
            )
            admitted = msg.reply if gate is not None and gate.max_running is not None else None
        received = Received(msg.subject, msg.headers or {}, time.time_ns(), origin, admitted)
        if isinstance(parsed, Term):
            await self._settle(msg, parsed, received, meta=meta)
            return
        await self._process(msg, parsed, received, meta)

    async def _route(self, msg: Msg, partition: int, received: Received) -> Verdict:
        """Partitioned mode: pass the event to the replica that owns its instance's partition.

        Events of partitions this replica owns skip the hop (see :meth:`_handle`): they go
        through the same per-instance serializer as the routed ones it receives."""
        subject = work_subject(partition, received.subject)
        headers = {
            k: v for k, v in received.headers.items() if not k.startswith(SERVER_HEADER_PREFIX)
        }
        headers[HEADER_ORIGIN] = received.origin
        headers[HEADER_MSG_ID] = f"route:{received.origin}"  # a re-route after a crash is dropped
        try:
            await (await acks_for(self.nc).send(subject, msg.data, headers))
        except Exception as exc:
            return Nak(f"routing to {subject} failed: {type(exc).__name__}: {exc}")
        return ACK

    def _take_routed(self, msg: Msg, meta: Delivery) -> _Ready | Awaitable[None]:
        """An event routed to a partition we own: handled as if it came from its origin."""
        headers = {
            k: v
            for k, v in (msg.headers or {}).items()
            if k not in (HEADER_ORIGIN, HEADER_PIN_ID, HEADER_MSG_ID)
        }
        origin = (msg.headers or {}).get(HEADER_ORIGIN, "")
        stream, _, sequence = origin.rpartition(":")
        subject = unwrap_work_subject(msg.subject)
        received = Received(subject, headers, time.time_ns(), origin)
        if not stream or not sequence.isdigit():
            reject = Term(DeadLetterCode.MALFORMED, f"routed event without a {HEADER_ORIGIN}")
            return self._settle(msg, reject, received, meta=meta)
        parsed = self.intake.parse(subject, msg.data, headers, stream, int(sequence))
        if isinstance(parsed, Term):
            return self._settle(msg, parsed, received, meta=meta)
        return _Ready(msg, parsed, received, meta)

    async def _process(
        self,
        msg: Msg,
        work: Work,
        received: Received,
        meta: Delivery | None = None,
        held: bool = False,
    ) -> None:
        """Apply one event in its instance's turn (``held``: the caller has the turn)."""
        assert self.applier is not None
        applier = self.applier
        if (broken := work.broken) is not None:
            # a success that breaks its schema: a copy for the operator; decide fails the step
            await dead_letter(
                self.js, msg, broken.code, broken.reason, received.subject, term=False
            )
        key = instance_key(work.definition.name, work.saga_id)
        token = CURRENT_SAGA.set((work.definition.name, work.saga_id))
        verdict: Verdict
        try:
            if not held:
                await self.keyed.enter(key)
            try:
                verdict = await applier.apply(key, work, received)
            finally:
                self.keyed.leave(key)
        except Exception as exc:
            verdict = self._failed(msg, key, exc)
        finally:
            CURRENT_SAGA.reset(token)
        admitted = received.admitted
        if (
            admitted is not None
            and isinstance(verdict, Ack)
            and await self.admission.holds(key, admitted, self.cache.get(key))
        ):
            return  # unacked while the instance runs: it holds one of max_running
        await self._settle(msg, verdict, received, work.saga_id, meta)

    def _failed(self, msg: Msg, key: str, exc: Exception) -> Nak:
        """Applying ``msg`` raised: tried again later, on what the store holds by then."""
        log.error("handling %s failed", msg.subject, exc_info=exc)
        self.cache.drop(key)
        return Nak(f"{type(exc).__name__}: {exc}")

    async def _settle(
        self,
        msg: Msg,
        verdict: Verdict,
        received: Received,
        saga_id: str | None = None,
        meta: Delivery | None = None,
    ) -> None:
        """The one place where a consumed message is acked, retried or dead-lettered
        (``meta``: its :func:`delivery_of`, when known already)."""
        if meta is None:
            meta = delivery_of(msg)
        max_deliver = self.settings.streams.max_deliver
        verdict = at_last_delivery(
            verdict, meta.delivered, max_deliver, DeadLetterCode.ENGINE_ERROR
        )
        if isinstance(verdict, Term):
            self._trace_rejection(received, verdict, saga_id)
            self.observer.dead_letter(verdict.code.value)
        settled = await settle(self.js, msg, verdict, self._backoff, log, received.subject)
        if settled and isinstance(verdict, Ack) and self._fallback_timer(meta):
            with contextlib.suppress(Exception):
                await self.timers.forget_fired(meta.sequence)

    def _fallback_timer(self, meta: Delivery) -> bool:
        """A timer message of fallback mode (no broker schedules): acked, it is forgotten."""
        return not self.timers.native and meta.stream == self.settings.topology.timers_stream

    def _backoff(self, delivered: int) -> float:
        return self.settings.retry_delay * delivered

    def _trace_rejection(self, received: Received, verdict: Term, saga_id: str | None) -> None:
        with consuming(
            self.telemetry,
            received.subject,
            received.headers,
            saga_id=saga_id,
            start_ns=received.at_ns,
            message_id=received.origin,
            name="process saga.timer" if received.subject.startswith(TIMER_FIRE_PREFIX) else None,
        ) as span:
            mark_error(span, verdict.code.value, verdict.reason)


class _Ready(NamedTuple):
    """A consumed event read and routed here: to apply to its instance (one per message: a
    named tuple costs a fifth of a frozen dataclass to make)."""

    msg: Msg
    work: Work
    received: Received
    meta: Delivery
