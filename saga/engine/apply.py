"""One event applied to its instance: load, decide, write (revision-checked), carry out.

The one per-message loop of the engine: :class:`saga.engine.Engine` runs it for every
consumed event and operator action, and :mod:`saga.testing.memory` runs it on an in-memory
store, so a scenario tested in memory goes through the same branches as production.
It returns a :data:`~saga.nats.settle.Verdict`; the caller settles the message.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

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

Send = Callable[[InstanceState, Sequence[Command], Mapping[str, str] | None], Awaitable[None]]
"""Carry out commands in order (the saga's trace context, when traced):
:meth:`saga.engine.effects.CommandSender.run` on NATS."""


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
        name = work.definition.name
        # A trigger nobody has cached is most likely new: create without reading first
        # (one round trip less on every saga's first hop); a conflict means it exists.
        create_first = is_trigger(work)
        # Read through the store's leader (``latest``): a no-op, or no such instance,
        # decided on a cached copy or a fast read is only believed once decided on the
        # leader's copy (a fast read may come from a replica behind the last write, even
        # one without the instance yet: believing it would lose the event).
        latest = False
        for _ in range(self.max_conflicts):
            stored = self.cache.get(key)
            assumed_new = stored is None and create_first
            create_first = False
            if stored is None and not assumed_new:
                load = self.store.load_latest if latest else self.store.load
                stored = await load(key)
            if stored is not None and stored.record.origin == received.origin:
                # Written before a crash or a lost race; its commands may not be out yet.
                outbox = replayed([command_from_json(c) for c in stored.record.outbox])
                self.marks.recovered(key, stored.record, stored.revision)
                await self._carry_out(stored.record, outbox, work.definition, None, repair=True)
                if self.release is not None and stored.record.admitted:
                    await self.release(None, stored.record)
                return ACK
            before = stored.record.state if stored else None
            if before is not None and before.saga_version != work.definition.version:
                older = self.catalog.get(name, before.saga_version)
                if older is None:
                    return Term(
                        DeadLetterCode.ENGINE_ERROR,
                        f"instance runs version {before.saga_version} of {name!r}, "
                        "which is not loaded",
                    )
                read = work.for_version(older)
                if read is None:
                    return Ack(f"{received.subject} means nothing in version {older.version}")
                work = read
            decision = announced(
                decide_slotted(work.definition, before, work.event, self.clock()),
                work.definition.status_events,
            )
            if decision.error is not None:
                if assumed_new:
                    continue  # judge it against what the store holds
                if not latest:  # a stale copy may be what the event does not fit
                    latest = True
                    self.cache.drop(key)
                    continue
                return Term(DeadLetterCode.ENGINE_ERROR, decision.error)
            if not decision.changed or decision.state is None:
                if not latest:
                    # Another replica may have moved this instance on since we cached it,
                    # and a fast read may come from a replica behind: a no-op is only
                    # believed when decided on what the store's leader holds now.
                    latest = True
                    self.cache.drop(key)
                    continue
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
            await self._carry_out(record, decision.commands, work.definition, before)
            if self.release is not None and record.admitted:
                await self.release(before, record)
            if decision.state.status.terminal:
                self.cache.drop(key)
            return ACK
        return Nak("too many revision conflicts")

    async def _carry_out(
        self,
        record: InstanceRecord,
        commands: Sequence[Command],
        definition: SagaDefinition,
        before: InstanceState | None,
        repair: bool = False,
    ) -> None:
        """Update the index and send the commands, in the saga's trace context (no span: the
        record's are the saga's spans); both are acked before this returns. The index writes
        go out first, so both wait for their acks at once. ``repair``: a transition redone
        after a crash, whose previous status is unknown."""
        index = None
        if self.index is not None:
            index = await self.index.send(definition, before, record.state, repair)
        try:
            if not self.telemetry.enabled:
                await self.send(record.state, commands, None)
            else:
                with in_saga(record.trace):
                    await self.send(record.state, commands, record.trace)
        finally:
            if self.index is not None:
                await self.index.settled(index)
