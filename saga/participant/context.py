"""What a handler knows about the message it handles: the frozen ``Context``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # annotations only: importing the SDK loads no nats-py (issue 17)
    from nats.aio.client import Client
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

    from saga.participant.buckets import Buckets
    from saga.participant.effects import Effects

T = TypeVar("T")


@dataclass(frozen=True)
class Runtime:
    """Per-connection services shared by every context of one running app."""

    js: JetStreamContext
    effects: Effects
    buckets: Buckets
    nc: Client | None = None
    """For fire-and-forget reports (a step's start); None: none are sent."""


@dataclass(frozen=True, init=False)
class Context:
    """One delivery of one message, as seen by its handler."""

    service: str
    """The app's name (also its durable consumer's name)."""
    subject: str
    """The subject the message arrived on."""
    saga_id: str
    """``Saga-Id``; empty for a listener's message that carries none (e.g. a trigger)."""
    saga_name: str
    """``Saga-Name``; empty when a listener's message carries none."""
    step: str
    """The step this message is about (the observed step's name for a reaction)."""
    kind: str
    """``step``, ``compensation``, or ``event`` for a listener."""
    attempt: int
    """The engine's attempt number (``Saga-Attempt``), 1 when absent."""
    delivery: int
    """How many times JetStream delivered this message (1 on the first delivery)."""
    idempotency_key: str
    """``{saga}:{saga id}:{step}:{kind}``: the same for every attempt and delivery of
    one step; for a listener, ``{stream}:{sequence}`` of the message."""
    headers: Mapping[str, str]
    """All headers of the message, read-only."""
    _runtime: Runtime = field(repr=False, compare=False)

    def __init__(
        self,
        service: str,
        subject: str,
        saga_id: str,
        saga_name: str,
        step: str,
        kind: str,
        attempt: int,
        delivery: int,
        idempotency_key: str,
        headers: Mapping[str, str],
        _runtime: Runtime,
    ) -> None:
        """The fields set at once: a frozen dataclass's own ``__init__`` sets them one
        ``object.__setattr__`` at a time, a third of a microsecond each, for every message."""
        self.__dict__.update(
            service=service,
            subject=subject,
            saga_id=saga_id,
            saga_name=saga_name,
            step=step,
            kind=kind,
            attempt=attempt,
            delivery=delivery,
            idempotency_key=idempotency_key,
            headers=headers,
            _runtime=_runtime,
        )

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context, for a handler that must publish something of its own."""
        return self._runtime.js

    async def once(self, name: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Do side effect ``name`` once per idempotency key; later runs get its result.

        Name effects per attempt (``f"charge-{ctx.attempt}"``) when a retry after a
        failure must really try again.
        """
        return await self._runtime.effects.once(self.idempotency_key, name, fn)

    async def bucket(self, name: str) -> KeyValue:
        """A KV bucket for the service's own state, created on first use."""
        return await self._runtime.buckets.get(name)
