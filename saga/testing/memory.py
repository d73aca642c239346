"""The in-memory transport: the pure core driven directly, with a clock the test moves.

It does what the engine does for each message (derive the saga id, classify, then the
engine's own :class:`~saga.engine.apply.Applier`: ``decide``, store with a revision
check, carry out the commands) and what the server does around it
(drop a second message with the same ``Nats-Msg-Id``, fire due timers), in one
deterministic order: messages first in, first handled; timers by due time.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from saga.core.commands import (
    CancelTimer,
    Command,
    Finished,
    Parked,
    PublishEvent,
    ReleaseSlot,
    Reopened,
    ScheduleTimer,
)
from saga.core.decide import decide
from saga.core.events import CommandAdmitted, Event, SagaTriggered, Timer, TimerFired, classify
from saga.core.state import InstanceState, Status
from saga.definition.catalog import Catalog
from saga.engine.apply import Applier, Received
from saga.engine.cache import InstanceCache
from saga.engine.effects import status_event
from saga.engine.intake import Work, broken_contract
from saga.nats.dlq import DeadLetterCode
from saga.nats.settle import Nak, Term
from saga.nats.topology import instance_key
from saga.protocol import (
    ADMIT_PREFIX,
    HEADER_ATTEMPT,
    HEADER_MSG_ID,
    HEADER_STEP,
    TIMER_FIRE_PREFIX,
)
from saga.store import MemoryInstanceStore
from saga.testing.errors import HarnessError
from saga.testing.script import Outgoing, Script
from saga.testing.wire import DeadLettered, Message, WireReader

DUPLICATE_WINDOW = timedelta(seconds=120)
"""As the engine provisions ``SAGA_EVENTS``: a repeated ``Nats-Msg-Id`` within it is dropped."""
CACHE_SIZE = 1000
"""Instance records the in-memory engine keeps, as the engine's cache does."""
MAX_STEPS = 100_000
"""Bound on messages and timers handled by one call, so a scenario that loops fails."""


@dataclass(order=True)
class _Due:
    """A timer or a delayed answer, ordered by due time, then by when it was set."""

    at: datetime
    serial: int
    saga_id: str = field(compare=False, default="")
    timer: Timer | None = field(compare=False, default=None)
    answer: Outgoing | None = field(compare=False, default=None)
    cancelled: bool = field(compare=False, default=False)


class MemoryTransport:
    def __init__(self, index: WireReader, script: Script, start: datetime) -> None:
        self.index = index
        self.definition = index.definition
        self.script = script
        self.store = MemoryInstanceStore()
        self.applier = Applier(
            self.store,
            InstanceCache(CACHE_SIZE),
            Catalog([self.definition]),
            self.now,
            self._send,
        )
        self.clock = start
        self.messages: list[Message] = []
        self.dead_letters: list[DeadLettered] = []
        self._inbox: deque[Message] = deque()
        self._admissions: deque[tuple[str, PublishEvent]] = deque()
        """Commands held back by ``max_in_flight``, admitted before the next message."""
        self._agenda: list[_Due] = []
        self._timers: dict[tuple[str, Timer], _Due] = {}
        self._seen: dict[str, datetime] = {}
        self._serial = itertools.count()

    async def open(self) -> None:
        """Nothing to start: everything lives in this object."""

    async def close(self) -> None:
        """Nothing to stop."""

    def now(self) -> datetime:
        return self.clock

    async def publish(self, subject: str, payload: Any, headers: dict[str, str]) -> None:
        """Put a message on the wire, unless its ``Nats-Msg-Id`` was seen within the window."""
        msg_id = headers.get(HEADER_MSG_ID)
        if msg_id:
            seen = self._seen.get(msg_id)
            if seen is not None and self.clock - seen < DUPLICATE_WINDOW:
                return
            self._seen[msg_id] = self.clock
        message = self.index.message(subject, payload, headers, self.clock)
        self.messages.append(message)
        self._inbox.append(message)

    async def run_until_idle(self) -> None:
        for _ in range(MAX_STEPS):
            if self._admissions:  # max_in_flight does not hold back here: sent at once
                saga_id, command = self._admissions.popleft()
                admitted = CommandAdmitted(
                    command.headers[HEADER_STEP],
                    int(command.headers[HEADER_ATTEMPT]),
                    f"memory-slot:{next(self._serial)}",
                    command.data,
                )
                await self._apply(saga_id, admitted, cause=None)
                continue
            if not self._inbox:
                return
            await self._deliver(self._inbox.popleft())
        raise HarnessError(f"still busy after {MAX_STEPS} messages: does the scenario loop?")

    async def advance(self, seconds: float) -> None:
        target = self.clock + timedelta(seconds=seconds)
        await self.run_until_idle()
        for _ in range(MAX_STEPS):
            if not await self._fire_next(until=target):
                self.clock = max(self.clock, target)
                return
        raise HarnessError(f"more than {MAX_STEPS} timers in {seconds}s: does the scenario loop?")

    async def settle(self, saga_id: str) -> None:
        """Skip through timers until the saga ends or parks, or nothing more is due."""
        await self.run_until_idle()
        for _ in range(MAX_STEPS):
            state = await self.state(saga_id)
            if state is None or state.status.terminal or state.status is Status.PARKED:
                return
            if not await self._fire_next(until=None):
                return
        raise HarnessError(f"saga {saga_id} did not settle after {MAX_STEPS} timers")

    async def state(self, saga_id: str) -> InstanceState | None:
        stored = await self.store.load(instance_key(self.definition.name, saga_id))
        return stored.record.state if stored else None

    async def signal(self, saga_id: str, signal: Event) -> str | None:
        """An operator action (``saga emit``, ``abort``...), applied like the engine does; the
        refusal, if any."""
        state = await self.state(saga_id)
        if state is None:
            return f"no instance {saga_id!r}"
        decision = decide(self.definition, state, signal, self.clock)
        if not decision.changed:
            return decision.note or decision.error or "refused"
        await self._apply(saga_id, signal, cause=None)
        return None

    def pending_timers(self, saga_id: str) -> list[tuple[datetime, Timer]]:
        """Timers set for one saga and not yet fired or cancelled, earliest first."""
        found = [(d.at, d.timer) for (sid, _), d in self._timers.items() if sid == saga_id]
        return sorted((at, timer) for at, timer in found if timer is not None)

    # -- the participants' part ---------------------------------------------------------

    async def _deliver(self, message: Message) -> None:
        """The engine sees what it consumes; the scripted participants see everything."""
        if message.subject in self.index.consumed:
            await self._consume(message)
        report = self.script.started(message)
        if report is not None:
            await self.publish(report.subject, report.payload, report.headers)
        outgoing = await self.script.answer(message)
        if outgoing is None:
            return
        if outgoing.delay > 0:
            at = self.clock + timedelta(seconds=outgoing.delay)
            heapq.heappush(self._agenda, _Due(at, next(self._serial), answer=outgoing))
        else:
            await self.publish(outgoing.subject, outgoing.payload, outgoing.headers)

    # -- the server's part: timers and delayed answers ----------------------------------

    async def _fire_next(self, until: datetime | None) -> bool:
        """Fire the earliest timer or delayed answer due by ``until``; False when none is."""
        while self._agenda and self._agenda[0].cancelled:
            heapq.heappop(self._agenda)
        if not self._agenda or (until is not None and self._agenda[0].at > until):
            return False
        due = heapq.heappop(self._agenda)
        self.clock = max(self.clock, due.at)
        if due.timer is not None:
            self._timers.pop((due.saga_id, due.timer), None)
            await self._apply(due.saga_id, TimerFired(due.timer), cause=None)
        elif due.answer is not None:
            await self.publish(due.answer.subject, due.answer.payload, due.answer.headers)
        await self.run_until_idle()
        return True

    def _schedule(self, saga_id: str, timer: Timer, at: datetime) -> None:
        self._cancel(saga_id, timer)
        due = _Due(at, next(self._serial), saga_id, timer)
        self._timers[(saga_id, timer)] = due
        heapq.heappush(self._agenda, due)

    def _cancel(self, saga_id: str, timer: Timer) -> None:
        due = self._timers.pop((saga_id, timer), None)
        if due is not None:
            due.cancelled = True

    # -- the engine's part ----------------------------------------------------------------

    async def _consume(self, message: Message) -> None:
        if message.saga_id is None:
            self._dead_letter(
                message, DeadLetterCode.NO_SAGA_ID, "no Saga-Id header and no id field"
            )
            return
        event = classify(
            self.definition, message.subject, message.payload, message.saga_id, message.attempt
        )
        broken = None if event is None else broken_contract(self.definition, event)
        if broken is not None:  # as the engine: a trigger starts nothing, a success fails
            self._dead_letter(message, broken.code, broken.reason)
            if isinstance(event, SagaTriggered):
                return
        if event is not None:
            await self._apply(message.saga_id, event, message)

    async def _apply(self, saga_id: str, event: Event, cause: Message | None) -> None:
        """What the engine does with a consumed event: :class:`saga.engine.apply.Applier`."""
        key = instance_key(self.definition.name, saga_id)
        work = Work(
            self.definition,
            saga_id,
            event,
            cause.subject if cause else "",
            cause.payload if cause else None,
            cause.attempt if cause else None,
        )
        received = Received(
            cause.subject if cause else TIMER_FIRE_PREFIX,
            dict(cause.headers) if cause else {},
            0,
            f"memory:{next(self._serial)}",
        )
        verdict = await self.applier.apply(key, work, received)
        if isinstance(verdict, Term):
            if verdict.code is not DeadLetterCode.UNKNOWN_INSTANCE:
                raise HarnessError(f"decide() failed on {event!r}: {verdict.reason}")
            if cause is not None:
                self._dead_letter(cause, verdict.code, verdict.reason)
        elif isinstance(verdict, Nak):  # pragma: no cover - one writer never conflicts
            raise HarnessError(f"the engine would retry {event!r}: {verdict.reason}")

    async def _send(
        self,
        state: InstanceState,
        commands: Sequence[Command],
        _trace: Mapping[str, str] | None = None,
    ) -> None:
        for command in commands:
            await self._carry_out(state, command)

    async def _carry_out(self, state: InstanceState, command: Command) -> None:
        sid = state.saga_id
        if isinstance(command, PublishEvent) and command.subject.startswith(ADMIT_PREFIX + "."):
            self._admissions.append((sid, command))
        elif isinstance(command, PublishEvent):
            headers = {**command.headers, HEADER_MSG_ID: command.msg_id}
            await self.publish(command.subject, command.data, headers)
        elif isinstance(command, ScheduleTimer):
            self._schedule(sid, command.timer, command.fire_at)
        elif isinstance(command, CancelTimer):
            self._cancel(sid, command.timer)
        elif isinstance(command, Finished):
            await self.publish(*status_event(state, command.status, state.failure_reason))
        elif isinstance(command, Parked):
            await self.publish(*status_event(state, "parked", command.reason))
        elif isinstance(command, Reopened):
            await self.publish(*status_event(state, "reopened", command.reason))
        elif isinstance(command, ReleaseSlot):
            pass  # nothing held back in memory
        else:  # pragma: no cover - a command the core gained after this harness
            raise HarnessError(f"the harness cannot carry out {command!r}")

    def _dead_letter(self, message: Message, code: DeadLetterCode, reason: str) -> None:
        self.dead_letters.append(DeadLettered(code.value, reason, message))
