"""One event applied to its instance: load, decide, write (revision-checked), carry out.

The one per-message loop of the engine: :class:`saga.engine.Engine` runs it for every
consumed event and operator action, and :mod:`saga.testing.memory` runs it on an in-memory
store, so a scenario tested in memory goes through the same branches as production. The
engine runs most of a fetched batch through :meth:`Applier.apply_batch`: the same steps,
one write and one carry-out wait for the whole batch. It returns a
:data:`~saga.nats.settle.Verdict`; the caller settles the message.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from saga.core.announce import announced
from saga.core.commands import Command, command_from_json, command_to_json
from saga.core.state import InstanceState
from saga.core.wakeup import decide_slotted
from saga.definition.catalog import Catalog
from saga.definition.model import SagaDefinition
from saga.engine.cache import InstanceCache
from saga.engine.effects import replayed
from saga.engine.intake import Work, is_trigger
from saga.engine.observe import Observer
from saga.errors import RevisionConflict
from saga.index.writer import IndexWriter
from saga.nats.acks import AckGroup
from saga.nats.dlq import DeadLetterCode
from saga.nats.settle import ACK, Ack, Nak, Term, Verdict
from saga.protocol import OPERATOR_SUBJECT
from saga.store import InstanceRecord, InstanceStore, Stored
from saga.telemetry import Telemetry
from saga.telemetry.engine_spans import ignored, in_saga
from saga.telemetry.recovery import SpanMarks
from saga.telemetry.saga_spans import new_saga_trace

log = logging.getLogger("saga.engine")

Release = Callable[[InstanceState | None, InstanceRecord], Awaitable[None]]
"""Give back the slot of a limited saga's instance that ended
(:meth:`saga.engine.admission.Admission.release`)."""

Send = Callable[
    [InstanceState, Sequence[Command], Mapping[str, str] | None], Awaitable[Awaitable[Any] | None]
]
"""Send commands in order (the saga's trace context, when traced); returns what to await
for their acks (None: nothing left to wait for): :meth:`saga.engine.effects.CommandSender.send`
on NATS."""


@dataclass(frozen=True)
class Received:
    """What the engine knows of a message before deciding."""

    subject: str
    headers: dict[str, str]
    at_ns: int
    origin: str
    """``<stream>:<sequence>``: the message's identity, stored as the record's origin."""
    admitted: str | None = None
    """A limited saga's trigger: its ack subject, kept on the record it starts (the slot
    it holds is given back when the instance ends, see :mod:`saga.engine.admission`)."""


class Applier:
    """Applies one event at a time per instance (the caller serializes per key)."""

    def __init__(
        self,
        store: InstanceStore,
        cache: InstanceCache,
        catalog: Catalog,
        clock: Callable[[], datetime],
        send: Send,
        *,
        max_conflicts: int = 10,
        index: IndexWriter | None = None,
        telemetry: Telemetry | None = None,
        observer: Observer | None = None,
        marks: SpanMarks | None = None,
        release: Release | None = None,
    ) -> None:
        self.store = store
        self.cache = cache
        self.catalog = catalog
        """Every loaded version; replaced on a reload."""
        self.clock = clock
        self.send = send
        self.max_conflicts = max_conflicts
        self.index = index
        self.telemetry = telemetry or Telemetry.disabled()
        self.observer = observer or Observer(self.telemetry)
        self.marks = marks or SpanMarks(self.telemetry)
        self.release = release

    async def apply(self, key: str, work: Work, received: Received) -> Verdict:
        """Ack (with a note for a no-op), Nak (try again later) or Term (dead-letter)."""
        # A trigger nobody has cached is most likely new: create without reading first
        # (one round trip less on every saga's first hop); a conflict means it exists.
        # Read through the store's leader (``latest``): a no-op, or no such instance,
        # decided on a cached copy or a fast read is only believed once decided on the
        # leader's copy (a fast read may come from a replica behind the last write, even
        # one without the instance yet: believing it would lose the event).
        attempt = _Attempt(work, is_trigger(work))
        for _ in range(self.max_conflicts):
            stored = self.cache.get(key)
            assumed_new = stored is None and attempt.create_first
            attempt.create_first = False
            if stored is None and not assumed_new:
                load = self.store.load_latest if attempt.latest else self.store.load
                stored = await load(key)
            step = self._step(key, attempt, received, stored, assumed_new)
            if step is None:
                continue
            if isinstance(step, Replay):
                await self._replay(key, step.stored, attempt.work.definition)
                return ACK
            if not isinstance(step, Transition):
                return step
            try:
                if step.stored is None:
                    revision = await self.store.create(key, step.record)
                else:
                    revision = await self.store.update(key, step.record, step.stored.revision)
            except RevisionConflict:
                self.cache.drop(key)
                continue
            await self._done(step, await self._recorded(step, revision))
            return ACK
        return Nak("too many revision conflicts")

    async def apply_batch(
        self, items: Sequence[tuple[str, Work, Received]]
    ) -> list[Verdict | Exception | None]:
        """Apply the next event of several instances together (one item per key; the caller
        holds each key's turn): decide them all, send all their records' revision-checked
        writes and wait for those acks, then carry out every transition written (index,
        commands, timers, status) and wait for those acks. The per-message steps are
        :meth:`apply`'s own; what changes is that one coroutine waits for the whole batch
        instead of one per message.

        Per item: its verdict, the exception its handling raised, or None: not taken to the
        end here (not cached, so to be read; a no-op or an error, believed only on the
        leader's copy; its own origin, to replay; a lost race): the caller applies it with
        :meth:`apply`, which decides it again (``decide`` is pure)."""
        results: list[Verdict | Exception | None] = [None] * len(items)
        decided: list[tuple[int, Transition]] = []
        for i, (key, work, received) in enumerate(items):
            stored = self.cache.get(key)
            assumed_new = stored is None and is_trigger(work)
            if stored is None and not assumed_new:
                continue
            step = self._step(key, _Attempt(work, False), received, stored, assumed_new)
            if isinstance(step, Transition):
                decided.append((i, step))
            elif step is not None and not isinstance(step, Replay):
                results[i] = step
        if not decided:
            return results
        written = await self.store.write_all(
            [(t.key, t.record, t.stored.revision if t.stored else None) for _, t in decided]
        )
        sent: list[tuple[int, Transition, _Out]] = []
        for (i, step), revision in zip(decided, written, strict=True):
            if isinstance(revision, RevisionConflict):
                self.cache.drop(step.key)  # applied again, on what the store holds
            elif isinstance(revision, Exception):
                results[i] = revision
            else:
                try:
                    sent.append((i, step, await self._recorded(step, revision)))
                except Exception as exc:
                    results[i] = exc
        for i, step, out in sent:
            # the first waits for its acks; by then most others' have come back too
            try:
                await self._done(step, out)
                results[i] = ACK
            except Exception as exc:
                results[i] = exc
        return results

    def _step(
        self,
        key: str,
        attempt: _Attempt,
        received: Received,
        stored: Stored | None,
        assumed_new: bool,
    ) -> Transition | Replay | Verdict | None:
        """Decide ``attempt``'s event on ``stored`` (no I/O): a transition to write, the
        record's own outbox to send again, a verdict, or None: read and decide again
        (``attempt`` then says how)."""
        work = attempt.work
        name = work.definition.name
        if stored is not None and stored.record.origin == received.origin:
            # Written before a crash or a lost race; its commands may not be out yet.
            return Replay(stored)
        before = stored.record.state if stored else None
        if before is not None and before.saga_version != work.definition.version:
            older = self.catalog.get(name, before.saga_version)
            if older is None:
                return Term(
                    DeadLetterCode.ENGINE_ERROR,
                    f"instance runs version {before.saga_version} of {name!r}, which is not loaded",
                )
            read = work.for_version(older)
            if read is None:
                return Ack(f"{received.subject} means nothing in version {older.version}")
            work = attempt.work = read
        decision = announced(
            decide_slotted(work.definition, before, work.event, self.clock()),
            work.definition.status_events,
        )
        if decision.error is not None:
            if assumed_new:
                return None  # judge it against what the store holds
            if not attempt.latest:  # a stale copy may be what the event does not fit
                attempt.latest = True
                self.cache.drop(key)
                return None
            return Term(DeadLetterCode.ENGINE_ERROR, decision.error)
        if not decision.changed or decision.state is None:
            if not attempt.latest:
                # Another replica may have moved this instance on since we cached it,
                # and a fast read may come from a replica behind: a no-op is only
                # believed when decided on what the store's leader holds now.
                attempt.latest = True
                self.cache.drop(key)
                return None
            if decision.state is None:
                return Term(
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
            admitted=stored.record.admitted if stored is not None else received.admitted,
        )
        return Transition(key, work.definition, record, decision.commands, before, stored)

    async def _recorded(self, step: Transition, revision: int) -> _Out:
        """``step``'s record is written as ``revision``: cache it, observe it, send it out."""
        key, record = step.key, step.record
        self.cache.put(key, Stored(record, revision))
        if self.observer.metrics is not None:
            self.observer.transition(step.before, record.state, self.clock())
        if self.marks.telemetry.enabled:  # spans: none to mark when tracing is off
            self.marks.transition(
                key, step.stored.record if step.stored else None, record, revision
            )
        return await self._send_out(record, step.commands, step.definition, step.before)

    async def _done(self, step: Transition, out: _Out) -> None:
        """Wait for what ``step`` sent out; then give back a limited saga's slot if it ended."""
        await self._acked(out)
        record = step.record
        if self.release is not None and record.admitted:
            await self.release(step.before, record)
        if record.state.status.terminal:
            self.cache.drop(step.key)

    async def _replay(self, key: str, stored: Stored, definition: SagaDefinition) -> None:
        """Send ``stored``'s outbox again: written by this event before a crash or a lost race."""
        outbox = replayed([command_from_json(c) for c in stored.record.outbox])
        self.marks.recovered(key, stored.record, stored.revision)
        await self._acked(
            await self._send_out(stored.record, outbox, definition, None, repair=True)
        )
        if self.release is not None and stored.record.admitted:
            await self.release(None, stored.record)

    async def _send_out(
        self,
        record: InstanceRecord,
        commands: Sequence[Command],
        definition: SagaDefinition,
        before: InstanceState | None,
        repair: bool = False,
    ) -> _Out:
        """Send the index writes and the commands, in the saga's trace context (no span: the
        record's are the saga's spans); :meth:`_acked` waits for both. The index writes go
        out first, so both wait for their acks at once. ``repair``: a transition redone
        after a crash, whose previous status is unknown."""
        index = None
        if self.index is not None:
            index = await self.index.send(definition, before, record.state, repair)
        try:
            if not self.telemetry.enabled:
                acks = await self.send(record.state, commands, None)
            else:
                with in_saga(record.trace):
                    acks = await self.send(record.state, commands, record.trace)
        except BaseException:
            await self._acked(_Out(index, None))
            raise
        return _Out(index, acks)

    async def _acked(self, out: _Out) -> None:
        """Until the commands and index writes of :meth:`_send_out` are acked: a command
        not acked raises (the event is tried again); an index write is only logged."""
        try:
            if out.acks is not None:
                await out.acks
        finally:
            if self.index is not None:
                await self.index.settled(out.index)


@dataclass(slots=True)
class _Attempt:
    """How far :meth:`Applier.apply` got with one event: the version's reading of it, and
    whether a trigger is still tried as new and a no-op must be read from the leader."""

    work: Work
    create_first: bool
    latest: bool = False


@dataclass(frozen=True, slots=True)
class Transition:
    """A decided change of one instance, not written yet."""

    key: str
    definition: SagaDefinition
    record: InstanceRecord
    commands: Sequence[Command]
    before: InstanceState | None
    stored: Stored | None
    """What it was decided on (None: a new instance)."""


@dataclass(frozen=True, slots=True)
class Replay:
    """The record was written by this very event: its outbox is sent again."""

    stored: Stored


@dataclass(frozen=True, slots=True)
class _Out:
    """A transition's publishes, sent; their acks still to wait for."""

    index: AckGroup | None
    acks: Awaitable[Any] | None
