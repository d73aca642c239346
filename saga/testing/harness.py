"""``SagaHarness``: run one saga definition inside a test, with scripted participants.

In memory (the default) the harness runs the engine's own per-message loop
(:mod:`saga.engine.apply`) on an in-memory store and keeps a clock that
only moves when the test moves it, so a 10 s timeout costs nothing. With ``nats=True``
the same scenario runs on a real nats-server with the real engine; timers then take
real time.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from saga.core.events import (
    Event,
    OperatorAbort,
    OperatorRedrive,
    OperatorResume,
    OperatorRetry,
    OperatorTerminate,
    Signal,
)
from saga.core.state import InstanceState
from saga.definition import load_definition, parse_definition
from saga.definition.model import SagaDefinition
from saga.definition.saga_id import saga_id_of
from saga.definition.schedule import following_tick
from saga.protocol import (
    HEADER_SAGA_SCHEDULE,
    HEADER_SCHEDULE_NEXT,
    HEADER_SCHEDULER,
    schedule_subject,
)
from saga.testing.answers import Behaviour
from saga.testing.errors import HarnessError
from saga.testing.memory import MemoryTransport
from saga.testing.result import SagaResult
from saga.testing.script import Script
from saga.testing.wire import (
    DeadLettered,
    Message,
    WireReader,
    emitted_headers,
    trigger_headers,
)

DEFAULT_START = datetime(2030, 1, 1, tzinfo=UTC)
"""Where the in-memory clock starts: fixed, so timestamps in a test never vary."""


class Transport(Protocol):
    """Where a scenario runs; both implementations pass the same tests."""

    messages: list[Message]
    dead_letters: list[DeadLettered]

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    def now(self) -> datetime: ...
    async def publish(self, subject: str, payload: Any, headers: dict[str, str]) -> None: ...
    async def run_until_idle(self) -> None: ...
    async def advance(self, seconds: float) -> None: ...
    async def settle(self, saga_id: str) -> None: ...
    async def state(self, saga_id: str) -> InstanceState | None: ...
    async def signal(self, saga_id: str, signal: Event) -> str | None: ...


class SagaHarness:
    """One definition, its scripted participants, and the sagas a test starts::

    h = SagaHarness.from_file("definitions/order-fulfilment.yaml")
    h.on("inventory.reserve", reply("inventory.reserved", reservation_id="r1"))
    result = await h.run({"order_id": "o1", "items": [], "total": 5})
    """

    def __init__(
        self,
        definition: SagaDefinition,
        *,
        nats: bool = False,
        start: datetime = DEFAULT_START,
        timeout: float = 30.0,
    ) -> None:
        """``nats=True`` runs on a real embedded nats-server (use ``async with``);
        ``start`` is the in-memory clock's first reading; ``timeout`` bounds each wait on
        nats-server, in real seconds."""
        self.definition = definition
        self.index = WireReader(definition)
        self.script = Script(self.index)
        self.nats = nats
        self._opened = False
        self._started: list[str] = []
        self._serial = itertools.count(1)
        self.transport: Transport
        if nats:
            from saga.testing.jetstream import NatsTransport  # needs the server extra

            self.transport = NatsTransport(self.index, self.script, timeout)
        else:
            self.transport = MemoryTransport(self.index, self.script, start)

    @classmethod
    def from_file(cls, path: str | Path, **options: Any) -> SagaHarness:
        """Load and validate a definition file (raises ``DefinitionError`` with every problem)."""
        return cls(load_definition(path), **options)

    @classmethod
    def from_text(cls, text: str, **options: Any) -> SagaHarness:
        """A definition written inline in the test, as YAML."""
        return cls(parse_definition(text), **options)

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self) -> SagaHarness:
        """Start the transport: on nats-server, the server, the engine and the participants."""
        if not self._opened:
            try:
                await self.transport.open()
            except BaseException:
                await self.transport.close()  # whatever did start (a server process) stops
                raise
            self._opened = True
        return self

    async def close(self) -> None:
        if self._opened:
            self._opened = False
            await self.transport.close()

    async def __aenter__(self) -> SagaHarness:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _ready(self) -> None:
        if self._opened:
            return
        if self.nats:
            raise HarnessError(
                "nats mode starts a nats-server and the engine: use "
                "`async with SagaHarness(..., nats=True) as h:` (or await h.open() and h.close())"
            )
        await self.open()

    # -- scripting ----------------------------------------------------------------------

    def on(self, subject: str, behaviour: Behaviour) -> SagaHarness:
        """How the participant that consumes ``subject`` answers; returns the harness.

        ``subject`` is usually a command (``inventory.reserve``); it may also be an event
        that a service reacts to on its own, as the hotel does for an observed step.
        """
        self.script.on(subject, behaviour)
        return self

    # -- driving ------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The harness clock in memory; the wall clock on nats-server."""
        return self.transport.now()

    async def start(
        self,
        trigger: dict[str, Any] | None = None,
        *,
        saga_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Publish the trigger and handle what follows without moving the clock.

        Returns the saga id: ``saga_id`` if given, else what the definition's ``trigger.id``
        finds, else a generated ``<saga>-<n>``.
        """
        await self._ready()
        payload = dict(trigger or {})
        extra = dict(headers or {})
        if (
            saga_id is None
            and saga_id_of(self.definition, self.definition.trigger.event, payload, extra) is None
        ):
            saga_id = f"{self.definition.name}-{next(self._serial)}"
        sid, trigger_hdrs = trigger_headers(self.definition, payload, saga_id, extra)
        self._started.append(sid)
        await self.transport.publish(self.definition.trigger.event, payload, trigger_hdrs)
        await self.transport.run_until_idle()
        return sid

    async def fire_schedule(self, at: datetime | None = None) -> str:
        """Start an instance as the server's message schedule does at a tick of the
        definition's ``schedule`` (``at``: that tick; default the next one after the
        harness clock): same payload and headers, so the same ``<saga>-<tick>`` id. Returns
        the saga id; firing a tick twice starts nothing new."""
        schedule = self.definition.schedule
        if schedule is None:
            raise HarnessError(f"saga {self.definition.name!r} has no schedule")
        tick = at or following_tick(schedule.pattern, self.now)
        following = following_tick(schedule.pattern, tick) if tick is not None else None
        if tick is None or following is None:
            raise HarnessError(f"schedule {schedule.pattern!r} has no tick after {self.now}")
        headers = {
            HEADER_SCHEDULER: schedule_subject(self.definition.name),
            HEADER_SCHEDULE_NEXT: following.isoformat(),
            HEADER_SAGA_SCHEDULE: schedule.pattern,
        }
        return await self.start(dict(schedule.data), headers=headers)

    async def emit(
        self,
        subject: str,
        payload: dict[str, Any] | None = None,
        *,
        saga_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Publish an event as the service that owns it would, then handle what follows.

        For an observed step, or any answer the test wants to time itself. Headers
        (``Saga-Id``, ``Saga-Step``, ...) are filled in; ``headers`` overrides them.
        """
        if subject == self.definition.trigger.event:
            await self.start(payload, saga_id=saga_id, headers=headers)
            return
        if subject not in self.index.consumed:
            raise HarnessError(
                f"saga {self.definition.name!r} does not consume {subject!r}; "
                f"it consumes {sorted(self.index.consumed)}"
            )
        await self._ready()
        sid = saga_id or self._latest()
        extra = dict(headers or {})
        hdrs = emitted_headers(self.index, subject, sid, extra, next(self._serial))
        await self.transport.publish(subject, dict(payload or {}), hdrs)
        await self.transport.run_until_idle()

    async def signal(
        self,
        subject: str,
        payload: dict[str, Any] | None = None,
        *,
        saga_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Deliver an event to an observed step as an operator does (``saga emit``), then
        handle what follows; raises :class:`HarnessError` with the engine's reason when it
        refuses (a driven step's event, a finished saga, a payload breaking the schema)."""
        await self._ready()
        sid = saga_id or self._latest()
        refused = await self.transport.signal(
            sid, Signal(subject, dict(payload or {}), reason, "saga.testing")
        )
        if refused is not None:
            raise HarnessError(f"emit {subject!r} to {sid!r} refused: {refused}")
        await self.transport.run_until_idle()

    async def act(
        self, action: str, *, saga_id: str | None = None, reason: str | None = None
    ) -> None:
        """An operator action as ``saga ACTION`` does it (``abort``, ``retry``, ``resume``,
        ``terminate``, ``redrive``), recorded with actor ``saga.testing``, then handle what
        follows; raises :class:`HarnessError` with the engine's reason when it refuses."""
        await self._ready()
        sid = saga_id or self._latest()
        actor = "saga.testing"
        events: dict[str, Event] = {
            "abort": OperatorAbort(reason or "aborted by operator", actor),
            "retry": OperatorRetry(reason, actor),
            "resume": OperatorResume(reason, actor),
            "terminate": OperatorTerminate(reason or "terminated by operator", actor),
            "redrive": OperatorRedrive(reason, actor),
        }
        if action not in events:
            raise HarnessError(f"unknown action {action!r} (have: {', '.join(events)})")
        refused = await self.transport.signal(sid, events[action])
        if refused is not None:
            raise HarnessError(f"{action} of {sid!r} refused: {refused}")
        await self.transport.run_until_idle()

    async def advance(self, seconds: float) -> None:
        """Move the clock on, firing due timers (and delayed answers) in order.

        On nats-server this waits ``seconds`` for real.
        """
        if seconds < 0:
            raise HarnessError("the clock only moves forward")
        await self._ready()
        await self.transport.advance(seconds)

    async def run_until_idle(self) -> None:
        """Handle every message in flight; the clock does not move."""
        await self._ready()
        await self.transport.run_until_idle()

    async def settle(self, saga_id: str | None = None) -> SagaResult:
        """Skip through timers until the saga completes, is compensated or parks, or
        nothing more can happen (it waits for an event nobody sends)."""
        await self._ready()
        sid = saga_id or self._latest()
        await self.transport.settle(sid)
        return await self.result(sid)

    async def run(
        self,
        trigger: dict[str, Any] | None = None,
        *,
        saga_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SagaResult:
        """Start a saga and settle it: the whole scenario in one call."""
        sid = await self.start(trigger, saga_id=saga_id, headers=headers)
        return await self.settle(sid)

    # -- looking ------------------------------------------------------------------------

    async def result(self, saga_id: str | None = None) -> SagaResult:
        """The saga as it is now (the latest one started, by default)."""
        sid = saga_id or self._latest()
        state = await self.transport.state(sid)
        return SagaResult(
            saga_id=sid,
            state=state,
            messages=tuple(m for m in self.transport.messages if m.saga_id == sid),
            dead_letters=tuple(d for d in self.transport.dead_letters if d.message.saga_id == sid),
        )

    @property
    def messages(self) -> list[Message]:
        """Everything on the wire so far, of every saga, in order."""
        return list(self.transport.messages)

    @property
    def dead_letters(self) -> list[DeadLettered]:
        """Messages the engine could not use (no saga id, unknown instance, ...)."""
        return list(self.transport.dead_letters)

    def _latest(self) -> str:
        if not self._started:
            raise HarnessError("no saga started yet: call run() or start() first")
        return self._started[-1]
