"""The engine service loop: receive -> load -> decide -> persist (CAS) -> publish -> ack.

Every message ends in exactly one verdict, decided in one place (:meth:`Engine._settle`):
ack, retry later (nak with delay), or dead-letter (copy aside with a reason, then term).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from saga.core import decide
from saga.core.commands import Command, command_from_json, command_to_json
from saga.core.events import Event
from saga.core.state import InstanceState
from saga.definition.catalog import Catalog
from saga.definition.model import SagaDefinition
from saga.engine.cache import InstanceCache
from saga.engine.effects import Effects
from saga.engine.intake import Intake, Reject, Work, broken_contract, is_trigger
from saga.engine.keyed import KeyedSerializer
from saga.engine.observe import Observer
from saga.engine.operator import OPERATOR_SUBJECT, ActionResult, serve_operator_requests
from saga.engine.ownership import Ownership
from saga.engine.partitions import partition_of
from saga.engine.settings import EngineSettings
from saga.engine.versions import Stranded, find_stranded, versions_of
from saga.errors import ConfigError, RevisionConflict
from saga.index import SagaIndex
from saga.index.writer import IndexWriter
from saga.inspect import find_record
from saga.logs import CURRENT_SAGA
from saga.nats.acks import acks_for
from saga.nats.dlq import DeadLetterCode, dead_letter
from saga.nats.membership import Membership, new_member_id
from saga.nats.pinned import HEADER_PIN
from saga.nats.provision import Provisioned, provision_engine, provision_partitions
from saga.nats.served import serve_definitions
from saga.nats.timers import BrokerTimers, due_at
from saga.nats.topology import (
    HEADER_ORIGIN,
    TIMER_FIRE_PREFIX,
    instance_key,
    listened_subjects,
    published_subjects,
    unwrap_work_subject,
    work_subject,
)
from saga.store import InstanceRecord, InstanceStore, KvInstanceStore, Stored
from saga.telemetry import Telemetry
from saga.telemetry.engine_spans import ignored, processing, refused_action
from saga.telemetry.recovery import SpanMarks
from saga.telemetry.saga_spans import new_saga_trace
from saga.telemetry.spans import consuming, mark_error

log = logging.getLogger("saga.engine")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Ack:
    note: str | None = None
    """Why nothing changed, for a no-op."""


@dataclass(frozen=True)
class Received:
    """What the engine knows of a message before deciding."""

    subject: str
    headers: dict[str, str]
    at_ns: int
    origin: str
    """``<stream>:<sequence>``: the message's identity, stored as the record's origin."""


@dataclass(frozen=True)
class Retry:
    reason: str


Verdict = Ack | Retry | Reject


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
        self.definitions = self.catalog.newest()
        """The newest version of each saga: what new instances start on."""
        self.settings = settings or EngineSettings()
        self.clock = clock
        self.intake = Intake(definitions)
        self.keyed = KeyedSerializer()
        self.cache = InstanceCache(self.settings.cache_size)
        self.timers = BrokerTimers(self.js, self.settings.topology.timers_stream)
        self.telemetry = telemetry or Telemetry.disabled()
        self.observer = Observer(self.telemetry)
        self.marks = SpanMarks(self.telemetry)
        self.effects = Effects(self.js, self.timers, self.telemetry)
        self.store: InstanceStore | None = None
        self.index: IndexWriter | None = None
        self.ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: list[JetStreamContext.PullSubscription] = []
        self._operator: Subscription | None = None
        self.stranded: list[Stranded] = []
        """Unfinished instances whose version's file is gone (found at start or reload)."""
        self.member_id = new_member_id()
        self.ownership: Ownership | None = None
        if self.settings.partitions and self.settings.pin_timeout <= 2 * self.settings.fetch_wait:
            raise ValueError("pin_timeout must exceed twice fetch_wait, or pins flip when idle")

    async def provision(self) -> Provisioned:
        """Create (or check) the streams, consumers and bucket every loaded version needs."""
        defs = list(self.catalog)
        provisioned = await provision_engine(
            self.js,
            self.settings.topology,
            self.settings.streams,
            listened=[s for d in defs for s in listened_subjects(d)],
            published=[s for d in defs for s in published_subjects(d)],
        )
        topology, streams = self.settings.topology, self.settings.streams
        await serve_definitions(self.js, topology.definitions_bucket, self.catalog, streams)
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
        self.definitions = catalog.newest()
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
            provisioned.instances,
            finished_ttl=finished_ttl,
            index=SagaIndex(self.nc, topology) if provisioned.index else None,
        )
        self.index = IndexWriter(self.nc, finished_ttl) if provisioned.index else None
        self.timers.native = provisioned.native_timers
        await self._refuse_stranded()
        for sub in self._subs:  # from a failed earlier attempt
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs = [
            await self.js.pull_subscribe_bind(
                durable=topology.engine_consumer, stream=topology.events_stream
            ),
            await self.js.pull_subscribe_bind(
                durable=topology.timer_consumer, stream=topology.timers_stream
            ),
        ]
        self._operator = await serve_operator_requests(self)
        events, timers = self._subs
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
        self.ready.set()
        log.info(
            "engine consuming %d saga definition(s): %s",
            len(self.catalog),
            ", ".join(f"{d.name} v{d.version}" for d in self.catalog),
        )

    async def _refuse_stranded(self) -> None:
        """Refuse to start without a version that unfinished instances still run on."""
        bucket = self.settings.topology.instances_bucket
        self.stranded = await find_stranded(self.js, bucket, versions_of(self.catalog))
        if self.stranded:
            raise ConfigError(
                "refusing to start: unfinished instances run on saga versions that are not "
                "loaded (was a definition file removed?): "
                + "; ".join(s.describe() for s in self.stranded)
                + ". Put those versions' files back: a version is needed until its "
                "instances finish."
            )

    async def act(
        self, saga_id: str, name: str | None, event: Event, headers: dict[str, str] | None = None
    ) -> ActionResult:
        """Apply an operator action now, through the same ordered, revision-checked path."""
        assert self.store is not None
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
            verdict = await self.keyed.run(key, lambda: self._apply(key, work, received))
        finally:
            CURRENT_SAGA.reset(token)
        if isinstance(verdict, Ack) and verdict.note is None:
            state = await find_record(self.store, saga_id, definition.name)
            status = state.state.status.value if state else None
            return ActionResult(True, f"{type(event).__name__} applied", status)
        reason = verdict.note if isinstance(verdict, Ack) else getattr(verdict, "reason", "")
        refused_action(self.telemetry, record, event, reason or "refused")
        return ActionResult(False, reason or "refused", record.state.status.value)

    async def _recover_spans(self) -> None:
        """Write again the spans a crashed engine may not have exported, then keep marking."""
        assert self.store is not None
        try:
            count = await self.marks.scan(self.js, self.settings.topology.instances_bucket)
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
        if self.ownership is not None:
            await self.ownership.leave()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if self._operator is not None:
            with contextlib.suppress(Exception):
                await self._operator.unsubscribe()
            self._operator = None
        self._tasks, self._subs = [], []

    def _fetcher(
        self, sub: JetStreamContext.PullSubscription
    ) -> Callable[[], Awaitable[list[Msg]]]:
        batch, wait = self.settings.fetch_batch, self.settings.fetch_wait
        return lambda: sub.fetch(batch, timeout=wait)

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
            results = await asyncio.gather(*(self._handle(m) for m in msgs), return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    log.error("unexpected error handling a message", exc_info=result)

    async def _handle(self, msg: Msg) -> None:
        meta = msg.metadata
        if meta.stream == self.settings.topology.work_stream:
            await self._handle_routed(msg)
            return
        if meta.stream == self.settings.topology.timers_stream and not self.timers.native:
            due = due_at(msg.headers)
            wait = (due - self.clock()).total_seconds() if due else 0.0
            if wait > 0.005:
                await msg.nak(delay=wait)  # not due yet: the server holds it back
                return
        received = Received(
            msg.subject, msg.headers or {}, time.time_ns(), f"{meta.stream}:{meta.sequence.stream}"
        )
        parsed = self.intake.parse(
            msg.subject, msg.data, msg.headers, meta.stream, meta.sequence.stream
        )
        if isinstance(parsed, Reject):
            await self._settle(msg, parsed, received)
            return
        if self.ownership is not None:
            partition = partition_of(
                instance_key(parsed.definition.name, parsed.saga_id), self.settings.partitions
            )
            if not self.ownership.owns(partition):
                verdict = await self._route(msg, partition, received)
                await self._settle(msg, verdict, received)
                return
        await self._process(msg, parsed, received)

    async def _route(self, msg: Msg, partition: int, received: Received) -> Verdict:
        """Partitioned mode: pass the event to the replica that owns its instance's partition.

        Events of partitions this replica owns skip the hop (see :meth:`_handle`): they go
        through the same per-instance serializer as the routed ones it receives."""
        subject = work_subject(partition, received.subject)
        headers = {k: v for k, v in received.headers.items() if not k.startswith("Nats-")}
        headers[HEADER_ORIGIN] = received.origin
        headers["Nats-Msg-Id"] = f"route:{received.origin}"  # a re-route after a crash is dropped
        try:
            await (await acks_for(self.nc).send(subject, msg.data, headers))
        except Exception as exc:
            return Retry(f"routing to {subject} failed: {type(exc).__name__}: {exc}")
        return Ack()

    async def _handle_routed(self, msg: Msg) -> None:
        """An event routed to a partition we own: handled as if it came from its origin."""
        headers = {
            k: v
            for k, v in (msg.headers or {}).items()
            if k not in (HEADER_ORIGIN, HEADER_PIN, "Nats-Msg-Id")
        }
        origin = (msg.headers or {}).get(HEADER_ORIGIN, "")
        stream, _, sequence = origin.rpartition(":")
        subject = unwrap_work_subject(msg.subject)
        received = Received(subject, headers, time.time_ns(), origin)
        if not stream or not sequence.isdigit():
            reject = Reject(DeadLetterCode.MALFORMED, f"routed event without a {HEADER_ORIGIN}")
            await self._settle(msg, reject, received)
            return
        parsed = self.intake.parse(subject, msg.data, headers, stream, int(sequence))
        if isinstance(parsed, Reject):
            await self._settle(msg, parsed, received)
            return
        await self._process(msg, parsed, received)

    async def _process(self, msg: Msg, work: Work, received: Received) -> None:
        if (broken := broken_contract(work.definition, work.event)) is not None:
            # a success that breaks its schema: a copy for the operator; decide fails the step
            await dead_letter(
                self.js, msg, broken.code, broken.reason, received.subject, term=False
            )
        key = instance_key(work.definition.name, work.saga_id)
        token = CURRENT_SAGA.set((work.definition.name, work.saga_id))
        try:
            verdict = await self.keyed.run(key, lambda: self._apply(key, work, received))
        except Exception as exc:
            log.exception("handling %s failed", msg.subject)
            self.cache.drop(key)
            verdict = Retry(f"{type(exc).__name__}: {exc}")
        finally:
            CURRENT_SAGA.reset(token)
        await self._settle(msg, verdict, received, work.saga_id)

    async def _apply(self, key: str, work: Work, received: Received) -> Verdict:
        assert self.store is not None
        name = work.definition.name
        # A trigger nobody has cached is most likely new: create without reading first
        # (one round trip less on every saga's first hop); a conflict means it exists.
        create_first = is_trigger(work)
        for _ in range(self.settings.max_conflicts):
            stored = self.cache.get(key)
            fresh = stored is None
            assumed_new = stored is None and create_first
            create_first = False
            if stored is None and not assumed_new:
                stored = await self.store.load(key)
            if stored is not None and stored.record.origin == received.origin:
                # Written before a crash or a lost race; its commands may not be out yet.
                outbox = [command_from_json(c) for c in stored.record.outbox]
                self.marks.recovered(key, stored.record, stored.revision)
                await self._carry_out(stored.record, received, outbox, work.event)
                await self._index(work.definition, None, stored.record.state, repair=True)
                return Ack()
            before = stored.record.state if stored else None
            if before is not None and before.saga_version != work.definition.version:
                older = self.catalog.get(name, before.saga_version)
                if older is None:
                    return Reject(
                        DeadLetterCode.ENGINE_ERROR,
                        f"instance runs version {before.saga_version} of {name!r}, "
                        "which is not loaded",
                    )
                read = work.for_version(older)
                if read is None:
                    return Ack(f"{received.subject} means nothing in version {older.version}")
                work = read
            decision = decide(work.definition, before, work.event, self.clock())
            if decision.error is not None:
                if assumed_new:
                    continue  # judge it against what the store holds
                return Reject(DeadLetterCode.ENGINE_ERROR, decision.error)
            if not decision.changed or decision.state is None:
                if not fresh or assumed_new:
                    # Another replica may have moved this instance on since we cached it:
                    # a no-op is only believed when decided on what the store holds now.
                    self.cache.drop(key)
                    continue
                if decision.state is None:
                    return Reject(
                        DeadLetterCode.UNKNOWN_INSTANCE,
                        f"no instance {work.saga_id!r} of saga {name!r}",
                    )
                log.debug("%s: %s", received.subject, decision.note)
                if stored is not None and received.subject != OPERATOR_SUBJECT:
                    ignored(
                        self.telemetry,
                        stored.record,
                        work.event,
                        received.subject,
                        received.headers,
                        start_ns=received.at_ns,
                        message_id=received.origin,
                        note=decision.note or "no change",
                    )
                return Ack(decision.note)
            saga_trace = stored.record.trace if stored is not None else {}
            if stored is None:
                saga_trace = new_saga_trace(self.telemetry, name, received.headers)
            record = InstanceRecord(
                state=decision.state,
                origin=received.origin,
                outbox=[command_to_json(c) for c in decision.commands],
                trace=saga_trace,
                traced=stored.record.traced if stored is not None else 0,
            )
            try:
                if stored is None:
                    revision = await self.store.create(key, record)
                else:
                    revision = await self.store.update(key, record, stored.revision)
            except RevisionConflict:
                self.cache.drop(key)
                continue
            self.cache.put(key, Stored(record, revision))
            self.observer.transition(before, decision.state, self.clock())
            self.marks.transition(key, stored.record if stored else None, record, revision)
            await self._carry_out(record, received, decision.commands, work.event)
            await self._index(work.definition, before, decision.state)
            if decision.state.status.terminal:
                self.cache.drop(key)
            return Ack()
        return Retry("too many revision conflicts")

    async def _index(
        self,
        definition: SagaDefinition,
        before: InstanceState | None,
        after: InstanceState,
        repair: bool = False,
    ) -> None:
        """Update the index (``repair``: a transition redone after a crash, whose previous
        status is unknown)."""
        if self.index is not None:
            await self.index.write(definition, before, after, repair)

    async def _carry_out(
        self,
        record: InstanceRecord,
        received: Received,
        commands: Sequence[Command],
        event: Event | None = None,
    ) -> None:
        """Publish inside the message's CONSUMER span, so every send joins the saga's trace."""
        if not self.telemetry.enabled:
            await self.effects.run(record.state, commands)
            return
        with processing(
            self.telemetry,
            record,
            event,
            received.subject,
            received.headers,
            start_ns=received.at_ns,
            message_id=received.origin,
        ):
            await self.effects.run(record.state, commands, record.trace)

    async def _settle(
        self, msg: Msg, verdict: Verdict, received: Received, saga_id: str | None = None
    ) -> None:
        """The one place where a message is acked, retried or dead-lettered."""
        meta = msg.metadata
        try:
            if isinstance(verdict, Retry):
                if meta.num_delivered >= self.settings.streams.max_deliver:
                    verdict = Reject(
                        DeadLetterCode.ENGINE_ERROR,
                        f"gave up after {meta.num_delivered} deliveries: {verdict.reason}",
                    )
                else:
                    log.warning(
                        "retrying %s seq %s later: %s",
                        msg.subject,
                        meta.sequence.stream,
                        verdict.reason,
                    )
                    await msg.nak(delay=self.settings.retry_delay * meta.num_delivered)
                    return
            if isinstance(verdict, Reject):
                self._trace_rejection(received, verdict, saga_id)
                self.observer.dead_letter(verdict.code.value)
                await dead_letter(self.js, msg, verdict.code, verdict.reason, received.subject)
                return
            await msg.ack()
            if meta.stream == self.settings.topology.timers_stream and not self.timers.native:
                with contextlib.suppress(Exception):
                    await self.timers.forget_fired(meta.sequence.stream)
        except Exception:
            log.exception(
                "could not settle %s seq %s; it will be redelivered",
                msg.subject,
                meta.sequence.stream,
            )

    def _trace_rejection(self, received: Received, verdict: Reject, saga_id: str | None) -> None:
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
