"""Admission of a limited saga's triggers: ``limits.max_running`` and ``limits.start_rate``.

NATS does the counting, not this process. A limited saga's triggers are not read by the
engine's consumer but by their own durable pull consumer, ``<engine consumer>-limit-<saga>``,
whose ``max_ack_pending`` is ``max_running``: the server hands out no more unacked triggers
than that, however many replicas pull. A trigger that starts an instance stays unacked while
the instance runs (or compensates); its ack subject is stored on the instance record
(``admitted``), and the transition that ends the instance acks it, whichever replica makes
it, so the server delivers the next waiting trigger. Waiting triggers stay in the events
stream, in order: the consumer's ``num_pending`` is the saga's waiting count.

A held trigger must not come back while its instance runs: the consumer's ack wait is
:attr:`~saga.engine.settings.EngineSettings.admission_ack_wait` and the replica holding it
sends ``+WPI`` (in progress) every third of that. If that replica dies, its triggers come back
after the ack wait to any replica, which finds the instance running (and holds it from then
on), finished (acks it) or never started (starts it): a slot is never lost for longer than
the ack wait. A replica that stops cleanly hands its triggers back at once (``nak``).

``start_rate`` paces each replica's pulls (a token bucket): it is a rate per replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, NotFoundError
from opentelemetry.metrics import CallbackOptions, Meter, Observation

from saga import jsonwire
from saga.core.events import CommandAdmitted
from saga.core.state import InstanceState, Status, StepStatus
from saga.definition.catalog import Catalog
from saga.definition.subjects import Role
from saga.engine.intake import Work, attempt_of
from saga.engine.settings import EngineSettings
from saga.errors import ProvisioningError
from saga.nats.delivery import delivery_in
from saga.nats.dlq import DeadLetterCode
from saga.nats.pull import RawPull
from saga.nats.settle import Term
from saga.protocol import HEADER_SAGA_ID, HEADER_SAGA_NAME, HEADER_STEP, admit_subject
from saga.store import InstanceRecord, Stored

log = logging.getLogger("saga.engine")

HOLDING = (Status.RUNNING, Status.COMPENSATING)
"""An instance in one of these holds its trigger's slot; any other status gives it back."""
ACK = b"+ACK"
IN_PROGRESS = b"+WPI"
"""JetStream acknowledgement bodies (on a delivered message's reply subject)."""


def holds_slot(state: InstanceState) -> bool:
    return state.status in HOLDING


@dataclass(frozen=True)
class Gate:
    """One limited saga (or step): its admission consumer and limits (of its newest version)."""

    saga: str
    consumer: str
    subjects: tuple[str, ...]
    """The subjects that start an instance (its trigger and ``saga.child.<saga>.start``), or
    a step's held-back commands (``saga.admit.<saga>.<step>``)."""
    max_running: int | None
    """``limits.max_running``, or the step's ``max_in_flight``."""
    per_second: float | None
    step: str | None = None
    """Set for a step's ``max_in_flight``."""

    @property
    def key(self) -> str:
        return self.saga if self.step is None else f"{self.saga}.{self.step}"


@dataclass(frozen=True)
class GateCount:
    """What ``/readyz`` and the metrics say of one limited saga."""

    saga: str
    waiting: int
    """Triggers in the stream not yet admitted (the consumer's ``num_pending``)."""
    admitted: int
    """Triggers delivered and not acked: running instances, plus those being started."""
    max_running: int | None
    step: str | None = None
    """A step's ``max_in_flight`` (``admitted``: its commands sent and not yet answered)."""

    @property
    def key(self) -> str:
        return self.saga if self.step is None else f"{self.saga}.{self.step}"

    def to_json(self) -> dict[str, int | None]:
        if self.step is not None:
            return {
                "waiting": self.waiting,
                "in_flight": self.admitted,
                "max_in_flight": self.max_running,
            }
        return {"waiting": self.waiting, "running": self.admitted, "max_running": self.max_running}


def gates_of(catalog: Catalog, engine_consumer: str) -> dict[str, Gate]:
    """The sagas whose newest version has ``limits``, and the steps with ``max_in_flight``
    (of any loaded version: an instance on an older one may still drive them)."""
    found = {}
    for definition in catalog:
        for step in definition.steps:
            if step.max_in_flight is not None and step.publish is not None:
                gate = Gate(
                    definition.name,
                    f"{engine_consumer}-limit-{definition.name}-{step.name}",
                    (admit_subject(definition.name, step.name),),
                    step.max_in_flight,
                    None,
                    step.name,
                )
                found[gate.key] = gate
    for name, definition in catalog.newest().items():
        limits = definition.limits
        if limits is None:
            continue
        subjects = tuple(
            s for s, use in definition.subjects.consumed.items() if use.role is Role.TRIGGER
        )
        found[name] = Gate(
            name,
            f"{engine_consumer}-limit-{name}",
            subjects,
            limits.max_running,
            limits.starts_per_second,
        )
    return found


def gated_subjects(catalog: Catalog, engine_consumer: str) -> set[str]:
    """Subjects the engine's own consumer leaves to an admission consumer."""
    return {s for gate in gates_of(catalog, engine_consumer).values() for s in gate.subjects}


class Admission:
    """The admission consumers of the limited sagas, and the triggers this replica holds."""

    def __init__(self, nc: Client, settings: EngineSettings, meter: Meter | None = None) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.settings = settings
        self.gates: dict[str, Gate] = {}
        self.held: dict[str, str] = {}
        """Ack subject of each trigger this replica holds -> the instance key."""
        self.counts: dict[str, GateCount] = {}
        self._handle: Callable[[Msg], Awaitable[None]] | None = None
        self._lookup: Callable[[str], Awaitable[Stored | None]] | None = None
        self._stopping = asyncio.Event()
        self._pulls: dict[str, asyncio.Task[None]] = {}
        self._keeper: asyncio.Task[None] | None = None
        if meter is not None:
            self._observe(meter)

    async def provision(self, catalog: Catalog, position: int | None = None) -> None:
        """Create or update the admission consumers; pull from new ones once started. A new
        one starts at ``position``: :meth:`engine_position`, read before the engine's
        consumer was told to leave the trigger alone."""
        topology = self.settings.topology
        gates = gates_of(catalog, topology.engine_consumer)
        for gate in gates.values():
            await self._ensure_consumer(gate, position)
        self.gates = gates
        self._spawn()

    def start(
        self,
        handle: Callable[[Msg], Awaitable[None]],
        lookup: Callable[[str], Awaitable[Stored | None]],
    ) -> None:
        """Pull every gate's triggers into ``handle``; ``lookup`` reads an instance's record
        as the store holds it now."""
        self._handle, self._lookup = handle, lookup
        self._stopping.clear()
        self._spawn()
        self._keeper = asyncio.create_task(self._keep_holding(), name="saga-admission")

    async def stop(self) -> None:
        """Stop pulling and hand the held triggers back (``nak``): another replica, or this
        one restarted, takes them up at once instead of after the ack wait."""
        self._stopping.set()
        tasks = [*self._pulls.values(), *([self._keeper] if self._keeper else [])]
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pulls, self._keeper = {}, None
        held, self.held = self.held, {}
        for subject in held:
            with contextlib.suppress(Exception):
                await self.nc.publish(subject, b"-NAK")

    def health(self) -> tuple[GateCount, ...]:
        return tuple(self.counts[key] for key in sorted(self.counts) if key in self.gates)

    async def holds(self, key: str, admitted: str, cached: Stored | None) -> bool:
        """After a trigger of a ``max_running`` saga was applied: True (keep it unacked, it
        holds the slot) when its instance is one it started and still runs; False (ack it)
        when it was a duplicate of a running instance, or the instance has ended.
        ``cached``: the record as this replica last wrote it, if it has it."""
        assert self._lookup is not None
        stored = cached or await self._lookup(key)
        if stored is None:
            return False
        subject = holder(stored, admitted)
        if subject is None:
            return False
        self.held[subject] = key
        return True

    async def release(self, before: InstanceState | None, record: InstanceRecord) -> None:
        """Ack the trigger of an instance that has just ended: the next one may start. Acking
        twice is harmless (``before`` None: a transition redone after a crash)."""
        subject = record.admitted
        if subject is None or holds_slot(record.state):
            return
        if before is not None and not holds_slot(before):
            return  # given back already
        self.held.pop(subject, None)
        try:
            await self.nc.publish(subject, ACK)
        except Exception as exc:  # the holder's next check, or the ack wait, frees it
            log.warning("could not release the slot of %s: %r", record.state.saga_id, exc)

    # -- inside ------------------------------------------------------------------------------

    def _observe(self, meter: Meter) -> None:
        """``saga.waiting`` and ``saga.admitted`` per limited saga: the consumer's counts, the
        same on every replica (take the max over replicas, not the sum)."""

        def reader(field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
            def observe(_: CallbackOptions) -> Iterable[Observation]:
                return [
                    Observation(
                        getattr(c, field),
                        {"saga.name": c.saga} | ({"saga.step": c.step} if c.step else {}),
                    )
                    for c in self.health()
                ]

            return observe

        meter.create_observable_gauge(
            "saga.waiting",
            [reader("waiting")],
            unit="{trigger}",
            description="Triggers of a limited saga waiting for a slot (limits.max_running) "
            "or their turn (limits.start_rate)",
        )
        meter.create_observable_gauge(
            "saga.admitted",
            [reader("admitted")],
            unit="{saga}",
            description="Instances of a limited saga holding a slot (running or compensating)",
        )

    def _spawn(self) -> None:
        if self._handle is None or self._stopping.is_set():
            return
        for name in self.gates:
            task = self._pulls.get(name)
            if task is None or task.done():
                self._pulls[name] = asyncio.create_task(
                    self._pull(name), name=f"saga-admission-{name}"
                )

    async def _pull(self, name: str) -> None:
        """Fetch the gate's triggers (paced by ``start_rate``) and handle each."""
        assert self._handle is not None
        handle = self._handle
        settings = self.settings
        gate = self.gates[name]
        pull = RawPull(self.nc, settings.topology.events_stream, gate.consumer)
        tokens, last = 0.0, time.monotonic()
        try:
            while not self._stopping.is_set() and name in self.gates:
                gate = self.gates[name]
                batch = settings.fetch_batch
                if gate.per_second is not None:
                    now = time.monotonic()
                    burst = max(1.0, gate.per_second)
                    tokens, last = min(burst, tokens + (now - last) * gate.per_second), now
                    if tokens < 1.0:
                        await self._pause((1.0 - tokens) / gate.per_second)
                        continue
                    batch = min(batch, int(tokens))
                try:
                    msgs = await pull.fetch(batch, settings.admission_wait)
                except ConnectionClosedError:
                    return
                except Exception:
                    log.exception("admission fetch for %s failed; retrying", name)
                    await self._pause(settings.retry_delay)
                    continue
                tokens -= len(msgs)
                results = await asyncio.gather(*(handle(m) for m in msgs), return_exceptions=True)
                for result in results:
                    if isinstance(result, Exception):
                        log.error("unexpected error admitting a trigger", exc_info=result)
        finally:
            with contextlib.suppress(Exception):
                await pull.close()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _keep_holding(self) -> None:
        """Every third of the ack wait: keep the held triggers in progress, give back those
        whose instance another replica ended; every heartbeat: refresh the counts."""
        every = self.settings.admission_ack_wait / 3
        next_beat = time.monotonic() + every
        while not self._stopping.is_set():
            with contextlib.suppress(Exception):
                await self._count()
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + every
                try:
                    await self._beat()
                except ConnectionClosedError:
                    return
                except Exception:
                    log.warning("could not keep held triggers in progress", exc_info=True)
            await self._pause(self.settings.heartbeat)

    async def _beat(self) -> None:
        assert self._lookup is not None
        for subject in list(self.held):
            await self.nc.publish(subject, IN_PROGRESS)
        for subject, key in list(self.held.items()):
            stored = await self._lookup(key)
            if stored is None or holder(stored, subject) != subject:
                self.held.pop(subject, None)
                await self.nc.publish(subject, ACK)

    async def _count(self) -> None:
        stream = self.settings.topology.events_stream
        for gate in list(self.gates.values()):
            info = await self.js.consumer_info(stream, gate.consumer)
            self.counts[gate.key] = GateCount(
                gate.saga,
                int(info.num_pending or 0),
                int(info.num_ack_pending or 0),
                gate.max_running,
                gate.step,
            )

    async def _ensure_consumer(self, gate: Gate, start: int | None) -> None:
        """Create the gate's consumer where the engine's own consumer stood before it left
        the trigger alone (none is skipped; one both deliver starts one instance: the second
        finds it), or update its limits."""
        settings, topology = self.settings, self.settings.topology
        stream = topology.events_stream
        slots = gate.max_running or settings.streams.max_ack_pending
        try:
            info = await self.js.consumer_info(stream, gate.consumer)
        except NotFoundError:
            info = None
        if info is not None:
            config = info.config
            wanted = sorted(gate.subjects)
            have = sorted(config.filter_subjects or [config.filter_subject or ""])
            ack_wait = self.settings.admission_ack_wait
            if (config.max_ack_pending, have, config.ack_wait) == (slots, wanted, ack_wait):
                return
            config.max_ack_pending, config.ack_wait = slots, ack_wait
            config.filter_subject, config.filter_subjects = _filters(gate.subjects)
            await self._add(stream, config)
            return
        subject, subjects = _filters(gate.subjects)
        config = ConsumerConfig(
            durable_name=gate.consumer,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start else DeliverPolicy.ALL,
            opt_start_seq=start,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=settings.admission_ack_wait,
            max_deliver=-1,  # a running instance's trigger may come back many times
            max_ack_pending=slots,
            filter_subject=subject,
            filter_subjects=subjects,
            num_replicas=settings.streams.replicas if settings.streams.replicas > 1 else None,
        )
        try:
            await self._add(stream, config)
        except ProvisioningError:
            # another replica created it first
            await self.js.consumer_info(stream, gate.consumer)

    async def engine_position(self) -> int | None:
        """The stream sequence after the last message the engine's consumer delivered, or
        None when it delivered nothing yet (or does not exist). Read it before the consumer's
        filter changes: read after, a trigger published in between would be skipped."""
        topology = self.settings.topology
        try:
            info = await self.js.consumer_info(topology.events_stream, topology.engine_consumer)
        except NotFoundError:
            return None
        seq = info.delivered.stream_seq if info.delivered else 0
        return seq + 1 if seq else None

    async def _add(self, stream: str, config: ConsumerConfig) -> None:
        try:
            await self.js.add_consumer(stream, config)
        except BadRequestError as exc:
            raise ProvisioningError(
                f"cannot create consumer {config.durable_name} on {stream}: {exc.description}"
            ) from exc


def holder(stored: Stored, admitted: str) -> str | None:
    """The ack subject (as first stored) of the message ``admitted`` names, when it still
    holds a slot of this instance: its trigger while the instance runs, or a step's
    command while that attempt is in flight. None: it holds nothing (ack it)."""
    given = delivery_in(admitted)
    if given is None:
        return None

    def same(subject: str | None) -> bool:
        found = delivery_in(subject)
        return found is not None and found.sequence == given.sequence

    record = stored.record
    if same(record.admitted) and holds_slot(record.state):
        return record.admitted
    running = record.state.status is Status.RUNNING
    for s in record.state.steps.values():
        if same(s.slot) and s.status is StepStatus.ACTIVE and running:
            return s.slot
    return None


def admitted_command(catalog: Catalog, msg: Msg) -> Work | Term:
    """A held-back step command that got its slot, as the event that sends it."""
    headers = msg.headers or {}
    definition = catalog.latest(headers.get(HEADER_SAGA_NAME, ""))
    saga_id, step = headers.get(HEADER_SAGA_ID), headers.get(HEADER_STEP)
    attempt = attempt_of(headers)
    if definition is None or not saga_id or not step or not isinstance(attempt, int):
        return Term(DeadLetterCode.MALFORMED, "a held-back command without its saga headers")
    try:
        data = jsonwire.loads(msg.data) if msg.data else {}
    except ValueError as exc:
        return Term(DeadLetterCode.MALFORMED, f"payload is not JSON: {exc}")
    return Work(definition, saga_id, CommandAdmitted(step, attempt, msg.reply or "", data))


def _filters(subjects: tuple[str, ...]) -> tuple[str | None, list[str] | None]:
    unique = sorted(set(subjects))
    return (unique[0], None) if len(unique) == 1 else (None, unique)
