"""``App``: a participant service's handlers, and how to run them.

    app = App("inventory")

    @app.step("inventory.reserve", success="inventory.reserved", failure="inventory.rejected")
    async def reserve(ctx: Context, payload: dict) -> dict:
        ...

An ``App`` only holds routes; everything tied to a connection lives in the
:class:`~saga.participant.worker.Worker` that ``running``/``run`` create, so one
module-level app can run on many connections (tests do exactly that).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import re
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from saga.address import AdminSettings
from saga.errors import ConfigError
from saga.participant.health import HealthServer
from saga.participant.routes import Handler, Route, RouteKind
from saga.participant.settings import ParticipantSettings
from saga.telemetry import Telemetry

if TYPE_CHECKING:  # loaded when the app runs: importing the SDK loads no nats-py (issue 17)
    from nats.aio.client import Client

    from saga.nats.connection import NatsSettings
    from saga.participant.worker import Worker

log = logging.getLogger("saga.participant")

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
Decorator = Callable[[Handler], Handler]
Wrapper = Callable[[Handler], Handler]
"""Wraps every handler of an app as it is registered (``saga.participant.chaos`` is one)."""


class App:
    """A named participant: its name is also its durable consumer's name.

    ``wrap``: applied to each handler at registration, first one outermost; the route runs
    the wrapped handler, the decorator returns the handler as written."""

    def __init__(
        self,
        name: str,
        settings: ParticipantSettings | None = None,
        wrap: Sequence[Wrapper] = (),
    ) -> None:
        if not _NAME.match(name):
            raise ConfigError(
                f"app name {name!r}: use 1-64 of A-Z a-z 0-9 _ - (it names a consumer)"
            )
        self.name = name
        self._settings = settings
        self.routes: dict[str, Route] = {}
        self.wrap = tuple(wrap)
        self.telemetry = Telemetry.disabled()
        self.health: HealthServer | None = None
        """The probes' server while :meth:`run` serves them."""
        """Set to trace this app's handling (``run`` reads the OTEL_* environment)."""

    @property
    def settings(self) -> ParticipantSettings:
        """The app's settings; the defaults are made on first use (they load nats-py, which
        declaring an app and its handlers does not need)."""
        if self._settings is None:
            self._settings = ParticipantSettings()
        return self._settings

    @settings.setter
    def settings(self, value: ParticipantSettings) -> None:
        self._settings = value

    # -- registration -------------------------------------------------------

    def step(
        self, subject: str, *, success: str, failure: str | None = None, step: str | None = None
    ) -> Decorator:
        """Handle a step command; ``step`` names it when the command lacks ``Saga-Step``."""
        return self._register(subject, RouteKind.STEP, success, failure, step)

    def compensation(
        self, subject: str, *, success: str, failure: str | None = None, step: str | None = None
    ) -> Decorator:
        """Handle an undo command (``Saga-Kind: compensation``)."""
        return self._register(subject, RouteKind.COMPENSATION, success, failure, step)

    def on(
        self,
        subject: str,
        *,
        success: str | None = None,
        failure: str | None = None,
        step: str | None = None,
    ) -> Decorator:
        """React to an event: run observed step ``step`` and publish its outcome, or,
        without ``success``, just take note (a listener: no reply, saga headers optional)."""
        kind = RouteKind.LISTENER if success is None and failure is None else RouteKind.REACTION
        return self._register(subject, kind, success, failure, step)

    def _register(
        self,
        subject: str,
        kind: RouteKind,
        success: str | None,
        failure: str | None,
        step: str | None,
    ) -> Decorator:
        def decorator(handler: Handler) -> Handler:
            if not _is_async(handler):
                raise TypeError(
                    f"the handler of {subject} in app {self.name} must be an `async def` "
                    f"function, got {getattr(handler, '__qualname__', repr(handler))} "
                    "(a plain function would only fail once a message arrives)"
                )
            wrapped = handler
            for wrapper in reversed(self.wrap):
                wrapped = wrapper(wrapped)
            route = Route(subject, wrapped, kind, success, failure, step)
            problems = route.problems()
            if subject in self.routes:
                problems.append(f"{subject} already has a handler in app {self.name}")
            if problems:
                raise ConfigError("; ".join(problems))
            self.routes[subject] = route
            return handler

        return decorator

    # -- running ------------------------------------------------------------

    @asynccontextmanager
    async def running(
        self, nc: Client, settings: ParticipantSettings | None = None
    ) -> AsyncIterator[Worker]:
        """Consume on ``nc`` inside the block; leaving it stops gracefully.

        Entering waits until the engine's streams exist (logging while it waits).
        """
        from saga.participant.worker import Worker

        if not self.routes:
            raise ConfigError(f"app {self.name} has no handlers")
        worker = Worker(self.name, dict(self.routes), nc, settings or self.settings, self.telemetry)
        try:
            await worker.start()
            yield worker
        finally:
            await worker.stop()

    async def run(
        self,
        connection: NatsSettings | Client,
        settings: ParticipantSettings | None = None,
        health: AdminSettings | None = None,
    ) -> None:
        """Consume until SIGTERM/SIGINT (or ``worker.request_stop()``), then stop and drain.

        ``health``: where to serve ``/healthz`` and ``/readyz`` (none when ``None``)."""
        import asyncio  # here, not at the top: importing the SDK stays light (issue 17)

        from saga.nats.connection import NatsSettings, connect
        from saga.participant.worker import Worker

        own = isinstance(connection, NatsSettings)
        nc = await connect(connection) if isinstance(connection, NatsSettings) else connection
        worker = Worker(self.name, dict(self.routes), nc, settings or self.settings, self.telemetry)
        self.health = HealthServer(nc, lambda: worker.consuming, health) if health else None
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            loop.add_signal_handler(sig, worker.request_stop)
        try:
            if not self.routes:
                raise ConfigError(f"app {self.name} has no handlers")
            if self.health is not None:  # first: alive (not ready) while waiting for streams
                await self.health.start()
            await worker.start()
            await worker.wait_stop_requested()
            log.info("%s: stopping", self.name)
        finally:
            await worker.stop()
            if self.health is not None:
                await self.health.stop()
            for sig in signals:
                loop.remove_signal_handler(sig)
            if own:
                with contextlib.suppress(Exception):
                    await nc.drain()
        log.info("%s: stopped", self.name)


def _is_async(handler: object) -> bool:
    """An ``async def`` function, or an object whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        type(handler).__call__
    )
