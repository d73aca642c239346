"""The consume loop of one running app: wait for the streams, fetch in batches,
handle concurrently, and stop without losing or doubling work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from saga.nats.acks import Acks
from saga.nats.outage import until_available
from saga.nats.pull import RawPull
from saga.participant.buckets import Buckets
from saga.participant.consumer import bind_consumer
from saga.participant.context import Runtime
from saga.participant.dispatch import Dispatcher
from saga.participant.effects import Effects
from saga.participant.ledger import ReplyLedger
from saga.participant.routes import Route
from saga.participant.settings import ParticipantSettings
from saga.telemetry import Telemetry

log = logging.getLogger("saga.participant")


class Worker:
    """``start`` returns once consuming; ``stop`` stops fetching, finishes what is in
    flight (replies published, messages acked) and unsubscribes."""

    def __init__(
        self,
        name: str,
        routes: Mapping[str, Route],
        nc: Client,
        settings: ParticipantSettings,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.name = name
        self._telemetry = telemetry
        self._routes = routes
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()
        self._settings = settings
        self._stopping = asyncio.Event()
        self._inflight: dict[asyncio.Task[None], tuple[list[Msg], float]] = {}
        """Fetched batches in hand, with when they were fetched."""
        self._messages = 0
        """Messages in those batches."""
        self._tasks: list[asyncio.Task[None]] = []
        self._sub: RawPull | None = None
        self.handled = 0
        """Messages settled so far (acked, nakked or dead-lettered)."""

    @property
    def consuming(self) -> bool:
        """Bound to our consumer and fetching (what ``/readyz`` reports)."""
        return self._sub is not None and bool(self._tasks) and not self.stop_requested

    @property
    def stop_requested(self) -> bool:
        return self._stopping.is_set()

    def request_stop(self) -> None:
        """Ask the loop to stop fetching (safe from a signal handler)."""
        self._stopping.set()

    async def wait_stop_requested(self) -> None:
        await self._stopping.wait()

    async def start(self) -> None:
        """Wait for the engine's streams, bind our consumer, then consume in the background.

        A JetStream that does not answer (a cluster electing a leader) is waited out with
        backoff; a conflicting consumer (:mod:`saga.participant.consumer`) is an error."""
        dispatcher = await until_available(self._prepare, self.name, self._stopping, log)
        if dispatcher is None:
            return
        self._tasks = [
            asyncio.create_task(self._fetch_loop(dispatcher), name=f"{self.name}-fetch"),
            asyncio.create_task(self._keepalive(), name=f"{self.name}-keepalive"),
        ]
        log.info(
            "%s: consuming %s from %s",
            self.name,
            ", ".join(sorted(self._routes)),
            self._settings.topology.events_stream,
        )

    async def _prepare(self) -> Dispatcher | None:
        """Streams there, consumer bound, buckets open: the dispatcher; None if told to stop."""
        topology = self._settings.topology
        await self._wait_for_streams([topology.events_stream, topology.dlq_stream])
        if self.stop_requested:
            return None
        bound = await bind_consumer(
            self._nc, topology.events_stream, self.name, sorted(self._routes), self._settings
        )
        buckets = Buckets(self._js, self._settings.stream)
        effects = Effects(await buckets.get(self._settings.effects_bucket), self.name)
        runtime = Runtime(self._js, effects, buckets, self._nc)
        acks = Acks(self._nc, bound.settings.publish_timeout)
        ledger = ReplyLedger(
            await buckets.get(topology.replies_bucket), topology.replies_bucket, acks
        )
        dispatcher = Dispatcher(
            self.name, self._routes, runtime, ledger, bound.settings, self._telemetry, acks
        )
        self._sub = RawPull(self._nc, topology.events_stream, self.name)
        return dispatcher

    async def stop(self) -> None:
        """Stop fetching, let in-flight messages finish, then unsubscribe."""
        self.request_stop()
        tasks, self._tasks = self._tasks, []
        if tasks:
            await tasks[0]  # the fetch loop ends within one fetch timeout
        if self._inflight:
            log.info("%s: finishing %d in-flight message(s)", self.name, self._messages)
            await asyncio.gather(*self._inflight, return_exceptions=True)
        for task in tasks[1:]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.close()
            self._sub = None

    async def _wait_for_streams(self, names: list[str]) -> None:
        """The engine creates the streams; a participant started first waits, saying so."""
        started = time.monotonic()
        last_log: float | None = None
        while not self.stop_requested:
            missing = [name for name in names if not await self._stream_exists(name)]
            if not missing:
                return
            now = time.monotonic()
            if last_log is None or now - last_log >= self._settings.wait_log_every:
                log.warning(
                    "%s: waiting for stream(s) %s, created by the saga engine (waited %.0fs)",
                    self.name,
                    ", ".join(missing),
                    now - started,
                )
                last_log = now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 0.5)

    async def _stream_exists(self, name: str) -> bool:
        try:
            await self._js.stream_info(name)
        except NotFoundError:
            return False
        return True

    async def _fetch_loop(self, dispatcher: Dispatcher) -> None:
        assert self._sub is not None
        while not self.stop_requested:
            free = self._settings.max_inflight - self._messages
            if free <= 0:
                await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                msgs = await self._sub.fetch(
                    min(self._settings.batch, free), self._settings.fetch_timeout
                )
            except (NatsTimeoutError, TimeoutError):
                continue
            except Exception as exc:
                log.warning("%s: fetch failed (%r); trying again in 1s", self.name, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 1.0)
                continue
            if msgs:
                self._spawn(dispatcher, msgs)

    def _spawn(self, dispatcher: Dispatcher, msgs: list[Msg]) -> None:
        """One task per batch (:meth:`Dispatcher.handle_batch` runs each handler in its own)."""
        task = asyncio.create_task(dispatcher.handle_batch(msgs))
        self._inflight[task] = (msgs, time.monotonic())
        self._messages += len(msgs)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        msgs, _ = self._inflight.pop(task, ([], 0.0))
        self._messages -= len(msgs)
        self.handled += len(msgs)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "%s: unexpected error settling a message", self.name, exc_info=task.exception()
            )

    async def _keepalive(self) -> None:
        """In-progress acks for slow handlers, so the message is not redelivered meanwhile."""
        every = self._settings.keepalive
        while True:
            await asyncio.sleep(every)
            now = time.monotonic()
            for msgs, since in list(self._inflight.values()):
                if now - since >= every:
                    for msg in msgs:  # an acked one raises MsgAlreadyAckdError: not sent
                        with contextlib.suppress(Exception):
                            await msg.in_progress()
